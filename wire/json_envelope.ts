/**
 * The envelope of a JSON message read as bytes, for byte pass-through (see
 * passthrough.ts): where each top-level member sits in the payload, every
 * value checked by the value scanner of json_scan.ts, nothing built.
 */
import {
  ascii,
  BACKSLASH,
  CLOSE_BRACE,
  COLON,
  COMMA,
  equals,
  OPEN_BRACE,
  PLAIN,
  plainInteger,
  plainString,
  QUOTE,
  skipSpace,
  skipString,
  skipValue,
} from "./json_scan.ts";

const EMPTY = new Uint8Array(0);

/**
 * The top-level members of one JSON message, as byte spans of `payload`
 * (`[start, end)`, -1 when absent; string spans include their quotes).
 * Valid only as long as `payload` is (a frame is a view of the read buffer).
 */
export class Envelope {
  payload: Uint8Array = EMPTY;
  /** A request's or a response's id, when it is a safe integer or a plain string. */
  id: number | string | undefined;
  idStart = -1;
  idEnd = -1;
  method: string | undefined;
  methodStart = -1;
  methodEnd = -1;
  paramsStart = -1;
  paramsEnd = -1;
  resultStart = -1;
  resultEnd = -1;
  errorStart = -1;
  errorEnd = -1;
  /** A string `by` (a span of a JSON string), else -1. */
  byStart = -1;
  byEnd = -1;
  /** False only for a literal `"idem": false`. */
  idempotent = true;

  /** A request: a method and an id. */
  get isRequest(): boolean {
    return this.method !== undefined && this.id !== undefined;
  }

  /** A response to one of our calls: a numeric id, no method, a result or an error. */
  get isResponse(): boolean {
    return this.method === undefined && typeof this.id === "number" &&
      (this.resultStart >= 0 || this.errorStart >= 0);
  }

  /** Forgets the last scan; the next one describes `payload`. */
  reset(payload: Uint8Array): void {
    this.payload = payload;
    this.id = this.method = undefined;
    this.idStart =
      this.idEnd =
      this.methodStart =
      this.methodEnd =
        -1;
    this.paramsStart =
      this.paramsEnd =
      this.resultStart =
      this.resultEnd =
        -1;
    this.errorStart =
      this.errorEnd =
      this.byStart =
      this.byEnd =
        -1;
    this.idempotent = true;
  }
}

/** Which member a key names. */
enum Key {
  Other,
  Id,
  Method,
  Params,
  Result,
  Error,
  By,
  Idem,
}

function keyOf(b: Uint8Array, s: number, e: number): Key {
  switch (e - s) {
    case 2:
      if (b[s] === 0x69 && b[s + 1] === 0x64) return Key.Id; // id
      if (b[s] === 0x62 && b[s + 1] === 0x79) return Key.By; // by
      return Key.Other;
    case 4:
      return b[s] === 0x69 && b[s + 1] === 0x64 && b[s + 2] === 0x65 && b[s + 3] === 0x6d
        ? Key.Idem
        : Key.Other;
    case 5:
      return equals(b, s, ERROR_KEY) ? Key.Error : Key.Other;
    case 6:
      if (equals(b, s, METHOD_KEY)) return Key.Method;
      if (equals(b, s, PARAMS_KEY)) return Key.Params;
      if (equals(b, s, RESULT_KEY)) return Key.Result;
      return Key.Other;
  }
  return Key.Other;
}

const ERROR_KEY = ascii("error");
const METHOD_KEY = ascii("method");
const PARAMS_KEY = ascii("params");
const RESULT_KEY = ascii("result");
const FALSE = ascii("false");

/** The last method read (its bytes, quotes included, and its text): see methodAt. */
let lastMethodBytes = EMPTY;
let lastMethod: string | undefined;

/**
 * plainString for a method: a connection mostly sends one name over and
 * over, so the last one's text is kept and given again when the bytes are
 * the same (a compare of a few bytes, against building the string: about
 * 20 against 70-100 ns in process).
 */
function methodAt(b: Uint8Array, start: number, end: number): string | undefined {
  const n = end - start;
  const last = lastMethodBytes;
  if (n === last.length) {
    let i = 0;
    while (i < n && b[start + i] === last[i]) i++;
    if (i === n) return lastMethod;
  }
  const text = plainString(b, start, end);
  if (text !== undefined) {
    lastMethodBytes = b.slice(start, end);
    lastMethod = text;
  }
  return text;
}

/**
 * Scans a JSON payload that is one object, filling `env` with the spans of
 * its top-level members.
 * @returns false when the payload is not something the scanner reads
 * itself (then decode it the ordinary way)
 */
export function scanJson(payload: Uint8Array, env: Envelope): boolean {
  // Most frames are laid out as clients and servers write them: read in
  // place, else member by member (which then gives the same answer).
  return scanPlain(payload, env) || scanMembers(payload, env);
}

/**
 * scanJson member by member: any order and spacing. Exported for the test
 * that holds scanPlain to it.
 */
export function scanMembers(payload: Uint8Array, env: Envelope): boolean {
  env.reset(payload);
  const b = payload;
  let i = skipSpace(b, 0);
  if (b[i] !== OPEN_BRACE) return false;
  i = skipSpace(b, i + 1);
  while (true) {
    if (b[i] !== QUOTE) return false;
    let k = i + 1;
    while (k < b.length && b[k] !== QUOTE) {
      // Keys the scanner reads itself are plain printable ASCII.
      if (b[k] === BACKSLASH || b[k] < 0x20 || b[k] >= 0x80) return false;
      k++;
    }
    if (k >= b.length) return false;
    const key = keyOf(b, i + 1, k);
    i = skipSpace(b, k + 1);
    if (b[i] !== COLON) return false;
    const start = skipSpace(b, i + 1);
    // Members sit inside the message object, at depth 1.
    const end = skipValue(b, start, 1);
    if (end < 0) return false;
    if (!take(env, key, start, end)) return false;
    i = skipSpace(b, end);
    if (b[i] === COMMA) {
      i = skipSpace(b, i + 1);
      continue;
    }
    return b[i] === CLOSE_BRACE && skipSpace(b, i + 1) === b.length;
  }
}

const METHOD_MEMBER = ascii(',"method":');
const PARAMS_MEMBER = ascii(',"params":');
const RESULT_MEMBER = ascii(',"result":');
const ERROR_MEMBER = ascii(',"error":');
const BY_MEMBER = ascii(',"by":');
/** What tells the members after the id apart: the byte after `,"`. */
const M = 0x6d, R = 0x72, E = 0x65;

/**
 * scanJson for the layouts clients and servers write (what JSON.stringify
 * writes for these objects): `{"id":ID,"method":M[,"params":P]}` and
 * `{"id":ID,"result":R|"error":E[,"by":B]}`, with a plain integer or string
 * id and a plain method. Each key is compared in place and each value
 * scanned once, with the checks the member-by-member scan makes (so the
 * spans are those it would find); false for anything else, which
 * scanMembers then reads (the balancer's echo request: 152 → 98 ns, its
 * answer 146 → 93 ns, in process, CPU time, alternated with the walk alone).
 */
function scanPlain(b: Uint8Array, env: Envelope): boolean {
  const n = b.length;
  if (
    n < 12 || b[0] !== OPEN_BRACE || b[1] !== QUOTE || b[2] !== 0x69 || b[3] !== 0x64 ||
    b[4] !== QUOTE || b[5] !== COLON
  ) return false;
  // The id: a plain string or integer (a byte past the end reads undefined: no match).
  let i = 6;
  let id: number | string | undefined;
  if (b[6] === QUOTE) {
    i = 7;
    while (PLAIN[b[i]] === 1) i++;
    if (b[i++] !== QUOTE) return false;
    id = plainString(b, 6, i);
  } else {
    if (b[6] === 0x2d) i++;
    while (b[i] >= 0x30 && b[i] <= 0x39) i++;
    id = plainInteger(b, 6, i);
  }
  if (id === undefined || b[i] !== COMMA || b[i + 1] !== QUOTE) return false;
  const idEnd = i;
  const next = b[i + 2];
  let methodStart = -1, methodEnd = -1, method: string | undefined;
  let paramsStart = -1, paramsEnd = -1, resultStart = -1, resultEnd = -1;
  let errorStart = -1, errorEnd = -1, byStart = -1, byEnd = -1;
  if (next === M) {
    if (!equals(b, i, METHOD_MEMBER) || b[i += METHOD_MEMBER.length] !== QUOTE) return false;
    methodStart = i++;
    while (PLAIN[b[i]] === 1) i++;
    if (b[i++] !== QUOTE || (method = methodAt(b, methodStart, i)) === undefined) return false;
    methodEnd = i;
    if (i !== n - 1) {
      if (!equals(b, i, PARAMS_MEMBER)) return false;
      paramsStart = i + PARAMS_MEMBER.length;
      if ((i = paramsEnd = skipValue(b, paramsStart, 1)) < 0) return false;
    }
  } else {
    const result = next === R;
    if (result ? !equals(b, i, RESULT_MEMBER) : next !== E || !equals(b, i, ERROR_MEMBER)) {
      return false;
    }
    const start = i + (result ? RESULT_MEMBER.length : ERROR_MEMBER.length);
    if ((i = skipValue(b, start, 1)) < 0) return false;
    if (result) {
      resultStart = start;
      resultEnd = i;
    } else {
      errorStart = start;
      errorEnd = i;
    }
    if (i !== n - 1) {
      if (!equals(b, i, BY_MEMBER) || b[i + BY_MEMBER.length] !== QUOTE) return false;
      byStart = i + BY_MEMBER.length;
      if ((i = byEnd = skipString(b, byStart)) < 0) return false;
    }
  }
  if (i !== n - 1 || b[i] !== CLOSE_BRACE) return false;
  env.payload = b;
  env.id = id;
  env.idStart = 6;
  env.idEnd = idEnd;
  env.method = method;
  env.methodStart = methodStart;
  env.methodEnd = methodEnd;
  env.paramsStart = paramsStart;
  env.paramsEnd = paramsEnd;
  env.resultStart = resultStart;
  env.resultEnd = resultEnd;
  env.errorStart = errorStart;
  env.errorEnd = errorEnd;
  env.byStart = byStart;
  env.byEnd = byEnd;
  env.idempotent = true;
  return true;
}

/** Records one member; false on a duplicate or an id/method the scanner leaves to the decoder. */
function take(env: Envelope, key: Key, start: number, end: number): boolean {
  const b = env.payload;
  switch (key) {
    case Key.Id:
      if (env.idStart >= 0) return false;
      env.id = b[start] === QUOTE ? plainString(b, start, end) : plainInteger(b, start, end);
      if (env.id === undefined) return false;
      env.idStart = start;
      env.idEnd = end;
      return true;
    case Key.Method:
      if (env.methodStart >= 0) return false;
      env.method = methodAt(b, start, end);
      env.methodStart = start;
      env.methodEnd = end;
      return env.method !== undefined;
    case Key.Params:
      if (env.paramsStart >= 0) return false;
      env.paramsStart = start;
      env.paramsEnd = end;
      return true;
    case Key.Result:
      if (env.resultStart >= 0) return false;
      env.resultStart = start;
      env.resultEnd = end;
      return true;
    case Key.Error:
      if (env.errorStart >= 0) return false;
      env.errorStart = start;
      env.errorEnd = end;
      return true;
    case Key.By:
      if (env.byStart >= 0 || (env.byEnd === -2)) return false;
      if (b[start] === QUOTE) {
        env.byStart = start;
        env.byEnd = end;
      } else env.byEnd = -2; // seen, not a string: ignored as the decoder ignores it
      return true;
    case Key.Idem:
      env.idempotent = !(end - start === 5 && equals(b, start, FALSE));
      return true;
    default:
      return true;
  }
}
