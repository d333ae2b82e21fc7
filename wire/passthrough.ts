/**
 * Byte pass-through of JSON messages, for forwarding without decoding.
 *
 * A forwarder (the balancer) only needs a message's id, method and a few
 * flags; params, results and errors can go on as the bytes they arrived
 * as. `scanJson` (json_envelope.ts) finds where each top-level member's value
 * sits in a frame's payload without building any value; the writers here
 * build the forwarded frame from those spans. A frame the scanner does not fully
 * understand (escapes in keys, ids or methods, non-ASCII there, duplicate
 * members, ids that are not safe integers or short strings) is left to the
 * ordinary decoder, which gives the precise error.
 *
 * Why spans are safe to splice: every member's value is checked to be
 * valid JSON as the strict decoder wants it (the grammar, escapes, no lone
 * surrogate escapes, well-formed UTF-8, nesting within MAX_DEPTH), without building it, and is
 * copied verbatim; so the forwarded frame decodes at the other end, to the
 * same values. A message that fails any check is not scanned at all: it goes
 * to the ordinary decoder, which answers it as any server would (a request
 * is never forwarded in a form its receiver cannot read and answer).
 */
import { DistError } from "./errors.ts";
import { HEADER_BYTES, type OutBuffer } from "./frame.ts";
import { ascii } from "./json_scan.ts";
import type { Envelope } from "./json_envelope.ts";

const CLOSE_BRACE = 0x7d;

const ID_OPEN = ascii('{"id":');
const METHOD_MEMBER = ascii(',"method":');
const PARAMS_MEMBER = ascii(',"params":');
const IDEM_FALSE = ascii(',"idem":false');
const RESULT_MEMBER = ascii(',"result":');
const ERROR_MEMBER = ascii(',"error":');
const BY_MEMBER = ascii(',"by":');

/** Copies `bytes[from, to)` to the end of `out` (room already reserved). */
function put(out: OutBuffer, bytes: Uint8Array, from = 0, to = bytes.length): void {
  const dst = out.bytes;
  let at = out.length;
  if (to - from > 64) {
    dst.set(bytes.subarray(from, to), at);
    at += to - from;
  } else {
    // Short spans (ids, methods, small params): a loop beats making a view.
    for (let i = from; i < to; i++) dst[at++] = bytes[i];
  }
  out.length = at;
}

function digits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

function putInteger(out: OutBuffer, n: number, width: number): void {
  const b = out.bytes;
  for (let i = out.length + width - 1; i >= out.length; i--) {
    b[i] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
  out.length += width;
}

function tooLarge(len: number, maxFrame: number): DistError {
  return new DistError(
    "FRAME_TOO_LARGE",
    `Message of ${len} bytes exceeds the frame limit of ${maxFrame} bytes`,
  );
}

/** Where a request's method, params and flag sit (an Envelope, or a copy of its spans). */
export interface RequestSpans {
  readonly payload: Uint8Array;
  readonly methodStart: number;
  readonly methodEnd: number;
  /** -1 when the request has no params. */
  readonly paramsStart: number;
  readonly paramsEnd: number;
  readonly idempotent: boolean;
}

/**
 * Appends the frame of `request` (a scanned request) sent again under the
 * positive integer `id`: `{"id":ID,"method":…,"params":…[,"idem":false]}`.
 * @throws {DistError} FRAME_TOO_LARGE above `maxFrame` (nothing appended)
 */
export function writeRequestAs(
  out: OutBuffer,
  request: RequestSpans,
  id: number,
  maxFrame: number,
): void {
  const b = request.payload;
  const width = digits(id);
  const params = request.paramsStart >= 0;
  const len = ID_OPEN.length + width + METHOD_MEMBER.length +
    (request.methodEnd - request.methodStart) +
    (params ? PARAMS_MEMBER.length + request.paramsEnd - request.paramsStart : 0) +
    (request.idempotent ? 0 : IDEM_FALSE.length) + 1;
  if (len > maxFrame) throw tooLarge(len, maxFrame);
  out.reserve(HEADER_BYTES + len);
  out.setHeader(out.length, len);
  out.length += HEADER_BYTES;
  put(out, ID_OPEN);
  putInteger(out, id, width);
  put(out, METHOD_MEMBER);
  put(out, b, request.methodStart, request.methodEnd);
  if (params) {
    put(out, PARAMS_MEMBER);
    put(out, b, request.paramsStart, request.paramsEnd);
  }
  if (!request.idempotent) put(out, IDEM_FALSE);
  out.bytes[out.length++] = CLOSE_BRACE;
}

/** Where a request's id sits: its bytes as the client sent them (an Envelope fits). */
export interface IdSpan {
  readonly payload: Uint8Array;
  readonly idStart: number;
  readonly idEnd: number;
}

/**
 * Appends the frame of `answer` (a scanned response) under the id of
 * `request` as its sender wrote it: `{"id":…,"result":…|"error":…[,"by":…]}`.
 * @throws {DistError} FRAME_TOO_LARGE above `maxFrame` (nothing appended)
 */
export function writeAnswerAs(
  out: OutBuffer,
  answer: Envelope,
  request: IdSpan,
  maxFrame: number,
): void {
  const b = answer.payload;
  const error = answer.errorStart >= 0;
  const vs = error ? answer.errorStart : answer.resultStart;
  const ve = error ? answer.errorEnd : answer.resultEnd;
  const member = error ? ERROR_MEMBER : RESULT_MEMBER;
  const by = answer.byStart >= 0;
  const len = ID_OPEN.length + (request.idEnd - request.idStart) + member.length + (ve - vs) +
    (by ? BY_MEMBER.length + answer.byEnd - answer.byStart : 0) + 1;
  if (len > maxFrame) throw tooLarge(len, maxFrame);
  out.reserve(HEADER_BYTES + len);
  out.setHeader(out.length, len);
  out.length += HEADER_BYTES;
  put(out, ID_OPEN);
  put(out, request.payload, request.idStart, request.idEnd);
  put(out, member);
  put(out, b, vs, ve);
  if (by) {
    put(out, BY_MEMBER);
    put(out, b, answer.byStart, answer.byEnd);
  }
  out.bytes[out.length++] = CLOSE_BRACE;
}
