/**
 * The calls one side of a connection has made and awaits answers to: ids,
 * deadlines (one timer per connection, armed for the earliest), aborts, and
 * failing them all when the connection goes.
 */
import { DistError } from "./errors.ts";
import type { Envelope } from "./json_envelope.ts";
import { pollTurn } from "./poll_turn.ts";
import { rawAnswer } from "./raw_answer.ts";
import { cut } from "./_log.ts";

/** Per-call options of `Peer.call` and `Peer.request`. */
export interface CallOptions {
  /** Milliseconds; defaults to the peer's `timeoutMs`. */
  timeout?: number;
  /** Aborting fails the call at once (TIMEOUT for a timeout reason, else UNAVAILABLE). */
  signal?: AbortSignal;
  /**
   * False marks the request non-idempotent (`"idem": false` on the wire): a
   * balancer then never sends it twice. Default true (the member is left out).
   */
  idempotent?: boolean;
  /**
   * The call's id, chosen by the caller instead of the next of this side's
   * sequence: a nonce its answer must carry, so that a peer cannot answer
   * without reading the request (a broker's probe of a queue group member:
   * roles/broker/group_proof.ts). A safe integer past 2^52, which the
   * sequence never reaches.
   */
  id?: number;
}

/** A response as received: the result and who did the work. */
export interface Response {
  /** The result the peer answered. */
  result: unknown;
  /** Who did the work, when the answer said (`by`). */
  by?: string;
}

/** An answer as the table settles it: a result or an error body, and `by`. */
export interface Answer {
  result: unknown;
  error: unknown;
  by: string | undefined;
}

/**
 * Where the answer of a call forwarded as bytes goes (see `Peer.callRaw`):
 * the scanned response (valid only during the call), or the DistError of a
 * local failure (TIMEOUT, or UNAVAILABLE when the connection closed first).
 */
export interface RawAnswerSink {
  onAnswer(answer: Envelope | DistError): void;
  /**
   * When the call is sent (performance.now()), if the caller read the clock
   * for it just now: the deadline is counted from it, one clock read fewer
   * per forwarded request. Zero or absent: the table reads the clock.
   */
  readonly sentAt?: number;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: DistError) => void;
  deadline: number;
  /** Resolve with a Response (result and by) rather than the bare result. */
  full: boolean;
  method: string;
  cleanup?: () => void;
  /** Set for a forwarded call: the answer is handed over undecoded. */
  raw?: RawAnswerSink;
}

/** How recent a peer's report must be to explain its hanging up (ms). */
const REPORT_FRESH_MS = 2000;
/** The longest delay a timer takes (2^31 - 1 ms); longer ones would fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Slots of a connection's call table (see PendingCalls). */
const CALL_SLOTS = 256;
const CALL_MASK = CALL_SLOTS - 1;

/**
 * Calls awaiting answers by id: a call takes slot `id % CALL_SLOTS`, and
 * one whose slot is held (by a call older by CALL_SLOTS ids, unanswered)
 * goes to a Map. Not a Map alone: a Map under constant insert and delete
 * is rehashed into a new table every few hundred calls, and V8 links each
 * old table to its successor (for iterators). Once one table had been
 * promoted to the old generation, its dead predecessor kept each successor
 * alive until the next full GC, with the calls it held: scavenges then
 * copied a sixth of all a client allocated (dist client --bench c=64: 60 MB
 * copied for 300,000 calls, 1.7x the GC time of a slot table).
 */
class PendingCalls {
  readonly #ids = new Float64Array(CALL_SLOTS);
  readonly #slots: (Pending | undefined)[] = new Array(CALL_SLOTS).fill(undefined);
  #inSlots = 0;
  #overflow: Map<number, Pending> | undefined;

  get size(): number {
    return this.#inSlots + (this.#overflow?.size ?? 0);
  }

  get(id: number): Pending | undefined {
    const slot = id & CALL_MASK;
    if (id === 0) return undefined; // 0 marks a free slot: never a call's id
    return this.#ids[slot] === id ? this.#slots[slot] : this.#overflow?.get(id);
  }

  set(id: number, entry: Pending): void {
    const slot = id & CALL_MASK;
    if (this.#ids[slot] === 0) {
      this.#ids[slot] = id;
      this.#slots[slot] = entry;
      this.#inSlots++;
    } else {
      (this.#overflow ??= new Map()).set(id, entry);
    }
  }

  /** @returns whether `id` was here */
  delete(id: number): boolean {
    const slot = id & CALL_MASK;
    if (id === 0) return false; // 0 marks a free slot: never a call's id
    if (this.#ids[slot] !== id) return this.#overflow?.delete(id) ?? false;
    this.#ids[slot] = 0;
    this.#slots[slot] = undefined;
    this.#inSlots--;
    return true;
  }

  /** Every call with its id, as a list (the table may change while it is read). */
  list(): [number, Pending][] {
    const all: [number, Pending][] = [];
    for (let slot = 0; slot < CALL_SLOTS && all.length < this.#inSlots; slot++) {
      if (this.#ids[slot] !== 0) all.push([this.#ids[slot], this.#slots[slot]!]);
    }
    if (this.#overflow !== undefined) all.push(...this.#overflow);
    return all;
  }
}

/**
 * Slots for raw calls (the balancer's per-request path), indexed by id: a
 * call takes the slot `id % RAW_SLOTS`, so no object, Map entry or
 * closure is made per forwarded request. A call whose slot is still held
 * (one older by RAW_SLOTS ids still unanswered) goes to the Map instead.
 */
const RAW_SLOTS = 512;
const RAW_MASK = RAW_SLOTS - 1;

/** Raw calls awaiting answers, by slot (allocated on a connection's first raw call). */
class RawSlots {
  /** The id in each slot; 0 when free (ids start at 1). */
  readonly ids = new Float64Array(RAW_SLOTS);
  readonly deadlines = new Float64Array(RAW_SLOTS);
  readonly sinks: (RawAnswerSink | undefined)[] = new Array(RAW_SLOTS).fill(undefined);
  count = 0;

  /** Takes the call `id` out. @returns its sink, or undefined when it is not here */
  take(id: number): RawAnswerSink | undefined {
    const slot = id & RAW_MASK;
    // 0 marks a free slot: an answer a peer sends with id 0 must not empty one
    if (this.ids[slot] !== id || id === 0) return undefined;
    const sink = this.sinks[slot];
    this.ids[slot] = 0;
    this.sinks[slot] = undefined;
    this.count--;
    return sink;
  }
}

export class CallTable {
  /** Calls awaiting answers (made on the first). */
  #pending: PendingCalls | undefined;
  #raw: RawSlots | undefined;
  #nextId = 1;
  /** Calls that timed out or were aborted: each may still be answered, late, once. */
  #late = 0;
  /**
   * Told of each answer that settles no call and is not a late one (an id
   * never sent, or one answered already), with its frame's size: a
   * protocol error of the peer's, which its owner may count and close for
   * (a balancer's backend: roles/balancer/backends.ts onStray).
   */
  onStray: ((bytes: number) => void) | undefined;
  /** Told of each late answer (to a call that timed out or was aborted). */
  onLate: (() => void) | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  #graced = false; // The timer fired once and waits for a poll turn (see #expire).
  /** The last error the peer reported about no request in particular. */
  #report: { err: DistError; at: number } | undefined;

  /** Calls awaiting answers. */
  get size(): number {
    return (this.#pending?.size ?? 0) + (this.#raw?.count ?? 0);
  }

  /** The id of the next call (each is used once). */
  nextId(): number {
    return this.#nextId++;
  }

  /**
   * Awaits the answer to call `id`, just sent: the promise settles with it,
   * with TIMEOUT after `timeoutMs`, or with the signal's abort.
   */
  wait(
    id: number,
    method: string,
    full: boolean,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const entry: Pending = {
        resolve,
        reject,
        deadline: performance.now() + timeoutMs,
        full,
        method,
      };
      this.#add(id, entry);
      if (signal) {
        const onAbort = () => {
          if (!this.#pending?.delete(id)) return;
          this.#late++;
          reject(abortError(signal));
        };
        signal.addEventListener("abort", onAbort, { once: true });
        entry.cleanup = () => signal.removeEventListener("abort", onAbort);
      }
    });
  }

  /** Awaits the answer to call `id`, just sent as bytes, in `sink` (undecoded). */
  waitRaw(id: number, sink: RawAnswerSink, timeoutMs: number): void {
    const raw = this.#raw ??= new RawSlots();
    const slot = id & RAW_MASK;
    if (raw.ids[slot] === 0) {
      const deadline = (sink.sentAt || performance.now()) + timeoutMs;
      raw.ids[slot] = id;
      raw.deadlines[slot] = deadline;
      raw.sinks[slot] = sink;
      raw.count++;
      if (deadline < this.#timerAt) this.#arm(deadline);
      return;
    }
    this.#add(id, {
      resolve: ignore,
      reject: ignore, // failures go to the sink (see fail)
      deadline: performance.now() + timeoutMs,
      full: false,
      method: "(forwarded)",
      raw: sink,
    });
  }

  #add(id: number, entry: Pending): void {
    (this.#pending ??= new PendingCalls()).set(id, entry);
    if (entry.deadline < this.#timerAt) this.#arm(entry.deadline);
  }

  /**
   * Settles the call `id` with a decoded answer (an error body rejects it);
   * an answer that settles none is checked by {@link stray}.
   * @param bytes its frame's size, for `onStray`
   * @returns false when no call awaits `id` (a late answer, after a timeout or abort, or a stray).
   */
  settle(id: number, answer: Answer, bytes = 0): boolean {
    const sink = this.#raw?.take(id);
    if (sink !== undefined) {
      rawAnswer(sink, answer);
      return true;
    }
    const entry = this.#take(id);
    if (entry === undefined) {
      this.stray(id, bytes);
      return false;
    }
    if (entry.raw !== undefined) {
      rawAnswer(entry.raw, answer);
    } else if (answer.error !== undefined) {
      entry.reject(DistError.fromBody(answer.error));
    } else {
      entry.resolve(entry.full ? { result: answer.result, by: answer.by } : answer.result);
    }
    return true;
  }

  /** Hands the scanned answer of a raw call over. @returns false when `id` is none. */
  settleRaw(id: number, env: Envelope): boolean {
    const sink = this.#raw?.take(id);
    if (sink !== undefined) {
      sink.onAnswer(env);
      return true;
    }
    const raw = this.#pending?.get(id)?.raw;
    if (raw === undefined) return false;
    this.#pending!.delete(id);
    raw.onAnswer(env);
    return true;
  }

  /**
   * An answer of `bytes` that settled no call (by `settleRaw`, or by
   * `settle`, which calls this itself): one to a call that timed out or was
   * aborted is let go (each of those may be answered once, late); any other
   * goes to `onStray`. Nothing is decoded here.
   * @returns false when a decoded call awaits `id` (its answer is `settle`'s to take)
   */
  stray(id: unknown, bytes: number): boolean {
    if (typeof id === "number" && this.#pending?.get(id) !== undefined) return false;
    if (typeof id === "number" && id > 0 && id < this.#nextId && this.#late > 0) {
      this.#late--;
      this.onLate?.();
    } else this.onStray?.(bytes);
    return true;
  }

  #take(id: number): Pending | undefined {
    const entry = this.#pending?.get(id);
    if (entry === undefined) return undefined;
    this.#pending!.delete(id);
    entry.cleanup?.();
    return entry;
  }

  /**
   * The peer reported `err` about no request in particular (e.g.
   * FRAME_TOO_LARGE for a frame of ours). Kept briefly: a peer that
   * reports, then hangs up, has said why its pending calls fail.
   */
  reported(err: DistError): void {
    this.#report = { err, at: performance.now() };
  }

  /**
   * What the peer reported just before now, as the error of what fails
   * because it then hung up; undefined when it reported nothing lately.
   */
  get lastReport(): DistError | undefined {
    const report = this.#report;
    if (report === undefined || performance.now() - report.at > REPORT_FRESH_MS) return undefined;
    return new DistError(
      report.err.code,
      `${cut(report.err.message)} (then the peer closed the connection)`,
    );
  }

  /**
   * Fails every call still awaiting an answer (the connection is gone) with
   * what the peer reported just before, if it did, else with `failure`.
   */
  failAll(failure: DistError): void {
    failure = this.lastReport ?? failure;
    this.#graced = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const raw = this.#raw;
    if (raw !== undefined && raw.count > 0) {
      for (let slot = 0; slot < RAW_SLOTS; slot++) {
        if (raw.ids[slot] !== 0) raw.take(raw.ids[slot])!.onAnswer(failure);
      }
    }
    const pending = this.#pending;
    if (pending === undefined || pending.size === 0) return;
    this.#pending = undefined;
    for (const [, entry] of pending.list()) {
      entry.cleanup?.();
      fail(entry, failure);
    }
  }

  /** One timer per connection, armed for the earliest deadline, instead of one per call. */
  #arm(at: number): void {
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(
      () => this.#expire(),
      Math.min(MAX_TIMER_MS, Math.max(0, at - performance.now())),
    );
  }

  #expire(): void {
    const at = this.#timerAt;
    this.#timer = undefined;
    this.#timerAt = Infinity;
    // A timer fired at resume, after this process did not run (stopped, a long GC), may be due
    // beside answers unread in the socket: the calls due fail once the runtime polled its sockets
    // again, if still unanswered (hostile47 Q13; a setTimeout(0) came first). Armed for `at` till.
    if (!this.#graced) {
      this.#graced = true;
      this.#timerAt = at;
      pollTurn().then(() => {
        if (this.#graced && this.#timer === undefined) this.#expire();
      });
      return;
    }
    this.#graced = false;
    const now = performance.now();
    let next = Infinity;
    const raw = this.#raw;
    if (raw !== undefined && raw.count > 0) {
      for (let slot = 0; slot < RAW_SLOTS; slot++) {
        const id = raw.ids[slot];
        if (id === 0) continue;
        const deadline = raw.deadlines[slot];
        if (deadline <= now + 1) {
          this.#late++;
          raw.take(id)!.onAnswer(new DistError("TIMEOUT", "Call (forwarded) timed out"));
        } else if (deadline < next) {
          next = deadline;
        }
      }
    }
    for (const [id, entry] of this.#pending?.list() ?? []) {
      if (entry.deadline <= now + 1) {
        this.#late++;
        this.#pending!.delete(id);
        entry.cleanup?.();
        fail(entry, new DistError("TIMEOUT", `Call ${entry.method} timed out`));
      } else if (entry.deadline < next) {
        next = entry.deadline;
      }
    }
    if (next !== Infinity) this.#arm(next);
  }
}

function ignore(): void {}

/** Fails a call locally (timeout, closed connection). */
function fail(entry: Pending, err: DistError): void {
  if (entry.raw !== undefined) entry.raw.onAnswer(err);
  else entry.reject(err);
}

/** Why an aborted call failed: the signal's DistError, TIMEOUT for a timeout, else UNAVAILABLE. */
export function abortError(signal: AbortSignal): DistError {
  const reason = signal.reason;
  if (reason instanceof DistError) return reason;
  if (reason instanceof DOMException && reason.name === "TimeoutError") {
    return new DistError("TIMEOUT", "Call aborted: timed out", { cause: reason });
  }
  return new DistError("UNAVAILABLE", "Call aborted", { cause: reason });
}
