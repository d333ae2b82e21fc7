/**
 * The RPC endpoint on one connection; its parts live in their own files: the calls this side
 * awaits (calls.ts), admission of the peer's requests (admission.ts), what a message is
 * (classify.ts), the byte-level fast paths (fast_path.ts), how answers are written (answers.ts)
 * and what its owner gives it (peer_options.ts); this file wires them to the connection.
 */
import { describe, DistError } from "./errors.ts";
import { type Codec, jsonCodec } from "./codec.ts";
import { CloseReason, type FramedConn } from "./conn.ts";
import { Admission } from "./admission.ts";
import { abortError, type CallOptions, CallTable, type Response } from "./calls.ts";
import { classify, Message } from "./classify.ts";
import { FastPath, type FastPathHost, type RawCall, type RawReply } from "./fast_path.ts";
import { Answers } from "./answers.ts";
import type { Identity } from "./credentials.ts";
import { cut, log, warnPeer } from "./_log.ts";
import type {
  NotificationHandler,
  PeerInfo,
  PeerOptions,
  RequestCounter,
  RequestHandler,
  RequestMeta,
  RequestTally,
} from "./peer_options.ts";

const IDEMPOTENT: RequestMeta = Object.freeze({ idempotent: true });
const NOT_IDEMPOTENT: RequestMeta = Object.freeze({ idempotent: false });

const DEFAULT_TIMEOUT_MS = 30_000;
/** Default heartbeat (ms); a connection uses the shorter of its two sides'. */
export const DEFAULT_HEARTBEAT_MS = 1000;

/** Close reasons that say a peer misbehaved or vanished: worth a warning. */
const WARN_REASONS: ReadonlySet<CloseReason> = new Set([
  CloseReason.SlowConsumer,
  CloseReason.FrameTimeout,
  CloseReason.FrameTooLarge,
  CloseReason.ProtocolError,
  CloseReason.HeartbeatTimeout,
]);

/**
 * The RPC endpoint on one connection, the same at both ends: it sends requests and notifications,
 * answers requests with its handler, matches responses to calls by id (many in flight, any order),
 * times calls out, keeps the connection alive with heartbeats and declares a silent peer dead.
 * Made by `listen()` and `dial()` once the handshake is done.
 */
export class Peer {
  /** The connection (its counters, backpressure and raw sends are the owner's to use). */
  readonly conn: FramedConn;
  /** The codec agreed in the handshake. */
  readonly codec: Codec;
  /** Who is at the other end, as told in the handshake. */
  readonly remote: PeerInfo;
  /** Put in `by` of every response this side sends. */
  readonly by?: string;
  /**
   * Who the dialer proved to be, on a listener that authenticates (see credentials.ts); the
   * dispatch point checks its `access`. Undefined elsewhere: no authentication, every right.
   */
  readonly identity?: Identity;
  /** Free for the owner: the role's per-connection state. */
  data: unknown;

  #onRequest: RequestHandler;
  #answers: Answers;
  #onNotification: NotificationHandler;
  #counter: RequestCounter | undefined;
  #lastMethod = "";
  #lastTally: RequestTally | undefined;
  #calls = new CallTable();
  #admission: Admission;
  #fast: FastPath | undefined;
  #tracker: Set<Peer> | undefined;
  #timeoutMs: number;
  #message = new Message();
  #peerComplaints = 0;
  /** Requests received, for the close log line. */
  #requestsIn = 0;
  /** Whether each request is logged (trace level), decided once per connection. */
  #traceRequests = log.isEnabledFor("trace");

  /**
   * Runs the RPC endpoint on `conn` once its handshake is done (`listen()` and `dial()` make Peers; roles take them from there).
   */
  constructor(conn: FramedConn, options: PeerOptions) {
    this.conn = conn;
    this.codec = options.codec;
    this.by = options.by;
    this.remote = options.remote ?? { role: "unknown", name: "unknown" };
    this.identity = options.identity;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#answers = new Answers(conn, this.codec, options);
    this.#onRequest = options.onRequest ?? unknownMethod;
    this.#onNotification = options.onNotification ?? ignore;
    this.#counter = options.counter;
    this.#admission = new Admission(conn, options, (frames) => this.#process(frames));
    if (options.onRawRequest !== undefined || options.rawFrames !== undefined) {
      this.#fast = new FastPath(this.#fastHost(), options);
    }
    this.#tracker = options.tracker;
    this.#tracker?.add(this);
    const hb = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    if (hb > 0) conn.keepAlive(hb, options.liveness ?? 3, this.codec);
    conn.attach({
      onFrames: (frames, buffers) => this.#onFrames(frames, buffers),
      onStreamError: (err) => this.#fatal(err),
      onEnd: () => this.#onEnd(),
      onClose: (reason, err) => this.#onClose(reason, err),
    });
    conn.start();
  }

  /** Whether the connection is closed. */
  get isClosed(): boolean {
    return this.conn.isClosed;
  }

  /** Resolves with the reason once the connection is closed. */
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

  /** Why the peer closed the connection, when it said so just before (e.g. SLOW_CONSUMER). */
  get reported(): DistError | undefined {
    return this.#calls.lastReport;
  }

  /** Told of each late answer: to a call of ours that timed out or was aborted. */
  set onLateAnswer(fn: (() => void) | undefined) {
    this.#calls.onLate = fn;
  }
  /** Told of each answer to no call of ours, with its size (CallTable.onStray); JSON ones undecoded. */
  set onStrayAnswer(fn: ((bytes: number) => void) | undefined) {
    this.#calls.onStray = fn;
    if (fn === undefined || this.codec !== jsonCodec) return;
    (this.#fast ??= new FastPath(this.#fastHost(), {})).scanAnswers();
  }

  /** Calls in flight from this side. */
  get pendingCalls(): number {
    return this.#calls.size;
  }

  /**
   * Stops taking this peer's input from its next frame on (what it sent waits, in order, and
   * reading stops) until as many `holdInput(false)`: backpressure from an owner with all it can take.
   */
  holdInput(hold = true): void {
    if (hold) this.#admission.block();
    else this.#admission.unblock();
  }

  /** Requests from the peer being handled now. */
  get handling(): number {
    return this.#admission.handling;
  }

  /**
   * Calls `method` and resolves with its result.
   * @throws {DistError} the peer's error, TIMEOUT, UNAVAILABLE when the
   * connection closes first, or the abort reason's code (TIMEOUT/UNAVAILABLE).
   */
  call(method: string, params?: unknown, options?: CallOptions): Promise<unknown> {
    return this.#call(method, params, options, false);
  }

  /** Like `call`, but resolves with the result and the `by` of the response. */
  request(method: string, params?: unknown, options?: CallOptions): Promise<Response> {
    return this.#call(method, params, options, true) as Promise<Response>;
  }

  #call(method: string, params: unknown, options: CallOptions | undefined, full: boolean) {
    if (!this.canCall) return Promise.reject(this.#closedError());
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const id = options?.id ?? this.#calls.nextId();
    const msg = options?.idempotent === false
      ? { id, method, params, idem: false }
      : { id, method, params };
    try {
      // Closed by this very send (slow consumer) or before it.
      if (!this.conn.send(this.codec, msg)) return Promise.reject(this.#closedError());
    } catch (err) {
      return Promise.reject(DistError.from(err));
    }
    return this.#calls.wait(id, method, full, options?.timeout ?? this.#timeoutMs, signal);
  }

  #closedError(): DistError {
    const why = this.conn.closeReason ?? "ended by peer";
    return new DistError("UNAVAILABLE", `Connection closed (${why})`);
  }

  /**
   * Byte pass-through: sends the request frame `call` writes under the id this peer picks, and
   * hands the answer to `call.onAnswer` undecoded. JSON connections only.
   * @returns false when nothing was sent (the connection is closed, or the peer has ended its
   * side): `onAnswer` is then never called.
   * @throws {DistError} what `writeRequest` throws (FRAME_TOO_LARGE); nothing is sent.
   */
  callRaw(call: RawCall, timeoutMs: number = this.#timeoutMs): boolean {
    if (this.codec !== jsonCodec) {
      throw new DistError("INTERNAL", "Byte pass-through needs a JSON connection");
    }
    if (!this.canCall) return false;
    return (this.#fast ??= new FastPath(this.#fastHost(), {})).callRaw(call, timeoutMs);
  }

  /**
   * Ends a request taken by `onRawRequest` (whose id is `id`) with the frame
   * `reply` writes; if that throws (say FRAME_TOO_LARGE), with that error.
   */
  answerRaw(id: number | string, reply: RawReply): void {
    try {
      this.#fast!.answerRaw(reply);
    } catch (err) {
      this.#answers.error(id, err);
    }
    this.#admission.handled();
  }

  /** Ends a request taken by `onRawRequest` with a value (or a Reply). */
  answer(id: number | string, value: unknown): void {
    this.#answers.result(id, value);
    this.#admission.handled();
  }

  /** Ends a request taken by `onRawRequest` with an error. */
  answerError(id: number | string | null, err: unknown): void {
    this.#answers.error(id, err);
    this.#admission.handled();
  }

  /** Sends a notification (no answer). @returns false if the connection is closed. */
  notify(method: string, params?: unknown): boolean {
    return this.conn.send(this.codec, params === undefined ? { method } : { method, params });
  }

  /** Closes the connection now; pending calls fail with UNAVAILABLE. */
  close(reason: CloseReason = CloseReason.Local): void {
    this.conn.close(reason);
  }

  /**
   * Tells the peer `err` (an error about no request in particular: its log
   * shows it, its pending calls fail with it), writes what is queued (for
   * at most `timeoutMs`), then closes with `reason`.
   */
  closeWith(reason: CloseReason, err: DistError, timeoutMs?: number): Promise<void> {
    const message = { id: null, error: err.toBody() };
    return this.conn.closeWith(reason, err, { codec: this.codec, message }, timeoutMs);
  }

  /**
   * Resolves when no request from the peer is being handled and output is
   * flushed, or after `timeoutMs`. Used for a graceful stop.
   */
  async idle(timeoutMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<void>((resolve) => timer = setTimeout(resolve, timeoutMs));
    const idle = new Promise<void>((resolve) => this.#admission.whenIdle(resolve));
    await Promise.race([idle.then(() => this.conn.drained(0)), deadline]);
    clearTimeout(timer);
  }

  // ---- incoming ----

  #onFrames(frames: Uint8Array[], buffers?: ArrayBufferLike[]): void {
    if (this.#answers.refusing) return;
    // Behind frames still waiting for room: these wait too, in order.
    if (this.#admission.holding) this.#admission.hold(frames);
    else this.#process(frames, buffers);
  }

  #process(frames: Uint8Array[], buffers?: ArrayBufferLike[]): void {
    if (this.#fast === undefined) this.#dispatch(frames);
    else this.#fast.process(frames, buffers);
  }

  /** Decodes `frames` and handles each message, holding the rest at a request with no room. */
  #dispatch(frames: Uint8Array[]): void {
    const answers = this.#answers;
    if (this.conn.isClosed || answers.refusing) return;
    const messages = this.codec.decodeAll(frames);
    const admission = this.#admission;
    for (let i = 0; i < messages.length && !this.conn.isClosed && !answers.refusing; i++) {
      const m = classify(messages[i], this.#message);
      if (admission.blocked || (m.kind === "request" && !admission.mayStart())) {
        admission.hold(frames.slice(i)); // decoded again when there is room
        return;
      }
      this.#onMessage(m, frames[i].length);
    }
  }

  #onMessage(m: Message, bytes: number): void {
    switch (m.kind) {
      case "request":
        return this.#request(m.id!, m.method, m.params, m.idempotent ? IDEMPOTENT : NOT_IDEMPOTENT);
      case "response":
        if (!this.#calls.settle(m.id as number, m, bytes) && m.problem !== undefined) {
          this.#answers.invalid(null, m.problem);
        }
        return;
      case "notification":
        return this.#notification(m.method, m.params);
      case "report":
        return this.#report(DistError.fromBody(m.error));
      default:
        this.#answers.invalid(m.id, m.problem!);
    }
  }

  /** An error about no request in particular (a bad frame we sent). */
  #report(err: DistError): void {
    this.#calls.reported(err);
    // A peer could send these endlessly: the first few are worth a warning.
    const report = ++this.#peerComplaints <= 3 ? warnPeer : log.debug.bind(log);
    report("Peer {peer} reported: {code}: {message}", {
      peer: this.remote.name,
      code: err.code,
      message: cut(err.message),
    });
  }

  #notification(method: string, params: unknown): void {
    if (method === "ping") return; // heartbeat: receiving it was the point
    try {
      this.#onNotification(method, params, this);
    } catch (err) {
      log.error("Notification {method} failed: {error}", { method, error: cut(String(err)) });
    }
  }

  #request(id: number | string, method: string, params: unknown, meta: RequestMeta): void {
    this.#requestsIn++;
    if (this.#traceRequests) {
      log.trace("Request {id} {method} from {peer}", { id, method, peer: this.remote.name });
    }
    // Counted here, where the answer is sent (no wrapper around the handler).
    let tally: RequestTally | undefined;
    let t0 = -1;
    if (this.#counter !== undefined) {
      if (method !== this.#lastMethod) {
        // A decoded name is a fresh string: the counter's Map lookup hashes it, so once per run.
        this.#lastTally = this.#counter.of(method);
        this.#lastMethod = method;
      }
      tally = this.#lastTally!;
      t0 = tally.start();
    }
    let result: unknown;
    try {
      result = this.#onRequest(method, params, this, meta);
    } catch (err) {
      this.#answers.error(id, err);
      tally?.failed(err, t0);
      return;
    }
    if (result instanceof Promise) {
      this.#admission.started();
      result.then(
        (value) => {
          this.#answers.result(id, value);
          tally?.done(t0);
        },
        (err) => {
          this.#answers.error(id, err);
          tally?.failed(err, t0);
        },
      ).finally(() => this.#admission.handled());
    } else {
      this.#answers.result(id, result);
      tally?.done(t0);
    }
  }

  /**
   * The peer closed its side (EOF). Nothing more can arrive, so calls of ours still waiting for
   * answers fail now; requests of the peer's that are being handled are still answered and flushed,
   * then the connection closes (as an HTTP server answers a half-closed request).
   */
  #onEnd(): void {
    this.#calls.failAll(new DistError("UNAVAILABLE", "Connection closed by peer"));
    this.#admission.whenIdle(() => {
      this.conn.drained(0).then(() => this.conn.close(CloseReason.RemoteClosed));
    });
  }

  /** The byte stream itself is broken (e.g. FRAME_TOO_LARGE): tell the peer and hang up. */
  #fatal(err: DistError): void {
    const frameTooLarge = err.code === "FRAME_TOO_LARGE";
    this.closeWith(frameTooLarge ? CloseReason.FrameTooLarge : CloseReason.ProtocolError, err);
  }

  // ---- closing ----

  #onClose(reason: CloseReason, err?: unknown): void {
    this.#tracker?.delete(this);
    this.#admission.close();
    const detail = err instanceof Error ? `: ${err.message}` : "";
    this.#calls.failAll(new DistError("UNAVAILABLE", `Connection closed (${reason})${detail}`));
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

  /** What the fast path may use of this peer (made once, when it is built). */
  #fastHost(): FastPathHost {
    return {
      peer: this,
      conn: this.conn,
      calls: this.#calls,
      admission: this.#admission,
      answers: this.#answers,
      dispatch: (frames) => this.#dispatch(frames),
      took: () => {
        this.#requestsIn++;
        this.#admission.started();
      },
    };
  }
}

function unknownMethod(method: string): never {
  throw new DistError("UNKNOWN_METHOD", `Unknown method: ${describe(method, 200)}`);
}

function ignore(): void {}
