/**
 * The problems of one topology file, collected as the loader finds them so
 * that one run shows them all: each with its line (found by key or section
 * header in the file's text), each listed once, thrown together at the end.
 */
import { LineLocator } from "./_locate.ts";
import { throwProblems, type TopologyProblem, UsageError } from "./errors.ts";
import type { OptionDef } from "./spec.ts";
import { convertValue } from "./values.ts";

/** Returned by a failed conversion, whose problem is already recorded. */
export const INVALID = Symbol("invalid");

/** The problems found in one file so far; see the module comment. */
export class Problems {
  #file: string;
  #where: LineLocator;
  #problems: TopologyProblem[] = [];
  /** `line\0text` of each problem, so that a repeated one is listed once. */
  #seen = new Set<string>();

  /** @param file its name, in every message; @param text its text, for lines */
  constructor(file: string, text: string) {
    this.#file = file;
    this.#where = new LineLocator(text);
  }

  /** How many were found. */
  get count(): number {
    return this.#problems.length;
  }

  /** The line of a top-level key, or of a table's header (first entry of an array of tables). */
  ofTopLevel(key: string): number | undefined {
    return this.#where.key("", key) ?? this.#where.header(key) ?? this.#where.header(`${key}#0`);
  }

  /** The line of `key` in `section`, else of the section's header (or the root key for inline tables). */
  line(section: string, key?: string): number | undefined {
    const line = key === undefined ? undefined : this.#where.key(section, key);
    return line ?? this.#where.header(section) ?? this.#where.key("", section.split("#")[0]);
  }

  /** Records a problem at `line` (once). */
  add(line: number | undefined, text: string): void {
    const key = `${line}\0${text}`;
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    this.#problems.push({ line, text });
  }

  /** Converts a value as `def` says, or records why not and returns {@link INVALID}. */
  convert(label: string, def: OptionDef, raw: unknown, line?: number): unknown {
    try {
      return convertValue(label, def, raw, { names: true });
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
      this.add(line, error.message);
      return INVALID;
    }
  }

  /** Throws every problem found (see {@link throwProblems}). */
  check(): void {
    throwProblems(this.#file, this.#problems);
  }
}
