/**
 * The byte-level fast paths of a Peer, behind one object: frames a role
 * takes before decoding (the broker's publishes, a subscriber's
 * deliveries), requests forwarded as bytes (the balancer's pass-through)
 * and answers to calls made as bytes. A Peer without any of them never
 * builds one, and its plain path never consults it.
 */
import type { DistError } from "./errors.ts";
import { jsonCodec } from "./codec.ts";
import type { FramedConn, FrameWriter } from "./conn.ts";
import type { OutBuffer } from "./frame.ts";
import { Envelope, scanJson } from "./json_envelope.ts";
import type { Admission } from "./admission.ts";
import type { CallTable } from "./calls.ts";
import type { Peer } from "./peer.ts";

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
 *
 * A frame that may be a request (`accepts` said "request") is offered only
 * when the peer has room for one more request in flight, with `took`: the
 * handler that takes it calls `took()` first (it then counts as received
 * and being handled) and ends it later with exactly one of the Peer's
 * `answer`, `answerError` or `answerRaw`.
 */
export interface RawFrameHandler {
  /**
   * Whether the fast path takes `frame` (cheap and pure, e.g. a byte
   * prefix): "request" when it may be a request.
   */
  accepts(frame: Uint8Array): boolean | "request";
  /**
   * Takes `frame`; false hands it to the decoder after all. `buffer`, when
   * given, is `frame.buffer` (known to the decoder, see FrameDecoder.frameBuffer).
   */
  handle(frame: Uint8Array, peer: Peer, took?: () => void, buffer?: ArrayBufferLike): boolean;
  /**
   * Whether `handle` checks each request's permission itself (as dispatch
   * would: see `permit`), so a peer whose permissions are checked may take
   * it too; otherwise such a peer's frames are all decoded and dispatched.
   */
  readonly checksAccess?: boolean;
}

/** The fast paths a role gives a Peer (see PeerOptions). */
export interface FastHooks {
  /** Byte pass-through of requests (JSON connections only); see RawRequestHandler. */
  onRawRequest?: RawRequestHandler;
  /** Frames taken before decoding (see {@link RawFrameHandler}). */
  rawFrames?: RawFrameHandler;
}

/** What a Peer lends its fast path. */
export interface FastPathHost {
  readonly peer: Peer;
  readonly conn: FramedConn;
  readonly calls: CallTable;
  readonly admission: Admission;
  /** Whether the peer's input is refused (its protocol-error budget is spent). */
  readonly answers: { readonly refusing: boolean };
  /** Decodes and handles frames as the plain path does. */
  dispatch(frames: Uint8Array[]): void;
  /** A request was taken by `onRawRequest`: it counts as received and being handled. */
  took(): void;
}

export class FastPath {
  #host: FastPathHost;
  #conn: FramedConn;
  #admission: Admission;
  #calls: CallTable;
  #requests: RawRequestHandler | undefined;
  #frames: RawFrameHandler | undefined;
  /** Set once `callRaw` is used: answers are scanned before decoding. */
  #rawCalls = false;
  /** Set by #passThrough: the frames from the first request with no room on. */
  #tail: Uint8Array[] | undefined;
  /** Reused for each frame scanned (handlers use it synchronously only). */
  #envelope: Envelope | undefined;
  /** Reused to hand a raw call or reply to `conn.sendWith` without a closure per message. */
  #writer = new RawWriter();
  #scan: boolean;
  /** Given to a raw frame handler with a request it may take (bound once). */
  readonly #took = (): void => this.#host.took();

  constructor(host: FastPathHost, hooks: FastHooks) {
    this.#host = host;
    this.#conn = host.conn;
    this.#admission = host.admission;
    this.#calls = host.calls;
    this.#requests = hooks.onRawRequest;
    this.#frames = hooks.rawFrames;
    this.#scan = this.#requests !== undefined && host.peer.codec === jsonCodec;
  }

  /**
   * Frames in arrival order: pass-through, raw frames, then decoded messages.
   * `buffers`, when given, holds each frame's ArrayBuffer (for `handle`).
   */
  process(frames: Uint8Array[], buffers?: ArrayBufferLike[]): void {
    if (!this.#scan) return this.#decodeRest(frames, buffers);
    frames = this.#passThrough(frames);
    const tail = this.#tail;
    this.#tail = undefined;
    if (frames.length > 0) this.#decodeRest(frames);
    // Requests with no room yet wait undecoded, behind what was decoded.
    if (tail !== undefined && !this.#conn.isClosed && !this.#host.answers.refusing) {
      this.#admission.hold(tail);
    }
  }

  /** Frames not passed through: raw frames, then decoded messages, in order. */
  #decodeRest(frames: Uint8Array[], buffers?: ArrayBufferLike[]): void {
    const host = this.#host;
    const raw = this.#frames;
    if (raw === undefined) {
      host.dispatch(frames);
      return;
    }
    // Runs of ordinary frames are decoded together; a raw frame waits for
    // the run before it, so every message is handled in arrival order.
    let start = 0;
    for (let i = 0; i < frames.length; i++) {
      const kind = raw.accepts(frames[i]);
      if (kind === false) continue;
      if (start < i) host.dispatch(frames.slice(start, i));
      if (this.#conn.isClosed || host.answers.refusing) return;
      const request = kind === "request";
      const admission = this.#admission;
      if (admission.holding || admission.blocked || (request && !admission.mayStart())) {
        // A request in that run had to wait, the owner holds the input, or this
        // request has no room yet: so does everything after it (decoded when there is room).
        admission.hold(frames.slice(i));
        return;
      }
      const buffer = buffers?.[i];
      const taken = request
        ? raw.handle(frames[i], host.peer, this.#took, buffer)
        : raw.handle(frames[i], host.peer, undefined, buffer);
      if (!taken) host.dispatch([frames[i]]);
      start = i + 1;
    }
    if (start === 0) host.dispatch(frames);
    else if (start < frames.length) host.dispatch(frames.slice(start));
  }

  /** See `Peer.callRaw`. */
  callRaw(call: RawCall, timeoutMs: number): boolean {
    const conn = this.#conn;
    const id = this.#calls.nextId();
    if (!conn.sendWith(this.#writer.request(call, id, conn.maxFrame))) return false;
    this.#calls.waitRaw(id, call, timeoutMs);
    this.scanAnswers();
    return true;
  }

  /**
   * Scans answers before they are decoded from now on (JSON only), as after
   * a first `callRaw`: one that settles no call is then never decoded.
   */
  scanAnswers(): void {
    this.#rawCalls = this.#scan = true;
  }

  /** Queues the frame `reply` writes. @throws what `writeAnswer` throws */
  answerRaw(reply: RawReply): void {
    const conn = this.#conn;
    conn.sendWith(this.#writer.reply(reply, conn.maxFrame));
  }

  /**
   * Byte pass-through: hands requests to `onRawRequest` and answers to raw
   * calls without decoding them. @returns the frames left to decode.
   */
  #passThrough(frames: Uint8Array[]): Uint8Array[] {
    const host = this.#host;
    const env = this.#envelope ??= new Envelope();
    /** Once a frame was taken: the frames before it and those not taken since (made when one is). */
    let rest: Uint8Array[] | undefined;
    let taking = false;
    for (let i = 0; i < frames.length && !this.#conn.isClosed; i++) {
      const frame = frames[i];
      let taken = false;
      if (scanJson(frame, env)) {
        if (env.isRequest) {
          if (!this.#admission.mayStart()) {
            // No room: this frame and all after it wait, undecoded and in
            // order, until there is (see process).
            this.#tail = frames.slice(i);
            return taking ? rest ?? NONE : frames.slice(0, i);
          }
          if (this.#requests !== undefined && this.#requests(host.peer, env)) {
            taken = true;
            host.took();
          }
        } else if (env.isResponse && this.#rawCalls) {
          // One that settles no call is not decoded for nothing (hostile34 Z12).
          const calls = this.#calls;
          taken = calls.settleRaw(env.id as number, env) || calls.stray(env.id, frame.length);
        }
      }
      if (taken) {
        // A read whose frames are all taken (the usual one) makes no array.
        if (!taking && i > 0) rest = frames.slice(0, i);
        taking = true;
      } else if (taking) (rest ??= []).push(frame);
    }
    return taking ? rest ?? NONE : frames;
  }
}

/** No frames (never written to: see #passThrough). */
const NONE: Uint8Array[] = [];

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
