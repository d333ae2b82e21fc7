/**
 * The envelope of a MessagePack request read as bytes, as json_envelope.ts
 * reads a JSON one: `id`, `method` and `idem` read, the params checked
 * (msgpack_scan.ts) and left where they are, nothing else built. The
 * balancer forwards MessagePack requests with it (hostile34 Z7).
 */
import { MAX_ID_LENGTH, MAX_METHOD_LENGTH } from "./classify.ts";
import {
  asciiAt,
  ID_READ,
  readMsgpackId,
  readStr,
  refuses,
  skipMsgpack,
  skipProblem,
  STR,
  strIs,
  TRUNCATED,
  u32,
} from "./msgpack_scan.ts";

const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
const ID = new TextEncoder().encode("id");
const METHOD = new TextEncoder().encode("method");
const PARAMS = new TextEncoder().encode("params");
const IDEM = new TextEncoder().encode("idem");
const EMPTY = new Uint8Array(0);

/** The envelope of a MessagePack request read by {@link scanMsgpackRequest}; reused, read at once. */
export class MsgpackRequest {
  /** The frame it describes (valid as long as the frame is). */
  payload: Uint8Array = EMPTY;
  id: number | string | undefined;
  method: string | undefined;
  /** The params' bytes in `payload`, [start, end); -1 when there are none. */
  paramsStart = -1;
  paramsEnd = -1;
  /** False only for `idem: false`. */
  idempotent = true;
  /**
   * Set when the frame is a request (a map with `id` and `method`) that was
   * not read: what in it the scanner does not take ("" when the id or the
   * method is the problem, left to the decoder's own message).
   */
  problem = "";
  /** Whether that problem is one the decoder refuses too (invalid MessagePack). */
  invalid = false;
}

/** The last method read: a connection mostly sends one name over and over. */
let lastMethodBytes = EMPTY;
let lastMethod = "";

/** The method at STR (a string of at most MAX_METHOD_LENGTH UTF-16 units), or undefined. */
function methodAt(b: Uint8Array): string | undefined {
  const { start, end } = STR;
  const n = end - start;
  const last = lastMethodBytes;
  if (n === last.length) {
    let i = 0;
    while (i < n && b[start + i] === last[i]) i++;
    if (i === n) return lastMethod;
  }
  // A UTF-8 text of n bytes has at most n UTF-16 units: only a long one is decoded to count.
  const text = asciiAt(b, start, end) ?? utf8.decode(b.subarray(start, end));
  if (text.length > MAX_METHOD_LENGTH) return undefined;
  lastMethodBytes = b.slice(start, end);
  return lastMethod = text;
}

/**
 * Reads any id the decoder takes (a safe integer, a float that is one, a
 * string of at most MAX_ID_LENGTH UTF-16 units) at `i` into ID_READ.
 * @returns its end, or -1 (the decoder then says why)
 */
function readAnyId(b: Uint8Array, i: number): number {
  const end = readMsgpackId(b, i);
  if (end >= 0) return end;
  const c = b[i];
  if (c === 0xcf || c === 0xd3 || c === 0xca || c === 0xcb) {
    const size = c === 0xca ? 4 : 8;
    if (i + 1 + size > b.length) return -1;
    const view = new DataView(b.buffer, b.byteOffset + i + 1, size);
    const v = c === 0xcf
      ? Number(view.getBigUint64(0))
      : c === 0xd3
      ? Number(view.getBigInt64(0))
      : c === 0xca
      ? view.getFloat32(0)
      : view.getFloat64(0);
    // Past 2^53 an integer is not safe, whatever the double it rounds to.
    if (!Number.isSafeInteger(v)) return -1;
    ID_READ.value = v;
    return i + 1 + size;
  }
  const to = readStr(b, i);
  if (to < 0) return -1;
  const text = utf8.decode(b.subarray(STR.start, STR.end));
  if (text.length > MAX_ID_LENGTH) return -1;
  ID_READ.value = text;
  return to;
}

const TWICE = "a member twice";

/**
 * The end of a member's value at `i`, or -1 when the decoder would refuse
 * it; a value it reads as something else (an extension type…) is stepped
 * over all the same, noted in lenientProblem, so the members after it (the
 * id, whatever the order) are still read.
 */
function skipMember(b: Uint8Array, i: number): number {
  const end = skipMsgpack(b, i, 1);
  if (end >= 0 || refuses()) return end;
  const why = skipProblem;
  const lenient = skipMsgpack(b, i, 1, true);
  if (lenient >= 0) memberProblem = why;
  return lenient;
}

/** What the last member skipped held that the decoder reads otherwise (see skipMember), or "". */
let memberProblem = "";

/**
 * Reads a MessagePack request, `{id, method, params?, idem?}` in any order
 * with any other members (checked and skipped as the decoder would read
 * them), into `out`, building nothing but the method's and the id's
 * values. False for anything else: a notification, an answer, a frame
 * that is not a map of string keys (no `problem`), or a request the
 * scanner does not take (`problem` says what; "" when its id or method is
 * not one a request may have, which the decoder says best).
 */
export function scanMsgpackRequest(frame: Uint8Array, out: MsgpackRequest): boolean {
  const b = frame;
  out.payload = b;
  out.id = out.method = undefined;
  out.paramsStart = out.paramsEnd = -1;
  out.idempotent = true;
  out.problem = "";
  out.invalid = false;
  const c = b[0];
  let n: number;
  let i: number;
  if ((c & 0xf0) === 0x80) {
    n = c & 0x0f;
    i = 1;
  } else if (c === 0xde) {
    n = (b[1] << 8) | b[2];
    i = 3;
  } else if (c === 0xdf) {
    n = u32(b, 1);
    i = 5;
  } else return false;
  let idSeen = false;
  let methodSeen = false;
  /** The first member not read: its problem, and whether the decoder refuses it too. */
  let problem = "";
  let invalid = false;
  let k = 0;
  for (; k < n && i < b.length; k++) {
    memberProblem = "";
    i = readStr(b, i);
    if (i < 0) return false; // a key that is not a string: the decoder's to read
    let end: number;
    let twice = false;
    if (strIs(b, ID)) {
      twice = idSeen;
      idSeen = true;
      end = readAnyId(b, i);
      if (end >= 0) out.id = ID_READ.value;
      else out.id = undefined;
    } else if (strIs(b, METHOD)) {
      twice = methodSeen;
      methodSeen = true;
      end = readStr(b, i);
      if (end < 0 || (out.method = methodAt(b)) === undefined) {
        out.method = undefined;
        end = -1;
      }
    } else if (strIs(b, PARAMS)) {
      twice = out.paramsStart >= 0;
      end = skipMember(b, i);
      out.paramsStart = i;
      out.paramsEnd = end;
    } else {
      if (strIs(b, IDEM)) out.idempotent = b[i] !== 0xc2;
      end = skipMember(b, i);
    }
    if (end >= 0 && memberProblem !== "" && problem === "") problem = memberProblem;
    if (twice && problem === "") problem = TWICE;
    if (end >= 0) {
      i = end;
      continue;
    }
    if (out.id === undefined && idSeen || out.method === undefined && methodSeen) {
      // A bad id or method: the decoder says what a request may have.
      problem = "";
      invalid = false;
    } else {
      problem = skipProblem;
      invalid = refuses();
    }
    break;
  }
  if (!idSeen || !methodSeen) return false;
  if (problem === "" && (out.id === undefined || out.method === undefined)) return false;
  if (problem === "" && (k < n || i !== b.length)) {
    problem = k < n ? TRUNCATED : "bytes after the message";
    invalid = true;
  }
  out.problem = problem;
  out.invalid = invalid;
  return problem === "";
}
