/**
 * What a backend's answer says about it (relay.ts): a server failure, a
 * refusal, an error that blames the request, or none of these.
 */
import {
  type Codec,
  DistError,
  type Envelope,
  isErrorCode,
  type OutBuffer,
  parseJson,
  type Peer,
  type RawReply,
} from "../../wire/mod.ts";
import type { Failure } from "./verify.ts";

/** An error answered to a raw client as it is, without the INTERNAL log line of `answerError`. */
export class ErrorReply implements RawReply {
  constructor(readonly id: number | string, readonly error: DistError, readonly codec: Codec) {}

  writeAnswer(out: OutBuffer, maxFrame: number): void {
    this.codec.writeFrame(out, { id: this.id, error: this.error.toBody() }, maxFrame);
  }
}

const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * What an error answer passed through as bytes says (checked as a decoded
 * one is, DistError.fromBody). @returns a DistError for a code that is not
 * the protocol's (it becomes INTERNAL with its message cut: a server
 * failure), `"failed"` for the backend's own INTERNAL, `"refused"` for its
 * UNAVAILABLE or OVERLOADED (it could not serve: passed on as it is, judged
 * against the others: success_rate.ts), `"client"` for any other code
 * (the request's fault unless another backend answers it: verify.ts)
 */
export function errorKind(answer: Envelope): DistError | Failure | undefined {
  const span = answer.payload.subarray(answer.errorStart, answer.errorEnd);
  let body: unknown;
  try {
    body = parseJson(utf8.decode(span));
  } catch {
    return new DistError("INTERNAL", "Malformed error from peer");
  }
  const code = (body as { code?: unknown } | null)?.code;
  if (!isErrorCode(code)) return DistError.fromBody(body);
  return kindOf(code);
}

/**
 * What an error the backend answered with `code` says of it (see
 * errorKind). Every code but a failure or a refusal is `"client"`, the
 * request's fault until another backend answers the request with a result:
 * BAD_REQUEST and NOT_FOUND, and also UNKNOWN_METHOD, TIMEOUT (no timeout of
 * ours), UNAUTHORIZED, FRAME_TOO_LARGE and SLOW_CONSUMER (hostile41a W3: a
 * backend answering every request so was never out and failed its share
 * of them for good).
 */
export function kindOf(code: string): Failure | undefined {
  if (code === "INTERNAL") return "failed";
  return code === "UNAVAILABLE" || code === "OVERLOADED" ? "refused" : "client";
}

/** Whether a local call failure means the backend's connection died with the request. */
export function connectionLost(peer: Peer, err: DistError): boolean {
  return err.code === "UNAVAILABLE" && !peer.canCall;
}
