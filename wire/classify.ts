/**
 * What one decoded message is, by the rules of DESIGN.md's wire protocol:
 * a request, a notification, a response, a report (an error about no
 * request in particular) or something invalid, with the error to answer.
 * Pure: no socket, no state; the Peer acts on the verdict.
 */
import { DistError } from "./errors.ts";
import { RefusedMessage } from "./codec.ts";

/** Longest request id (a string's length): longer ones are a BAD_REQUEST. */
export const MAX_ID_LENGTH = 256;
/** Longest method name: longer ones are a BAD_REQUEST. */
export const MAX_METHOD_LENGTH = 256;

export type Kind = "request" | "notification" | "response" | "report" | "invalid";

/**
 * A classified message. One instance is reused per connection (messages are
 * classified one at a time): read it before classifying the next.
 */
export class Message {
  kind: Kind = "invalid";
  /** A request's id, a response's, or the id an invalid message is answered by (null: none). */
  id: number | string | null = null;
  method = "";
  params: unknown = undefined;
  /** False only for a request marked `"idem": false`. */
  idempotent = true;
  /** A response's result (when it has no error). */
  result: unknown = undefined;
  /** A response's or a report's error body (as sent: DistError.fromBody reads it). */
  error: unknown = undefined;
  /** A response's `by`, when it is a string. */
  by: string | undefined = undefined;
  /**
   * For "invalid": what to answer. For "response": what to answer when no
   * call awaits this id (undefined: ignore it, a late answer).
   */
  problem: DistError | undefined = undefined;
}

/** A usable request id: a safe integer or a string of at most MAX_ID_LENGTH. */
export function isValidId(id: unknown): id is number | string {
  return typeof id === "string" ? id.length <= MAX_ID_LENGTH : Number.isSafeInteger(id);
}

const BAD_ID = `A request id must be a safe integer or a string of at most ${MAX_ID_LENGTH} chars`;
const BAD_METHOD = `A method must be a string of at most ${MAX_METHOD_LENGTH} chars`;
const NO_METHOD_NO_ID = "A message needs a method (request) or an id (response)";

/**
 * Classifies `msg`, a value from `Codec.decodeAll` (a DistError where the
 * frame could not be decoded), into `out`.
 */
export function classify(msg: unknown, out: Message = new Message()): Message {
  out.method = "";
  out.params =
    out.result =
    out.error =
    out.by =
    out.problem =
      undefined;
  out.idempotent = true;
  out.id = null;
  if (msg instanceof DistError) return refused(msg, out);
  if (msg === null || typeof msg !== "object" || Array.isArray(msg)) {
    return invalid(out, null, new DistError("BAD_REQUEST", "A message must be an object"));
  }
  const m = msg as Record<string, unknown>;
  const id = m.id;
  // A message with an `id` member is a request or a response, whatever its
  // value: `"id": null` is not a notification.
  const validId = isValidId(id);
  if (m.method !== undefined) {
    if (!validId && Object.hasOwn(m, "id")) {
      return invalid(out, null, new DistError("BAD_REQUEST", BAD_ID));
    }
    if (typeof m.method !== "string" || m.method.length > MAX_METHOD_LENGTH) {
      return invalid(out, validId ? id : null, new DistError("BAD_REQUEST", BAD_METHOD));
    }
    out.method = m.method;
    out.params = m.params;
    if (!validId) {
      out.kind = "notification";
      return out;
    }
    out.kind = "request";
    out.id = id;
    out.idempotent = m.idem !== false;
    return out;
  }
  if (typeof id === "number") {
    out.kind = "response";
    out.id = id;
    if ("result" in m || "error" in m) {
      out.result = m.result;
      out.error = m.error;
      out.by = typeof m.by === "string" ? m.by : undefined;
    } else {
      // An answer with neither result nor error: never a silent wrong answer.
      out.error = { code: "INTERNAL", message: "Malformed response: no result and no error" };
      out.problem = new DistError("BAD_REQUEST", NO_METHOD_NO_ID);
    }
    return out;
  }
  if (m.error !== undefined && (id === null || id === undefined)) {
    out.kind = "report";
    out.error = m.error;
    return out;
  }
  return invalid(out, null, new DistError("BAD_REQUEST", NO_METHOD_NO_ID));
}

/** A frame the codec refused (unreadable, too deep, a lone surrogate…). */
function refused(err: DistError, out: Message): Message {
  if (!(err instanceof RefusedMessage)) return invalid(out, null, err);
  const id = err.id;
  if (err.isRequest) return invalid(out, isValidId(id) ? id : null, err); // answered by its id
  if (typeof id !== "number") return invalid(out, null, err);
  // An answer we read but refuse: its call fails now, not at its timeout.
  out.kind = "response";
  out.id = id;
  out.error = { code: "INTERNAL", message: `Unreadable answer: ${err.message}` };
  return out;
}

function invalid(out: Message, id: number | string | null, problem: DistError): Message {
  out.kind = "invalid";
  out.id = id;
  out.problem = problem;
  return out;
}
