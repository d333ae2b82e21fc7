/**
 * How this side answers the peer's requests: a result (with `by`), or an
 * error, and what goes out instead when either cannot be encoded, so that a
 * caller always gets an answer that fits, never silence.
 */
import { describe, DistError } from "./errors.ts";
import type { Codec } from "./codec.ts";
import { CloseReason, type FramedConn } from "./conn.ts";
import { cut, log, LogBudget } from "./_log.ts";

/**
 * INTERNAL answers, logged at most 20 a second: a peer can cause one per
 * request (a balancer's backend answering INTERNAL or a code outside the
 * protocol, passed on to a decoded client: hostile32 X8), as the
 * balancer's pass-through already bounds (roles/balancer/log.ts).
 */
const internalLines = new LogBudget("requests failed with INTERNAL");

/**
 * What a request handler returns when the answer carries a `by` other than
 * this peer's own name (a balancer passing through its backend's name).
 */
export class Reply {
  /**
   * A result with its own `by`.
   * @param result the answer's result
   * @param by the answer's `by` (undefined: none)
   */
  constructor(readonly result: unknown, readonly by?: string) {}
}

/** How much garbage a connection is answered (see PeerOptions). */
export interface AnswerLimits {
  /**
   * Most malformed messages answered on one connection; at the limit the
   * connection is closed and nothing more from it is answered (garbage is
   * never amplified beyond this many error answers).
   */
  maxProtocolErrors?: number;
}

/** Writes the answers of one connection. */
export class Answers {
  #conn: FramedConn;
  #codec: Codec;
  #by: string | undefined;
  #protocolErrors = 0;
  #maxProtocolErrors: number;
  #refusing = false;

  constructor(conn: FramedConn, codec: Codec, options: AnswerLimits & { by?: string }) {
    this.#conn = conn;
    this.#codec = codec;
    this.#by = options.by;
    this.#maxProtocolErrors = options.maxProtocolErrors ?? 10;
  }

  /** Set once the protocol-error budget is spent: nothing more from the peer is answered. */
  get refusing(): boolean {
    return this.#refusing;
  }

  /**
   * A message we cannot use: answer with an error. After maxProtocolErrors
   * of them the connection closes and nothing more from it is answered.
   */
  invalid(id: number | string | null, err: DistError): void {
    if (this.#refusing) return;
    this.error(id, err);
    if (++this.#protocolErrors >= this.#maxProtocolErrors) {
      this.#refusing = true;
      const last = `${this.#protocolErrors} malformed messages; the last: ${err.message}`;
      this.#conn.closeWith(CloseReason.ProtocolError, new DistError("BAD_REQUEST", last));
    }
  }

  /** Answers request `id` with `value` (a Reply names its own `by`). */
  result(id: number | string, value: unknown): void {
    let msg: Record<string, unknown>;
    if (value instanceof Reply) {
      msg = value.by === undefined
        ? { id, result: value.result }
        : { id, result: value.result, by: value.by };
    } else {
      msg = this.#by === undefined ? { id, result: value } : { id, result: value, by: this.#by };
    }
    if (msg.result === undefined) msg.result = null;
    try {
      this.#conn.send(this.#codec, msg);
    } catch (err) {
      // The result could not be encoded (too large, or not encodable): the
      // caller gets an error that fits instead of silence.
      const e = DistError.from(err);
      this.error(
        id,
        e.code === "FRAME_TOO_LARGE"
          ? new DistError("FRAME_TOO_LARGE", `Answer too large to send: ${e.message}`)
          : e,
      );
    }
  }

  /** Answers request `id` (null: no request in particular) with `err`; INTERNAL is logged. */
  error(id: number | string | null, err: unknown): void {
    const e = DistError.from(err);
    if (e.code === "INTERNAL") {
      internalLines.error("Request {id} failed: {error}", { id, error: cut(String(err)) });
    }
    const msg: Record<string, unknown> = { id, error: e.toBody() };
    if (this.#by !== undefined) msg.by = this.#by;
    try {
      this.#conn.send(this.#codec, msg);
    } catch (sendErr) {
      // The error itself is too large or not encodable (its data or an echoed
      // value): the caller still gets an answer, with the code alone.
      log.debug("Error reply {id} cut to its code: {error}", { id, error: cut(String(sendErr)) });
      const short = { code: e.code, message: describe(e.message, 200) };
      try {
        this.#conn.send(this.#codec, { id, error: short });
      } catch (lastErr) {
        log.error("Cannot send error reply: {error}", { error: cut(String(lastErr)) });
      }
    }
  }
}
