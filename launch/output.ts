/**
 * The launcher's output, as `docker compose up` shows it: every line of
 * every child prefixed with its instance name, names padded to one width,
 * each name in its own colour when stdout is a terminal (and NO_COLOR is
 * not set); the launcher's own lines start with "dist up:" and no bar.
 * Written through an {@link OutputQueue} (output_queue.ts): never blocking
 * the launcher on a slow reader.
 */
import { OutputQueue, type Sink } from "./output_queue.ts";

/** Longest line kept whole; a longer one is cut into pieces of this size. */
export const MAX_LINE = 64 * 1024;

/** Splits text arriving in chunks into lines ("\n" or "\r\n"), bounded by {@link MAX_LINE}. */
export class LineSplitter {
  #rest = "";

  /** The complete lines in `chunk` (with what came before it). */
  push(chunk: string): string[] {
    const parts = (this.#rest + chunk).split("\n");
    this.#rest = parts.pop()!;
    const lines = parts.map((l) => l.endsWith("\r") ? l.slice(0, -1) : l);
    while (this.#rest.length > MAX_LINE) {
      lines.push(this.#rest.slice(0, MAX_LINE));
      this.#rest = this.#rest.slice(MAX_LINE);
    }
    return lines.flatMap((l) => l.length <= MAX_LINE ? [l] : cut(l));
  }

  /** What is left after the last newline (at the end of the stream). */
  end(): string[] {
    const rest = this.#rest;
    this.#rest = "";
    return rest === "" ? [] : [rest];
  }
}

function cut(line: string): string[] {
  const pieces: string[] = [];
  for (let i = 0; i < line.length; i += MAX_LINE) pieces.push(line.slice(i, i + MAX_LINE));
  return pieces;
}

/** Colours for instance names, in order of the plan (bright ones after the plain ones). */
const COLOURS = [36, 33, 32, 35, 34, 31, 96, 93, 92, 95, 94, 91];
const RESET = "\x1b[0m";
const BOLD = "\x1b[1m";

/** Whether the launcher colours its output: stdout is a terminal and NO_COLOR is not set. */
export function wantsColour(): boolean {
  return Deno.stdout.isTerminal() && !Deno.noColor;
}

const encoder = new TextEncoder();

/** Writes text to stdout synchronously; a closed stdout is ignored (supervision goes on). */
export function writeStdoutQuietly(text: string): void {
  const bytes = encoder.encode(text);
  try {
    let off = 0;
    while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
  } catch {
    // Nobody reads our output any more (a closed pipe): keep running the cluster.
  }
}

/** How {@link Output} writes. */
export interface OutputOptions {
  colour?: boolean;
  /**
   * Where text goes, synchronously (default: stdout through an
   * {@link OutputQueue}, which never blocks and drops what a slow reader
   * cannot take).
   */
  write?: (text: string) => void;
  /** Where the queue writes (default: stdout); not with `write`. */
  sink?: Sink;
}

/** The launcher's one output stream: children's lines, prefixed, and its own. */
export class Output {
  #width: number;
  #colours = new Map<string, number>();
  #colour: boolean;
  #write: (source: string | undefined, text: string) => void;
  #queue: OutputQueue | undefined;

  constructor(names: string[], options: OutputOptions = {}) {
    this.#width = names.reduce((w, n) => Math.max(w, n.length), 0);
    names.forEach((n, i) => this.#colours.set(n, COLOURS[i % COLOURS.length]));
    this.#colour = options.colour ?? false;
    const write = options.write;
    if (write !== undefined) this.#write = (_, text) => write(text);
    else {
      const queue = new OutputQueue({
        sink: options.sink,
        dropped: (name, count) =>
          this.#own(
            `${count} line${count === 1 ? "" : "s"} of ${name} dropped: ` +
              "stdout is read slower than they come",
          ),
      });
      this.#queue = queue;
      this.#write = (source, text) => queue.push(source, text);
    }
  }

  /** Resolves once what is queued is written, or after `ms`. */
  flush(ms: number): Promise<void> {
    return this.#queue?.flush(ms) ?? Promise.resolve();
  }

  /** The prefix of an instance's lines: `name   | `. */
  prefix(name: string): string {
    const text = `${name.padEnd(this.#width)} |`;
    if (!this.#colour) return `${text} `;
    return `\x1b[${this.#colours.get(name) ?? 37}m${text}${RESET} `;
  }

  /** One line of an instance's output. */
  line(name: string, text: string): void {
    this.#write(name, `${this.prefix(name)}${text}\n`);
  }

  /** One of the launcher's own lines. */
  say(text: string): void {
    this.#write(undefined, this.#own(text));
  }

  #own(text: string): string {
    return this.#colour ? `${BOLD}dist up:${RESET} ${text}\n` : `dist up: ${text}\n`;
  }
}
