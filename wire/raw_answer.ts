/**
 * The answer to a raw call (wire/calls.ts) that the scanner left to the
 * decoder, encoded again in a form the scanner reads.
 */
import { DistError } from "./errors.ts";
import { Envelope, scanJson } from "./json_envelope.ts";
import { refuseNonFinite } from "./codec_base.ts";
import type { Answer, RawAnswerSink } from "./calls.ts";

/**
 * The answer to a raw call that the scanner left to the decoder: encoded
 * again in a form it reads (only the members a response may carry).
 */
export function rawAnswer(sink: RawAnswerSink, answer: Answer): void {
  const clean: Record<string, unknown> = { id: 0 };
  if (answer.error !== undefined) clean.error = answer.error;
  else clean.result = answer.result ?? null;
  if (answer.by !== undefined) clean.by = answer.by;
  let text: string;
  try {
    // NaN and ±Infinity (a JSON 1e400, decoded) refused as a decoded answer is, not written as
    // null (hostile46a G9: a MessagePack client got nil through the pass-through).
    text = JSON.stringify(clean, refuseNonFinite);
  } catch (err) {
    return sink.onAnswer(DistError.from(err));
  }
  const env = new Envelope();
  if (scanJson(new TextEncoder().encode(text), env)) sink.onAnswer(env);
  else sink.onAnswer(new DistError("INTERNAL", "Malformed response: cannot pass it through"));
}
