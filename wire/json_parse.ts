/**
 * JSON.parse, worked around a V8 bug (Deno 2.9.6, V8 15.0): once an object
 * with a key holding a backslash (`"\\"`, `"a\\"`) has been parsed, V8's
 * JSON.parse may give a later object the same key for an escaped one of
 * equal length after the same preceding keys (`{"x":1,"\n":0}` is read as
 * `{"x":1,"\\":0}`): V8 matches the key it expects from an earlier object
 * against the key's *raw* text, escapes and all (docs/v8_json_keys.md). So
 * one peer's message changed how another's parsed. Only a key written with
 * an escape can be misread; strings, numbers and keys without escapes are
 * not.
 *
 * {@link parseJson} therefore calls JSON.parse unless some key of the text
 * has an escape (a scan of the text's backslashes only: nothing is spent
 * on a text without one), and parses those rare texts here, building each
 * object by assignment, with its keys and strings decoded by JSON.parse as
 * string literals (exact by construction) and its numbers by `Number`
 * (the same conversion as JSON.parse's for JSON's number syntax). A text
 * this parser does not take goes to JSON.parse, so a malformed text throws
 * JSON.parse's own SyntaxError.
 */

/**
 * `JSON.parse(text)` with every object key as written, whatever was parsed
 * before in this process.
 * @throws {SyntaxError} as JSON.parse does
 */
export function parseJson(text: string): unknown {
  if (!hasEscapedKey(text)) return JSON.parse(text);
  let value: unknown;
  try {
    value = parseByAssignment(text);
  } catch {
    return JSON.parse(text); // malformed (it throws), or a case not taken here
  }
  return value;
}

/**
 * Whether some key of JSON text `text` is written with an escape. Exact for
 * valid JSON; for malformed text either answer is safe (both parsers then
 * throw). Linear: one search for each quote after a backslash, and a look
 * back over the backslashes before it.
 */
export function hasEscapedKey(text: string): boolean {
  // In valid JSON every backslash is in a string, and the first one after a
  // string's end is in a later string: that string's end is its first quote
  // after it not escaped (an odd run of backslashes before it).
  for (let b = text.indexOf("\\"); b !== -1; b = text.indexOf("\\", b)) {
    do {
      b = text.indexOf('"', b + 1);
      if (b === -1) return true;
    } while (escaped(text, b));
    let i = b + 1;
    for (let c = text.charCodeAt(i); isSpace(c); c = text.charCodeAt(++i));
    if (text.charCodeAt(i) === COLON) return true;
  }
  return false;
}

/** Whether the character at `i` follows an odd run of backslashes. */
function escaped(text: string, i: number): boolean {
  let run = 0;
  while (text.charCodeAt(i - 1 - run) === BACKSLASH) run++;
  return run % 2 === 1;
}

const COLON = 0x3a;
const COMMA = 0x2c;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
// JSON's grammar (RFC 8259): each alternative excludes the others, so a
// match takes one pass whatever the text.
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
// A string holds no raw control character (U+0000 to U+001F).
// deno-lint-ignore no-control-regex
const PLAIN_STRING = /"[^"\\\x00-\x1f]*"/y;
// deno-lint-ignore no-control-regex
const STRING = /"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Thrown for any text this parser does not take; parseJson then asks JSON.parse. */
class NotTaken extends Error {}

type Container = Record<string, unknown> | unknown[];

/**
 * The value of JSON text `text`, each object built by assignment. Iterative
 * (an explicit stack), so nesting is bounded by memory as in JSON.parse.
 * @throws {NotTaken} on malformed text
 */
function parseByAssignment(text: string): unknown {
  const stack: Container[] = [];
  const keys: string[] = []; // the pending key of each object on the stack
  let i = 0;
  for (;;) {
    // A value starts at i.
    let value: unknown;
    i = skipSpace(text, i);
    const c = text.charCodeAt(i);
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      const close = c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET;
      i = skipSpace(text, i + 1);
      if (text.charCodeAt(i) === close) {
        value = c === OPEN_BRACE ? {} : [];
        i++;
      } else if (c === OPEN_BRACKET) {
        stack.push([]);
        continue;
      } else {
        stack.push({});
        i = readKey(text, i, keys);
        continue;
      }
    } else if (c === QUOTE) {
      [value, i] = readString(text, i);
    } else if (text.startsWith("true", i)) [value, i] = [true, i + 4];
    else if (text.startsWith("false", i)) [value, i] = [false, i + 5];
    else if (text.startsWith("null", i)) [value, i] = [null, i + 4];
    else {
      NUMBER.lastIndex = i;
      if (!NUMBER.test(text)) throw new NotTaken();
      value = Number(text.slice(i, NUMBER.lastIndex));
      i = NUMBER.lastIndex;
    }
    // A value ends at i: put it in its container, and close those it ends.
    for (;;) {
      const top = stack.at(-1);
      if (top === undefined) {
        if (skipSpace(text, i) !== text.length) throw new NotTaken();
        return value;
      }
      const isArray = Array.isArray(top);
      if (isArray) top.push(value);
      else setMember(top, keys.pop()!, value);
      i = skipSpace(text, i);
      const d = text.charCodeAt(i);
      if (d === COMMA) {
        i = isArray ? i + 1 : readKey(text, skipSpace(text, i + 1), keys);
        break;
      }
      if (d !== (isArray ? CLOSE_BRACKET : CLOSE_BRACE)) throw new NotTaken();
      value = stack.pop();
      i++;
    }
  }
}

/** Reads `"key" :` at i onto `keys`; returns the index after the colon. */
function readKey(text: string, i: number, keys: string[]): number {
  if (text.charCodeAt(i) !== QUOTE) throw new NotTaken();
  const [key, end] = readString(text, i);
  keys.push(key);
  i = skipSpace(text, end);
  if (text.charCodeAt(i) !== COLON) throw new NotTaken();
  return i + 1;
}

/** The string opening at `i`, and the index after its closing quote. */
function readString(text: string, i: number): [string, number] {
  PLAIN_STRING.lastIndex = i;
  if (PLAIN_STRING.test(text)) {
    return [text.slice(i + 1, PLAIN_STRING.lastIndex - 1), PLAIN_STRING.lastIndex];
  }
  STRING.lastIndex = i;
  if (!STRING.test(text)) throw new NotTaken();
  // A string literal alone: V8 decodes those right, and exactly as in JSON.parse.
  return [JSON.parse(text.slice(i, STRING.lastIndex)), STRING.lastIndex];
}

function skipSpace(text: string, i: number): number {
  while (isSpace(text.charCodeAt(i))) i++;
  return i;
}

/** As JSON.parse sets a member: an own data property, `__proto__` too. */
function setMember(object: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") {
    Object.defineProperty(object, key, {
      value,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  } else object[key] = value;
}
