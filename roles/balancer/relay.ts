/**
 * Relaying one request to a backend's connection and classifying how it
 * ended, for the dispatcher (forward.ts): an answer (result or error reply)
 * goes back to the client with the backend's `by`; a connection that died
 * with the request on it is "lost" (the dispatcher fails over); no answer
 * within `--timeout` is a TIMEOUT.
 *
 * Two kinds of job share one dispatcher (one queue, one rotation):
 * - a {@link RawJob} came from a JSON client and is never decoded: its
 *   method and params go to a JSON backend as the bytes they arrived as,
 *   and the answer comes back the same way (wire/passthrough.ts); only the
 *   id changes on the way. Sent to a backend of another codec, its params
 *   are decoded once and the answer encoded once.
 * - a {@link DecodedJob} is one the Peer decoded (a MessagePack client, or
 *   a frame the pass-through leaves to the decoder).
 *
 * This is the per-request hot path: a RawJob is one object that is its own
 * RawCall and RawReply, so forwarding allocates no closures.
 */
import {
  DistError,
  type Envelope,
  jsonCodec,
  type OutBuffer,
  type Peer,
  type RawReply,
  Reply,
  type RequestSpans,
  writeAnswerAs,
  writeRequestAs,
} from "../../wire/mod.ts";
import type { Backend, Outcome, Transition } from "./backends.ts";
import type { DispatchHooks, Job } from "./forward.ts";
import type { FairItem, Flow } from "./queue.ts";
import type { ClientShare } from "./shares.ts";
import type { Link } from "./links.ts";
import { cut, foreignErrorLines, log } from "./log.ts";
import { Pressure } from "./pressure.ts";
import {
  keep,
  keptAt,
  plainRequest,
  writePlainAnswer,
  writePlainFrame,
  writePlainRequest,
} from "./raw_frames.ts";
import { type HeldParams, heldParams, holdParams } from "./value_size.ts";
import type { BytesJob } from "./bytes_job.ts";
import { connectionLost, errorKind, ErrorReply, kindOf } from "./answers.ts";
import { type Failure, Verifier } from "./verify.ts";
import { type Trial, Trials } from "./trials.ts";
import { resulted } from "./sleep_check.ts";

/**
 * A request decoded from a client, waiting for its answer: large params are
 * held as bytes from its admission (holdParams), decoded again for each send.
 */
export interface DecodedJob extends Job, HeldParams {
  readonly raw: false;
  method: string;
  /** The client's name, for the request log. */
  client: string;
  /** The client's connection: requests wait in turn by connection. */
  readonly flow: Peer;
  resolve: (reply: Reply) => void;
  reject: (err: DistError) => void;
}

/**
 * A request kept as the client's bytes (a copy of its frame and the spans
 * in it); it is its own RawCall (to the backend) and RawReply (to the client).
 */
export class RawJob implements BytesJob, RequestSpans, RawReply {
  readonly raw = true as const;
  /** The buffer holding a copy of its frame (shared with other requests: see the spans). */
  readonly payload: Uint8Array;
  /** Its frame's size in bytes. */
  readonly size: number;
  readonly method: string;
  /** The client's id, and where its bytes sit in `payload`. */
  readonly id: number | string;
  readonly idStart: number;
  readonly idEnd: number;
  readonly methodStart: number;
  readonly methodEnd: number;
  readonly paramsStart: number;
  readonly paramsEnd: number;
  readonly idempotent: boolean;
  readonly client: Peer;
  /** Its client's connection: requests wait in turn by connection. */
  readonly flow: Peer;
  attempts = 0;
  deadline = 0;
  sentAt = 0;
  takenAt = 0;
  queuedBytes = 0;
  bulk = false;
  bytes = 0;
  backend?: Backend;
  /** The backend connection of the current send. */
  via: Peer | undefined;
  // Set by the dispatcher and the queue; declared so every job has one shape from the start.
  share: ClientShare | undefined = undefined;
  line: Flow<FairItem> | undefined = undefined;
  trial: Trial | undefined = undefined;
  /**
   * Where the bytes after its id start in `payload`, when the frame is
   * `{"id":ID,"method":M[,"params":P]}` exactly (what clients send): the
   * frame to a backend is then `{"id":` and the new id before one copy of
   * them; else -1 (writeRequestAs builds it member by member).
   */
  readonly tailStart: number;
  /**
   * The read's own view of its frame, while the dispatcher takes it (see
   * Relay.forwardRaw; the read buffer is reused after): its first send
   * copies from it, making no view of the slab.
   */
  frame: Uint8Array | undefined = undefined;
  #relay: Relay;
  #answer: Envelope | undefined;

  constructor(relay: Relay, request: Envelope, client: Peer) {
    this.#relay = relay;
    this.client = this.flow = client;
    this.payload = keep(request.payload);
    const at = keptAt();
    this.size = request.payload.length;
    this.method = request.method!;
    this.id = request.id!;
    this.idStart = request.idStart + at;
    this.idEnd = request.idEnd + at;
    this.methodStart = request.methodStart + at;
    this.methodEnd = request.methodEnd + at;
    this.paramsStart = request.paramsStart < 0 ? -1 : request.paramsStart + at;
    this.paramsEnd = request.paramsStart < 0 ? -1 : request.paramsEnd + at;
    this.idempotent = request.idempotent;
    this.tailStart = plainRequest(request) ? this.idEnd : -1;
  }

  writeRequest(out: OutBuffer, id: number, maxFrame: number): void {
    const tail = this.tailStart;
    if (tail >= 0) {
      const frame = this.frame;
      // A plain frame's id starts at 6 in the frame and at idStart in the slab.
      const written = frame !== undefined
        ? writePlainFrame(out, id, frame, tail - this.idStart + 6, maxFrame)
        : writePlainRequest(out, id, this.payload, tail, this.size + this.idStart - 6, maxFrame);
      if (written) return;
    }
    // Else (or too large: then it throws FRAME_TOO_LARGE, having written nothing) member by member.
    writeRequestAs(out, this, id, maxFrame);
  }

  onAnswer(answer: Envelope | DistError): void {
    this.#relay.rawAnswered(this, answer);
  }

  /** Decoded with the strict decoder (the scanner already checked them as it would). */
  decodeParams(): unknown {
    if (this.paramsStart < 0) return undefined;
    return jsonCodec.decode(this.payload.subarray(this.paramsStart, this.paramsEnd));
  }

  /** Passes `answer` (a view valid only now) to the client. */
  reply(answer: Envelope): void {
    this.#answer = answer;
    this.client.answerRaw(this.id, this);
    this.#answer = undefined;
  }

  writeAnswer(out: OutBuffer, maxFrame: number): void {
    const answer = this.#answer!;
    if (!writePlainAnswer(out, answer, this, maxFrame)) writeAnswerAs(out, answer, this, maxFrame);
  }
}

export type ForwardJob = DecodedJob | BytesJob;

export interface RelayOptions {
  /** Longest wait for a backend's answer (`--timeout`), ms. */
  timeoutMs: number;
  /** Told when a send finds a backend's connection gone, or an outcome takes it out. */
  report: (t: Transition | undefined) => void;
  /** Log every request at debug level. */
  logRequests: boolean;
  /** Ends a job with its outcome (the dispatcher's `finish`). */
  finish: (job: ForwardJob, outcome: Outcome) => void;
  /** Sends what waits (the dispatcher's `pump`): a client read its answers, a backend its requests. */
  wake: () => void;
  /** Sends a failed job once more, to another backend (the dispatcher's `replay`; verify.ts). */
  replay?: (job: ForwardJob) => boolean;
  /** Sends a job its untried backend held past its trial's bound to another (the dispatcher's `resend`; trials.ts). */
  resend?: (job: ForwardJob) => boolean;
  /** A client connection's source (verify.ts). */
  sourceOf?: (flow: object) => string | undefined;
}

export { sizeOfValue } from "./value_size.ts";

/**
 * Sends both kinds of job to backends' connections: the dispatcher's hooks.
 * What each end may hold of the other's output: pressure.ts.
 */
export class Relay implements DispatchHooks<ForwardJob> {
  #options: RelayOptions;
  #pressure: Pressure;
  #verify: Verifier;
  #trials: Trials;

  /** Trials held past their bound and sent to another backend (trials.ts). */
  get trialsSentOn(): number {
    return this.#trials.sentOn;
  }

  /** What each end may hold of the other's output (pressure.ts): its stats, new connections. */
  get pressure(): Pressure {
    return this.#pressure;
  }

  constructor(options: RelayOptions) {
    this.#options = options;
    this.#trials = new Trials(options.timeoutMs);
    this.#pressure = new Pressure(options.wake, options.sourceOf);
    const { replay } = options;
    this.#verify = new Verifier({
      timeoutMs: options.timeoutMs,
      report: options.report,
      replay: (job) => replay?.(job as ForwardJob) ?? false,
      sourceOf: options.sourceOf,
    });
  }

  /** Whether `job`'s client owes more unread answers than it may (see Pressure.held). */
  held(job: ForwardJob): boolean {
    return this.#pressure.held(job.flow);
  }

  /**
   * Hands `dispatcher` a RawJob for a request scanned by the pass-through (its
   * bytes are copied; while it takes it, a send copies from the read).
   */
  forwardRaw(request: Envelope, client: Peer, dispatcher: { submit(job: ForwardJob): void }): void {
    const job = new RawJob(this, request, client);
    job.frame = request.payload;
    try {
      dispatcher.submit(job);
    } finally {
      job.frame = undefined;
    }
  }

  send(job: ForwardJob, backend: Backend): boolean {
    const peer = (backend.link as Link | undefined)?.peer;
    if (peer === undefined || !peer.canCall) {
      this.#options.report(backend.onLost("connection closed"));
      return false;
    }
    if (!job.raw) {
      let params: unknown;
      try {
        params = heldParams(job);
      } catch (err) {
        this.#later(job, backend, DistError.from(err));
        return true;
      }
      return this.#sendDecoded(job, params, backend, peer);
    }
    if (peer.codec === jsonCodec) {
      job.via = peer;
      let sent: boolean;
      try {
        sent = peer.callRaw(job, this.#timeoutFor(job, backend));
      } catch (err) {
        // Too large for the backend's frame limit: the request's fault, not the backend's.
        this.#later(job, backend, DistError.from(err));
        return true;
      }
      if (!sent) this.#options.report(backend.onLost("connection closed"));
      else this.#pressure.checkBacklog(backend, peer);
      return sent;
    }
    // A backend of another codec: decode the params once.
    let params: unknown;
    try {
      params = job.decodeParams();
    } catch (err) {
      this.#later(job, backend, DistError.from(err));
      return true;
    }
    return this.#sendDecoded(job, params, backend, peer);
  }

  /**
   * A raw job keeps its frame; a decoded one, its params' size as sent to a
   * JSON backend or as held (holdParams, measured once).
   */
  sizeOf(job: ForwardJob): number {
    return job.raw ? job.size : holdParams(job, job.method);
  }

  abandoned(job: ForwardJob): boolean {
    return (job.flow as Peer | undefined)?.isClosed ?? false;
  }

  report(t: Transition): void {
    this.#options.report(t);
  }

  reject(job: ForwardJob, err: DistError): void {
    if (job.attempts > 1) this.#verify.ended(job);
    if (err.code === "OVERLOADED") this.#pressure.backOff(job.flow);
    if (job.raw) {
      job.client.answerError(job.id, err);
    } else job.reject(err);
  }

  /** The answer to a BytesJob sent with callRaw. */
  rawAnswered(job: BytesJob, answer: Envelope | DistError): void {
    const backend = job.backend!;
    if (answer instanceof DistError) return this.#failed(job, backend, job.via!, answer);
    const error = answer.errorStart >= 0;
    const failure = error ? errorKind(answer) : undefined;
    if (failure === undefined) {
      if (job.attempts > 1) this.#verify.answered(job, backend, !error);
      this.#done(job, backend, "answered", error ? "error" : "ok");
    } else {
      const kind = failure instanceof DistError ? "failed" : failure;
      const detail = kind === "failed" ? "INTERNAL" : kind === "refused" ? kind : "error";
      if (this.#judged(job, backend, kind, detail)) return;
      if (failure instanceof DistError) {
        // The backend's doing, not a failure here: said at most 20 times a
        // second (the client's answer does not log an INTERNAL line each).
        foreignErrorLines.warn("Backend {backend} answered {error}; passed on as INTERNAL", {
          backend: backend.name,
          error: cut(failure.message),
        });
        return job.client.answerRaw(job.id, new ErrorReply(job.id, failure, job.client.codec));
      }
    }
    job.reply(answer);
  }

  /**
   * `job` failed on `backend` as `kind` says: sent to another backend to
   * see (verify.ts), or ended with what it counts as.
   * @returns true when it was sent again (its answer comes from there)
   */
  #judged(job: ForwardJob, backend: Backend, kind: Failure, detail: string): boolean {
    const outcome = this.#verify.failed(job, backend, kind);
    if (outcome === "replayed") {
      if (this.#options.logRequests) this.#log(job, backend, `${detail}, sent to another backend`);
      return true;
    }
    if (outcome === "timeout") this.#options.report(backend.onTimedOut(this.#options.timeoutMs));
    this.#done(job, backend, outcome, detail);
    return false;
  }

  /** `--timeout`, or the bound of a trial (trials.ts: only an untried backend's). */
  #timeoutFor(job: ForwardJob, backend: Backend): number {
    return backend.served > 0 ? this.#options.timeoutMs : this.#trials.timeoutFor(job, backend);
  }

  /** Values in, values out: `Peer.request`. */
  #sendDecoded(job: ForwardJob, params: unknown, backend: Backend, peer: Peer): boolean {
    const answer = peer.request(job.method, params, {
      timeout: this.#timeoutFor(job, backend),
      idempotent: job.idempotent,
    });
    this.#pressure.checkBacklog(backend, peer);
    answer.then(
      (res) => {
        if (job.attempts > 1) this.#verify.answered(job, backend, true);
        this.#done(job, backend, "answered", "ok");
        if (job.raw) {
          job.client.answer(job.id, new Reply(res.result, res.by));
        } else job.resolve(new Reply(res.result, res.by));
      },
      (err) => {
        const e = DistError.from(err);
        if (connectionLost(peer, e) || e.code === "TIMEOUT") {
          return this.#failed(job, backend, peer, e);
        }
        const kind = kindOf(e.code);
        if (kind === undefined) {
          if (job.attempts > 1) this.#verify.answered(job, backend, false);
          this.#done(job, backend, "answered", e.code);
        } else if (this.#judged(job, backend, kind, e.code)) return;
        this.reject(job, e);
      },
    );
    return true;
  }

  /** The end of a call that failed locally (not an error answered by the backend). */
  #failed(job: ForwardJob, backend: Backend, peer: Peer, e: DistError): void {
    if (connectionLost(peer, e)) {
      if (job.attempts > 1) this.#verify.ended(job);
      this.#options.report(backend.onLost(e.message));
      this.#done(job, backend, "lost", "lost");
    } else if (e.code === "TIMEOUT") {
      backend.slow.timedOut(job.method, job.sentAt);
      // Held past its trial's bound: sent again, judged by that answer (trials.ts).
      if (this.#trials.held(job, backend) && this.#options.resend?.(job)) {
        if (this.#options.logRequests) {
          this.#log(job, backend, "trial held, sent to another backend");
        }
        return;
      }
      if (this.#judged(job, backend, "timeout", "timeout")) return;
      this.reject(
        job,
        new DistError(
          "TIMEOUT",
          `Backend ${backend.name} did not answer within ${this.#options.timeoutMs} ms`,
        ),
      );
    } else {
      this.#done(job, backend, "answered", e.code);
      this.reject(job, e);
    }
  }

  /** Ends a job that was counted as sent but is answered here, after this turn. */
  #later(job: ForwardJob, backend: Backend, err: DistError): void {
    queueMicrotask(() => {
      this.#done(job, backend, "answered", err.code);
      this.reject(job, err);
    });
  }

  #done(job: ForwardJob, backend: Backend, outcome: Outcome, detail: string): void {
    if (this.#options.logRequests) this.#log(job, backend, detail);
    if (detail === "ok") resulted(backend, job);
    this.#trials.ended(job, backend, outcome, detail === "ok");
    this.#options.finish(job, outcome === "answered" && detail !== "ok" ? "erred" : outcome);
  }

  #log(job: ForwardJob, backend: Backend, detail: string): void {
    const peer = backend.peerName;
    log.debug("{client} {method} -> {backend}: {outcome} in {ms} ms", {
      client: job.raw ? job.client.remote.name : job.client,
      method: job.method,
      // A server by its address and name; a worker's name is its address here.
      backend: peer !== "" && peer !== backend.name ? `${backend.name} (${peer})` : backend.name,
      outcome: detail,
      ms: Math.round((performance.now() - job.sentAt) * 1000) / 1000,
    });
  }
}
