import { describe, DistError } from "./errors.ts";
import { type Codec, jsonCodec, RefusedMessage } from "./codec.ts";
import type { OutBuffer } from "./frame.ts";
import { Envelope, scanJson } from "./passthrough.ts";
import { CloseReason, type FramedConn, type FrameWriter } from "./conn.ts";
import { cut, log, warnPeer } from "./_log.ts";

/** Who is at the other end, as told in the handshake. */
export interface PeerInfo {
  role: string;
  name: string;
}

/**
 * What a request handler returns when the answer carries a `by` other than
 * this peer's own name (a balancer passing through its backend's name).
 */
export class Reply {
  constructor(readonly result: unknown, readonly by?: string) {}
}

/** What a request says about itself besides method and params. */
export interface RequestMeta {
  /**
   * False when the sender marked the request non-idempotent (`"idem": false`
   * on the request): it must never run twice, so nothing may replay it.
   */
  readonly idempotent: boolean;
}

const IDEMPOTENT: RequestMeta = Object.freeze({ idempotent: true });
const NOT_IDEMPOTENT: RequestMeta = Object.freeze({ idempotent: false });

/**
 * Answers one request. Return the result (or a Promise of it), or throw a
 * DistError; anything else thrown becomes INTERNAL.
 */
export type RequestHandler = (
  method: string,
  params: unknown,
  peer: Peer,
  meta: RequestMeta,
) => unknown;
export type NotificationHandler = (method: string, params: unknown, peer: Peer) => void;
/**
 * Offered each request frame of a JSON connection before it is decoded
 * (byte pass-through, see passthrough.ts), as its scanned envelope: valid
 * only during the call. Returning true takes the request: the owner ends it
 * later with exactly one of `answerRaw`, `answer` or `answerError`. Returning
 * false lets it be decoded and go to `onRequest` as usual.
 */
export type RawRequestHandler = (peer: Peer, request: Envelope) => boolean;
/** A request forwarded as bytes with `Peer.callRaw` (byte pass-through). */
export interface RawCall {
  /**
   * Appends the request's frame under the id the Peer picked (e.g. with
   * `writeRequestAs`). @throws {DistError} FRAME_TOO_LARGE (nothing appended)
   */
  writeRequest(out: OutBuffer, id: number, maxFrame: number): void;
  /**
   * Gets the answer: the scanned response (valid only during the call), or
   * the DistError of a local failure (TIMEOUT, or UNAVAILABLE when the
   * connection closed first). An error answered by the peer arrives as a
   * response envelope with its error span.
   */
  onAnswer(answer: Envelope | DistError): void;
}

/** An answer written as bytes with `Peer.answerRaw`. */
export interface RawReply {
  /** Appends the answer's frame (e.g. with `writeAnswerAs`). @throws {DistError} FRAME_TOO_LARGE */
  writeAnswer(out: OutBuffer, maxFrame: number): void;
}

/**
 * A role's fast path for frames it can handle without decoding them (the
 * broker's publishes, a subscriber's deliveries): `accepts` is a cheap pure
 * check, such as a byte prefix; `handle` then takes the frame, in order with
 * the other messages of its read (those before it are dispatched first), and
 * returns false to have it decoded and dispatched as usual after all.
 * Frames are views, valid only during the call.
 */
export interface RawFrameHandler {
  accepts(frame: Uint8Array): boolean;
  handle(frame: Uint8Array, peer: Peer): boolean;
}

export interface PeerOptions {
  codec: Codec;
  /** Name put in `by` of every response this side sends. */
  by?: string;
  /** Silence after which a `ping` notification is sent (ms); 0 disables heartbeats. */
  heartbeatMs?: number;
  /** Heartbeat periods of silence after which the peer is dead. */
  liveness?: number;
  /** Timeout of a call that names none (ms). */
  timeoutMs?: number;
  onRequest?: RequestHandler;
  onNotification?: NotificationHandler;
  /** Byte pass-through of requests (JSON connections only); see RawRequestHandler. */
  onRawRequest?: RawRequestHandler;
  /** Frames taken before decoding (see {@link RawFrameHandler}). */
  rawFrames?: RawFrameHandler;
  /**
   * Most malformed messages answered on one connection; at the limit the
   * connection is closed and nothing more from it is answered (garbage is
   * never amplified beyond this many error answers).
   */
  maxProtocolErrors?: number;
  /**
   * Most requests from the peer handled at once (answers still pending);
   * at the limit the requests behind wait unread (see the stash in Peer)
   * and the connection stops reading until one finishes.
   */
  maxInFlight?: number;
  /** Requests being handled across many peers (a listener's), bounded together. */
  budget?: InFlightBudget;
  remote?: PeerInfo;
}

/**
 * Requests being handled across every connection of a listener. Limits per
 * connection alone let N connections hold N × maxInFlight requests (each
 * with its timer, params and promise); past `limit`, no connection starts
 * another until the total is back under 90% of it.
 */
export class InFlightBudget {
  inFlight = 0;
  readonly limit: number;
  #waiting = new Set<() => void>();

  constructor(limit: number) {
    this.limit = limit;
  }

  get full(): boolean {
    return this.inFlight >= this.limit;
  }

  /** Calls `retry` once the budget has room again (unless cancelled first). */
  wait(retry: () => void): void {
    this.#waiting.add(retry);
  }

  cancel(retry: () => void): void {
    this.#waiting.delete(retry);
  }

  /** One request finished. */
  give(): void {
    this.inFlight--;
    if (this.#waiting.size > 0 && this.inFlight < this.limit * 0.9) {
      const waiting = [...this.#waiting];
      this.#waiting.clear();
      for (const retry of waiting) retry();
    }
  }
}

/** How recent a peer's report must be to explain its hanging up (ms). */
const REPORT_FRESH_MS = 2000;

/** Default limit of requests being handled across one listener's connections. */
export const DEFAULT_MAX_IN_FLIGHT_TOTAL = 65_536;
/**
 * Requests every connection may have in flight whatever the listener's
 * budget says: the budget bounds a listener at limit + MIN_SHARE × connections.
 */
export const MIN_SHARE = 4;

export interface CallOptions {
  /** Milliseconds; defaults to the peer's `timeoutMs`. */
  timeout?: number;
  signal?: AbortSignal;
  /**
   * False marks the request non-idempotent (`"idem": false` on the wire): a
   * balancer then never sends it twice. Default true (the member is left out).
   */
  idempotent?: boolean;
}

/** A response as received: the result and who did the work. */
export interface Response {
  result: unknown;
  by?: string;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: DistError) => void;
  deadline: number;
  full: boolean;
  method: string;
  cleanup?: () => void;
  /** Set for a `callRaw`: the answer is handed over undecoded. */
  raw?: RawCall;
}

const DEFAULT_TIMEOUT_MS = 30_000;
/** The longest delay a timer takes (2^31 - 1 ms); longer ones would fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** Default limit of requests from one peer handled at once. */
export const DEFAULT_MAX_IN_FLIGHT = 4096;
/** Default heartbeat (ms); a connection uses the shorter of its two sides'. */
export const DEFAULT_HEARTBEAT_MS = 1000;
/** Longest request id (a string's length): longer ones are a BAD_REQUEST. */
export const MAX_ID_LENGTH = 256;
/** Longest method name: longer ones are a BAD_REQUEST. */
export const MAX_METHOD_LENGTH = 256;

/** Close reasons that say a peer misbehaved or vanished: worth a warning. */
const WARN_REASONS: ReadonlySet<CloseReason> = new Set([
  CloseReason.SlowConsumer,
  CloseReason.FrameTimeout,
  CloseReason.FrameTooLarge,
  CloseReason.ProtocolError,
  CloseReason.HeartbeatTimeout,
]);

/** A usable request id: a safe integer or a string of at most MAX_ID_LENGTH. */
function isValidId(id: unknown): id is number | string {
  return typeof id === "string" ? id.length <= MAX_ID_LENGTH : Number.isSafeInteger(id);
}

/**
 * The RPC endpoint on one connection, the same at both ends: it sends
 * requests and notifications, answers requests with its handler, matches
 * responses to calls by id (many in flight, any order), times calls out,
 * keeps the connection alive with heartbeats and declares a silent peer dead.
 */
export class Peer {
  readonly conn: FramedConn;
  readonly codec: Codec;
  readonly remote: PeerInfo;
  readonly by?: string;
  onRequest: RequestHandler;
  onNotification: NotificationHandler;
  onRawRequest: RawRequestHandler | undefined;
  /** Frames taken before decoding, if any (see {@link RawFrameHandler}). */
  rawFrames: RawFrameHandler | undefined;
  /** Free for the owner: the role's per-connection state. */
  data: unknown;
  /** A set this peer belongs to while open (a listener's); it leaves it on close. */
  tracker: Set<Peer> | undefined;

  /** Calls of ours awaiting answers; the shared empty map until the first call. */
  #pending: Map<number, Pending> = NO_CALLS;
  #nextId = 1;
  #timeoutMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  #handling = 0;
  #idleWaiters: (() => void)[] | undefined;
  #protocolErrors = 0;
  /** Set once the protocol-error budget is spent: nothing more is answered. */
  #refusing = false;
  #peerComplaints = 0;
  /** The last error the peer reported about no request in particular. */
  #lastReport: { err: DistError; at: number } | undefined;
  #maxProtocolErrors: number;
  #maxInFlight: number;
  #budget: InFlightBudget | undefined;
  /**
   * Frames that arrived behind a request this peer could not start yet (its
   * own limit or the listener's budget was reached): copies, in order, at
   * most about one read's worth, since reading stops while there are any.
   */
  #stash: Uint8Array[] | undefined;
  /** Retries the stash when the budget has room (one closure per peer, made on first need). */
  #retry: (() => void) | undefined;
  /** Whether the stash holds one pause of the reading (see FramedConn.pauseReading). */
  #holding = false;
  /** Requests received, for the close log line. */
  #requestsIn = 0;
  /** Whether each request is logged (trace level), decided once per connection. */
  #traceRequests: boolean;
  /** Set once `callRaw` is used: answers are scanned before decoding. */
  #rawCalls = false;
  /** Reused for each frame scanned (handlers use it synchronously only). */
  #envelope: Envelope | undefined;
  /** Reused to hand a raw call or reply to `conn.sendWith` without a closure per message. */
  #writer = new RawWriter();

  constructor(conn: FramedConn, options: PeerOptions) {
    this.conn = conn;
    this.codec = options.codec;
    this.by = options.by;
    this.remote = options.remote ?? { role: "unknown", name: "unknown" };
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#maxProtocolErrors = options.maxProtocolErrors ?? 10;
    this.#maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    this.#budget = options.budget;
    this.onRequest = options.onRequest ?? unknownMethod;
    this.onNotification = options.onNotification ?? ignoreNotification;
    this.onRawRequest = options.onRawRequest;
    this.rawFrames = options.rawFrames;
    this.#traceRequests = log.isEnabledFor("trace");
    conn.onFrames = (frames) => this.#onFrames(frames);
    conn.onStreamError = (err) => this.#fatal(err);
    conn.onEnd = () => this.#onEnd();
    conn.onClose = (reason, err) => this.#onClose(reason, err);
    const hb = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    if (hb > 0) conn.keepAlive(hb, options.liveness ?? 3, this.codec);
    conn.start();
    // What came behind the handshake, in order: frames, then a broken stream or EOF.
    const held = conn.held;
    conn.held = undefined;
    if (held !== undefined) this.#onFrames(held);
    if (conn.heldError) this.#fatal(conn.heldError);
    else if (conn.readEnded && !conn.isClosed) this.#onEnd();
  }

  get isClosed(): boolean {
    return this.conn.isClosed;
  }

  get closed(): Promise<CloseReason> {
    return this.conn.closed;
  }

  /**
   * Whether a call made now can be answered: the connection is open and the
   * peer has not ended its side (after its EOF no answer can arrive, even
   * while this side still answers what it was sent).
   */
  get canCall(): boolean {
    return !this.conn.isClosed && !this.conn.readEnded;
  }

  /** Calls in flight from this side. */
  get pendingCalls(): number {
    return this.#pending.size;
  }

  /** Requests from the peer being handled now. */
  get handling(): number {
    return this.#handling;
  }

  /**
   * Calls `method` and resolves with its result.
   * @throws {DistError} the peer's error, TIMEOUT, UNAVAILABLE when the
   * connection closes first, or the abort reason's code (TIMEOUT/UNAVAILABLE).
   */
  call(method: string, params?: unknown, options?: CallOptions): Promise<unknown> {
    return this.#call(method, params, options, false) as Promise<unknown>;
  }

  /** Like `call`, but resolves with the result and the `by` of the response. */
  request(method: string, params?: unknown, options?: CallOptions): Promise<Response> {
    return this.#call(method, params, options, true) as Promise<Response>;
  }

  #call(method: string, params: unknown, options: CallOptions | undefined, full: boolean) {
    if (!this.canCall) {
      const why = this.conn.closeReason ?? "ended by peer";
      return Promise.reject(new DistError("UNAVAILABLE", `Connection closed (${why})`));
    }
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const id = this.#nextId++;
    const timeout = options?.timeout ?? this.#timeoutMs;
    return new Promise((resolve, reject) => {
      const entry: Pending = {
        resolve,
        reject,
        deadline: performance.now() + timeout,
        full,
        method,
      };
      try {
        const msg = options?.idempotent === false
          ? { id, method, params, idem: false }
          : { id, method, params };
        if (!this.conn.send(this.codec, msg)) {
          // Closed by this very send (slow consumer) or before it.
          reject(new DistError("UNAVAILABLE", `Connection closed (${this.conn.closeReason})`));
          return;
        }
      } catch (err) {
        reject(DistError.from(err));
        return;
      }
      if (this.#pending === NO_CALLS) this.#pending = new Map();
      this.#pending.set(id, entry);
      if (signal) {
        const onAbort = () => {
          if (this.#pending.delete(id)) reject(abortError(signal));
        };
        signal.addEventListener("abort", onAbort, { once: true });
        entry.cleanup = () => signal.removeEventListener("abort", onAbort);
      }
      if (entry.deadline < this.#timerAt) this.#armTimer(entry.deadline);
    });
  }

  /**
   * Byte pass-through: sends the request frame `call` writes under the id
   * this peer picks, and hands the answer to `call.onAnswer` undecoded.
   * JSON connections only.
   * @returns false when nothing was sent (the connection is closed, or the
   * peer has ended its side): `onAnswer` is then never called.
   * @throws {DistError} what `writeRequest` throws (FRAME_TOO_LARGE); nothing is sent.
   */
  callRaw(call: RawCall, timeoutMs: number = this.#timeoutMs): boolean {
    if (this.codec !== jsonCodec) {
      throw new DistError("INTERNAL", "Byte pass-through needs a JSON connection");
    }
    if (!this.canCall) return false;
    const id = this.#nextId++;
    if (!this.conn.sendWith(this.#writer.request(call, id, this.conn.maxFrame))) return false;
    this.#rawCalls = true;
    const entry: Pending = {
      resolve: ignoreValue,
      reject: ignoreValue, // failures go to call.onAnswer (see failCall)
      deadline: performance.now() + timeoutMs,
      full: false,
      method: "(forwarded)",
      raw: call,
    };
    if (this.#pending === NO_CALLS) this.#pending = new Map();
    this.#pending.set(id, entry);
    if (entry.deadline < this.#timerAt) this.#armTimer(entry.deadline);
    return true;
  }

  /**
   * Ends a request taken by `onRawRequest` (whose id is `id`) with the frame
   * `reply` writes; if that throws (say FRAME_TOO_LARGE), with that error.
   */
  answerRaw(id: number | string, reply: RawReply): void {
    try {
      this.conn.sendWith(this.#writer.reply(reply, this.conn.maxFrame));
    } catch (err) {
      this.#respondError(id, err);
    }
    this.#handled();
  }

  /** Ends a request taken by `onRawRequest` with a value (or a Reply). */
  answer(id: number | string, value: unknown): void {
    this.#respond(id, value);
    this.#handled();
  }

  /** Ends a request taken by `onRawRequest` with an error. */
  answerError(id: number | string, err: unknown): void {
    this.#respondError(id, err);
    this.#handled();
  }

  /** Sends a notification (no answer). @returns false if the connection is closed. */
  notify(method: string, params?: unknown): boolean {
    return this.conn.send(this.codec, params === undefined ? { method } : { method, params });
  }

  /** Closes the connection; pending calls fail with UNAVAILABLE. */
  close(reason: CloseReason = CloseReason.Local): void {
    this.conn.close(reason);
  }

  /**
   * Resolves when no request from the peer is being handled and output is
   * flushed, or after `timeoutMs`. Used for a graceful stop.
   */
  async idle(timeoutMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<void>((resolve) => timer = setTimeout(resolve, timeoutMs));
    const idle = this.#isIdle ? Promise.resolve() : new Promise<void>((resolve) => {
      (this.#idleWaiters ??= []).push(resolve);
    });
    await Promise.race([idle.then(() => this.conn.drained(0)), deadline]);
    clearTimeout(timer);
  }

  // ---- incoming ----

  #onFrames(frames: Uint8Array[]): void {
    if (this.#refusing) return;
    if (this.#stash !== undefined) {
      // Behind frames still waiting for room: these wait too, in order.
      for (const f of frames) this.#stash.push(f.slice());
      return;
    }
    this.#process(frames);
  }

  /**
   * Whether a request from the peer may start now: under its own limit, and
   * either under the listener's budget or within the few every connection
   * is always granted (so one heavy client exhausting the budget throttles
   * itself, not a light one probing sys.stats).
   */
  #mayStart(): boolean {
    return this.#handling < this.#maxInFlight &&
      (this.#handling < MIN_SHARE || !(this.#budget?.full ?? false));
  }

  /** No request is being handled and none is waiting to start. */
  get #isIdle(): boolean {
    return this.#handling === 0 && this.#stash === undefined;
  }

  /**
   * Keeps `frames` (from a request that may not start yet on) for later and
   * stops reading until there is room. Frames are views of the read buffer:
   * they are copied.
   */
  #hold(frames: Uint8Array[]): void {
    const copies: Uint8Array[] = frames.map((f) => f.slice());
    this.#stash = this.#stash === undefined ? copies : this.#stash.concat(copies);
    if (!this.#holding) {
      this.#holding = true;
      this.conn.pauseReading();
    }
    if (this.#budget?.full) this.#budget.wait(this.#retry ??= () => this.#release());
  }

  /** Handles held frames while there is room; reading resumes once none are left. */
  #release(): void {
    while (this.#stash !== undefined && this.#mayStart() && !this.conn.isClosed) {
      const frames = this.#stash;
      this.#stash = undefined;
      this.#process(frames); // may hold some of them again
    }
    if (this.#stash === undefined) {
      if (this.#holding) {
        this.#holding = false;
        this.conn.resumeReading();
      }
      this.#maybeIdle();
    } else if (this.#budget?.full) {
      this.#budget.wait(this.#retry ??= () => this.#release());
    }
  }

  /** Frames in arrival order: pass-through, raw frames, then decoded messages. */
  #process(frames: Uint8Array[]): void {
    if ((this.onRawRequest !== undefined || this.#rawCalls) && this.codec === jsonCodec) {
      frames = this.#passThrough(frames);
      if (frames.length === 0) return;
    }
    const raw = this.rawFrames;
    if (raw === undefined) {
      this.#dispatch(frames);
      return;
    }
    // Runs of ordinary frames are decoded together; a raw frame waits for
    // the run before it, so every message is handled in arrival order.
    let start = 0;
    for (let i = 0; i < frames.length; i++) {
      if (!raw.accepts(frames[i])) continue;
      if (start < i) this.#dispatch(frames.slice(start, i));
      if (this.conn.isClosed || this.#refusing) return;
      if (this.#stash !== undefined) {
        // A request in that run had to wait: so does everything after it.
        this.#hold(frames.slice(i));
        return;
      }
      if (!raw.handle(frames[i], this)) this.#dispatch([frames[i]]);
      start = i + 1;
    }
    if (start === 0) this.#dispatch(frames);
    else if (start < frames.length) this.#dispatch(frames.slice(start));
  }

  #dispatch(frames: Uint8Array[]): void {
    if (this.conn.isClosed || this.#refusing) return;
    const messages = this.codec.decodeAll(frames);
    for (let i = 0; i < messages.length && !this.conn.isClosed && !this.#refusing; i++) {
      const m = messages[i] as Record<string, unknown> | null;
      if (
        !this.#mayStart() && m !== null && typeof m === "object" && m.method !== undefined &&
        Object.hasOwn(m, "id")
      ) {
        this.#hold(frames.slice(i)); // decoded again when there is room
        return;
      }
      this.#onMessage(m);
    }
  }

  /**
   * The peer closed its side (EOF). Nothing more can arrive, so calls of
   * ours still waiting for answers fail now; requests of the peer's that are
   * being handled are still answered and flushed, then the connection closes
   * (as an HTTP server answers a half-closed request).
   */
  #onEnd(): void {
    this.#failPending(
      this.#reported() ?? new DistError("UNAVAILABLE", "Connection closed by peer"),
    );
    const finish = () => {
      this.conn.drained(0).then(() => this.conn.close(CloseReason.RemoteClosed));
    };
    if (this.#isIdle) finish();
    else (this.#idleWaiters ??= []).push(finish);
  }

  /**
   * Byte pass-through: hands requests to `onRawRequest` and answers to raw
   * calls without decoding them. @returns the frames left to decode.
   */
  #passThrough(frames: Uint8Array[]): Uint8Array[] {
    const env = this.#envelope ??= new Envelope();
    let rest: Uint8Array[] | undefined;
    for (let i = 0; i < frames.length && !this.conn.isClosed; i++) {
      const frame = frames[i];
      let taken = false;
      if (scanJson(frame, env)) {
        if (env.isRequest) {
          if (!this.#mayStart()) {
            // No room: this frame and all after it take the decoding path,
            // which keeps them, in order, until there is.
            return rest === undefined ? frames : rest.concat(frames.slice(i));
          }
          if (this.onRawRequest !== undefined && this.onRawRequest(this, env)) {
            taken = true;
            this.#requestsIn++;
            this.#started();
          }
        } else if (env.isResponse) {
          const entry = this.#pending.get(env.id as number);
          if (entry?.raw !== undefined) {
            taken = true;
            this.#pending.delete(env.id as number);
            entry.raw.onAnswer(env);
          }
        }
      }
      if (taken) rest ??= frames.slice(0, i);
      else rest?.push(frame);
    }
    return rest ?? frames;
  }

  #onMessage(msg: unknown): void {
    if (msg instanceof DistError) {
      const id = msg instanceof RefusedMessage ? msg.id : undefined;
      if (msg instanceof RefusedMessage && msg.isRequest && isValidId(id)) {
        this.#protocolError(id, msg); // a request we read but refuse: answer it, by its id
      } else if (!(msg instanceof RefusedMessage) || msg.isRequest || typeof id !== "number") {
        this.#protocolError(null, msg);
      } else if (this.#pending.has(id)) {
        // An answer we read but refuse: its call fails now, not at its timeout.
        this.#onResponse(id, {
          error: { code: "INTERNAL", message: `Unreadable answer: ${msg.message}` },
        });
      }
      return;
    }
    if (msg === null || typeof msg !== "object" || Array.isArray(msg)) {
      this.#protocolError(null, new DistError("BAD_REQUEST", "A message must be an object"));
      return;
    }
    const m = msg as Record<string, unknown>;
    const id = m.id;
    // A message with an `id` member is a request or a response, whatever its
    // value: `"id": null` is not a notification.
    const hasId = Object.hasOwn(m, "id");
    const validId = isValidId(id);
    if (m.method !== undefined) {
      if (hasId && !validId) {
        this.#protocolError(
          null,
          new DistError(
            "BAD_REQUEST",
            `A request id must be a safe integer or a string of at most ${MAX_ID_LENGTH} chars`,
          ),
        );
      } else if (typeof m.method !== "string" || m.method.length > MAX_METHOD_LENGTH) {
        this.#protocolError(
          validId ? id : null,
          new DistError(
            "BAD_REQUEST",
            `A method must be a string of at most ${MAX_METHOD_LENGTH} chars`,
          ),
        );
      } else if (validId) {
        this.#onRequest(id, m.method, m.params, m.idem === false ? NOT_IDEMPOTENT : IDEMPOTENT);
      } else {
        this.#onNotification(m.method, m.params);
      }
    } else if (typeof id === "number" && ("result" in m || "error" in m)) {
      this.#onResponse(id, m);
    } else if (typeof id === "number" && this.#pending.has(id)) {
      // An answer with neither result nor error: never a silent wrong answer.
      this.#onResponse(id, {
        error: { code: "INTERNAL", message: "Malformed response: no result and no error" },
      });
    } else if (m.error !== undefined && (id === null || id === undefined)) {
      // An error about no request in particular (a bad frame we sent).
      const err = DistError.fromBody(m.error);
      // Kept briefly: a peer that reports, then hangs up, has said why.
      this.#lastReport = { err, at: performance.now() };
      // A peer could send these endlessly: the first few are worth a warning.
      const report = ++this.#peerComplaints <= 3 ? warnPeer : log.debug.bind(log);
      report("Peer {peer} reported: {code}: {message}", {
        peer: this.remote.name,
        code: err.code,
        message: cut(err.message),
      });
    } else {
      this.#protocolError(
        null,
        new DistError("BAD_REQUEST", "A message needs a method (request) or an id (response)"),
      );
    }
  }

  #onNotification(method: string, params: unknown): void {
    if (method === "ping") return; // heartbeat: receiving it was the point
    try {
      this.onNotification(method, params, this);
    } catch (err) {
      log.error("Notification {method} failed: {error}", { method, error: cut(String(err)) });
    }
  }

  #onRequest(id: number | string, method: string, params: unknown, meta: RequestMeta): void {
    this.#requestsIn++;
    if (this.#traceRequests) {
      log.trace("Request {id} {method} from {peer}", { id, method, peer: this.remote.name });
    }
    let result: unknown;
    try {
      result = this.onRequest(method, params, this, meta);
    } catch (err) {
      this.#respondError(id, err);
      return;
    }
    if (result instanceof Promise) {
      this.#started();
      result.then(
        (value) => this.#respond(id, value),
        (err) => this.#respondError(id, err),
      ).finally(() => this.#handled());
    } else {
      this.#respond(id, result);
    }
  }

  /** A request of the peer's is being handled (its answer comes later). */
  #started(): void {
    this.#handling++;
    if (this.#budget !== undefined) this.#budget.inFlight++;
  }

  /** One request of the peer's that was being handled has its answer. */
  #handled(): void {
    this.#handling--;
    this.#budget?.give();
    if (this.#stash !== undefined) this.#release();
    else this.#maybeIdle();
  }

  #maybeIdle(): void {
    if (this.#isIdle && this.#idleWaiters !== undefined) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = undefined;
      for (const w of waiters) w();
    }
  }

  #respond(id: number | string, value: unknown): void {
    let msg: Record<string, unknown>;
    if (value instanceof Reply) {
      msg = value.by === undefined
        ? { id, result: value.result }
        : { id, result: value.result, by: value.by };
    } else {
      msg = this.by === undefined ? { id, result: value } : { id, result: value, by: this.by };
    }
    if (msg.result === undefined) msg.result = null;
    try {
      this.conn.send(this.codec, msg);
    } catch (err) {
      // The result could not be encoded (too large, or not encodable): the
      // caller gets an error that fits instead of silence.
      const e = DistError.from(err);
      this.#respondError(
        id,
        e.code === "FRAME_TOO_LARGE"
          ? new DistError("FRAME_TOO_LARGE", `Answer too large to send: ${e.message}`)
          : e,
      );
    }
  }

  #respondError(id: number | string | null, err: unknown): void {
    const e = DistError.from(err);
    if (e.code === "INTERNAL") {
      log.error("Request {id} failed: {error}", { id, error: cut(String(err)) });
    }
    const msg: Record<string, unknown> = { id, error: e.toBody() };
    if (this.by !== undefined) msg.by = this.by;
    try {
      this.conn.send(this.codec, msg);
    } catch (sendErr) {
      // The error itself is too large or not encodable (its data or an echoed
      // value): the caller still gets an answer, with the code alone.
      log.debug("Error reply {id} cut to its code: {error}", { id, error: cut(String(sendErr)) });
      const short = { code: e.code, message: describe(e.message, 200) };
      try {
        this.conn.send(this.codec, { id, error: short });
      } catch (lastErr) {
        log.error("Cannot send error reply: {error}", { error: cut(String(lastErr)) });
      }
    }
  }

  #onResponse(id: number, m: Record<string, unknown>): void {
    const entry = this.#pending.get(id);
    if (entry === undefined) return; // late answer to a call that timed out or was aborted
    this.#pending.delete(id);
    entry.cleanup?.();
    if (entry.raw !== undefined) return this.#rawAnswer(entry.raw, m);
    if (m.error !== undefined) {
      entry.reject(DistError.fromBody(m.error));
    } else if (entry.full) {
      entry.resolve({ result: m.result, by: typeof m.by === "string" ? m.by : undefined });
    } else {
      entry.resolve(m.result);
    }
  }

  /**
   * An answer to a raw call that the scanner left to the decoder: encoded
   * again in a form it reads (only the members a response may carry).
   */
  #rawAnswer(call: RawCall, m: Record<string, unknown>): void {
    const clean: Record<string, unknown> = { id: 0 };
    if (m.error !== undefined) clean.error = m.error;
    else clean.result = m.result ?? null;
    if (typeof m.by === "string") clean.by = m.by;
    const env = new Envelope();
    if (scanJson(new TextEncoder().encode(JSON.stringify(clean)), env)) call.onAnswer(env);
    else call.onAnswer(new DistError("INTERNAL", "Malformed response: cannot pass it through"));
  }

  /**
   * A message we cannot use: answer with an error. After maxProtocolErrors
   * of them the connection closes and nothing more from it is answered.
   */
  #protocolError(id: number | string | null, err: DistError): void {
    if (this.#refusing) return;
    this.#respondError(id, err);
    if (++this.#protocolErrors >= this.#maxProtocolErrors) {
      this.#refusing = true;
      this.conn.closeAfterFlush(
        CloseReason.ProtocolError,
        new DistError(
          "BAD_REQUEST",
          `${this.#protocolErrors} malformed messages; the last: ${err.message}`,
        ),
      );
    }
  }

  /** The byte stream itself is broken (e.g. FRAME_TOO_LARGE): tell the peer and hang up. */
  #fatal(err: DistError): void {
    try {
      this.conn.send(this.codec, { id: null, error: err.toBody() });
    } catch {
      // Nothing more can be said on this connection.
    }
    const reason = err.code === "FRAME_TOO_LARGE"
      ? CloseReason.FrameTooLarge
      : CloseReason.ProtocolError;
    this.conn.closeAfterFlush(reason, err);
  }

  #onClose(reason: CloseReason, err?: unknown): void {
    this.tracker?.delete(this);
    this.#stash = undefined;
    if (this.#retry !== undefined) this.#budget?.cancel(this.#retry);
    const detail = err instanceof Error ? `: ${err.message}` : "";
    this.#failPending(
      this.#reported() ??
        new DistError("UNAVAILABLE", `Connection closed (${reason})${detail}`),
    );
    const props = {
      peer: this.remote.name,
      addr: this.conn.remoteAddress,
      reason,
      detail: cut(detail),
      requests: this.#requestsIn,
      in: this.conn.bytesIn,
      out: this.conn.bytesOut,
    };
    const line = "Connection with {peer} ({addr}) closed: {reason}{detail}; " +
      "{requests} requests, {in} bytes in, {out} bytes out";
    if (WARN_REASONS.has(reason)) warnPeer(line, props);
    else log.debug(line, props);
  }

  /**
   * What the peer reported just before hanging up (an error about no request
   * in particular, e.g. FRAME_TOO_LARGE for a frame of ours), as the reason
   * its pending calls fail; undefined when it said nothing lately.
   */
  #reported(): DistError | undefined {
    const last = this.#lastReport;
    if (last === undefined || performance.now() - last.at > REPORT_FRESH_MS) return undefined;
    return new DistError(
      last.err.code,
      `${cut(last.err.message)} (then the peer closed the connection)`,
    );
  }

  /** Fails every call of ours still waiting for an answer. */
  #failPending(failure: DistError): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const pending = this.#pending;
    if (pending.size === 0) return;
    this.#pending = NO_CALLS;
    for (const entry of pending.values()) {
      entry.cleanup?.();
      failCall(entry, failure);
    }
  }

  // ---- timers ----

  /** One timer per peer, armed for the earliest deadline, instead of one per call. */
  #armTimer(at: number): void {
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(
      () => this.#expire(),
      Math.min(MAX_TIMER_MS, Math.max(0, at - performance.now())),
    );
  }

  #expire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const [id, entry] of this.#pending) {
      if (entry.deadline <= now + 1) {
        this.#pending.delete(id);
        entry.cleanup?.();
        failCall(entry, new DistError("TIMEOUT", `Call ${entry.method} timed out`));
      } else if (entry.deadline < next) {
        next = entry.deadline;
      }
    }
    if (next !== Infinity) this.#armTimer(next);
  }
}

/** The `#pending` of a peer that has made no call yet (never written to). */
const NO_CALLS: Map<number, Pending> = new Map();

function unknownMethod(method: string): never {
  throw new DistError("UNKNOWN_METHOD", `Unknown method: ${describe(method, 200)}`);
}

function ignoreNotification(): void {}

function ignoreValue(): void {}

/** Fails a call of ours locally (timeout, closed connection). */
function failCall(entry: Pending, err: DistError): void {
  if (entry.raw !== undefined) entry.raw.onAnswer(err);
  else entry.reject(err);
}

/**
 * Adapts a RawCall or RawReply to the FrameWriter that `conn.sendWith`
 * takes; one per Peer, set just before each (synchronous) use.
 */
class RawWriter implements FrameWriter {
  #call: RawCall | undefined;
  #reply: RawReply | undefined;
  #id = 0;
  #maxFrame = 0;

  request(call: RawCall, id: number, maxFrame: number): this {
    this.#call = call;
    this.#reply = undefined;
    this.#id = id;
    this.#maxFrame = maxFrame;
    return this;
  }

  reply(reply: RawReply, maxFrame: number): this {
    this.#reply = reply;
    this.#call = undefined;
    this.#maxFrame = maxFrame;
    return this;
  }

  writeFrames(out: OutBuffer): void {
    if (this.#call !== undefined) this.#call.writeRequest(out, this.#id, this.#maxFrame);
    else this.#reply!.writeAnswer(out, this.#maxFrame);
    this.#call = this.#reply = undefined;
  }
}

function abortError(signal: AbortSignal): DistError {
  const reason = signal.reason;
  if (reason instanceof DistError) return reason;
  if (reason instanceof DOMException && reason.name === "TimeoutError") {
    return new DistError("TIMEOUT", "Call aborted: timed out", { cause: reason });
  }
  return new DistError("UNAVAILABLE", "Call aborted", { cause: reason });
}
