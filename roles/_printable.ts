/**
 * What a peer sent, made safe to print: no value, result or message from
 * another process may drive the user's terminal or split into lines.
 */
import { isPrintable, UNPRINTABLE_BEYOND_C0, UNPRINTABLE_CLASS } from "../wire/check.ts";

export { isPrintable };

const UNPRINTABLE_ALL = new RegExp(UNPRINTABLE_CLASS, "g");

const escapeChar = (c: string) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0");

/**
 * JSON text with every character of UNPRINTABLE escaped (JSON.stringify
 * escapes only C0 controls): still the same JSON, and always one line.
 */
export function printableJson(value: unknown): string {
  return printableText(JSON.stringify(value) ?? "null");
}

/** Text with every character of UNPRINTABLE written as `\uXXXX` (a peer's error message, say). */
export function printableText(text: string): string {
  return isPrintable(text) ? text : text.replace(UNPRINTABLE_ALL, escapeChar);
}

/**
 * A log line with the separators, bidi and C1 controls written as `\uXXXX`
 * (the formatter escapes C0 controls in values itself): a name or message a
 * peer chose cannot split a line or reorder what a terminal shows
 * (hostile45a K-A3, hostile45c K-C6: hello names and health-check errors).
 */
export function printableLine(line: string): string {
  return line.replace(UNPRINTABLE_BEYOND_C0, escapeChar);
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
