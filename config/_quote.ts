/**
 * Text from a file or a flag as an error message shows it: never a control
 * character, a line separator or a bidirectional control raw on the terminal
 * (hostile h48 P17: a TOML key `"\u001b[2J"` cleared the terminal in
 * `unknown key`; P16: a `--host`).
 */

/** Controls JSON.stringify leaves raw: C1, line and paragraph separators, bidi controls. */
const LEFT_RAW = /[\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** `text` as a JSON string with every control escaped (`"\u001b[2J"`, `"a\u202eb"`). */
export function quoted(text: string): string {
  return JSON.stringify(text).replace(
    LEFT_RAW,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** A TOML key as a message shows it: bare when TOML writes it bare, else {@link quoted}. */
export function keyText(key: string): string {
  return /^[A-Za-z0-9_-]+$/.test(key) ? key : quoted(key);
}
