/**
 * What a peer sent, made safe to print: no value, result or message from
 * another process may drive the user's terminal or split into lines.
 */
/**
 * Characters that must never reach a terminal or a line-based reader raw:
 * C0 and C1 controls (newlines, escapes), DEL, the line and paragraph
 * separators, and the bidirectional controls (which reorder what is shown).
 */
const UNPRINTABLE_CLASS =
  "[\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069]";
const UNPRINTABLE = new RegExp(UNPRINTABLE_CLASS);
const UNPRINTABLE_ALL = new RegExp(UNPRINTABLE_CLASS, "g");

const escapeChar = (c: string) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0");

/**
 * JSON text with every character of UNPRINTABLE escaped (JSON.stringify
 * escapes only C0 controls): still the same JSON, and always one line.
 */
export function printableJson(value: unknown): string {
  return printableText(JSON.stringify(value) ?? "null");
}

/** Whether text may be printed as it is (no control, separator or bidi character). */
export function isPrintable(text: string): boolean {
  return !UNPRINTABLE.test(text);
}

/** Text with every character of UNPRINTABLE written as `\uXXXX` (a peer's error message, say). */
export function printableText(text: string): string {
  return UNPRINTABLE.test(text) ? text.replace(UNPRINTABLE_ALL, escapeChar) : text;
}

/**
 * A value as a person reads it, on one line: text bare, anything else as
 * JSON. Text with a control character (a newline, a terminal escape) is
 * shown as a JSON string instead, so that no value can print as several
 * lines or drive the terminal.
 */
export function formatValue(value: unknown): string {
  return typeof value === "string" && isPrintable(value) ? value : printableJson(value);
}
