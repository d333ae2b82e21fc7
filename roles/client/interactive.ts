import { createInterface, type Interface } from "node:readline";
import { DistError } from "../../wire/mod.ts";
import { OPERATION_HELP, parseOperation } from "../ops.ts";
import { exitNow } from "../_role.ts";
import { printableJson, printableText } from "../_printable.ts";
import {
  formatResult,
  inFlight,
  type Link,
  type ModeOptions,
  outcomeJson,
  perform,
} from "./_common.ts";
import { runRandom } from "./random.ts";
import { MAX_LINE_BYTES, type PipeLine, PipeLines } from "./pipe_lines.ts";

const SHELL_HELP = [
  ...OPERATION_HELP,
  "random [N]       N random arithmetic requests (10 without N)",
  "METHOD {JSON}    any method with JSON parameters (e.g. sys.stats)",
  "help             this list",
  "exit             leave (also quit, Ctrl-D, or Ctrl-C at an empty prompt)",
  "Ctrl-C           cancel the running command (twice: leave at once)",
];

/** Requests of a `random` typed without a count. */
const DEFAULT_RANDOM = 10;

/** Lines read from a pipe and not yet run; above it, reading pauses. */
const MAX_QUEUED_LINES = 1000;

/**
 * Lines from readline, one at a time. Reading pauses while many are queued
 * (a pipe can deliver millions), so memory stays bounded.
 */
class LineQueue {
  #rl: Interface;
  #lines: string[] = [];
  #ended = false;
  #paused = false;
  #wake?: () => void;

  constructor(rl: Interface) {
    this.#rl = rl;
    rl.on("line", (line: string) => {
      this.#lines.push(line);
      if (this.#lines.length >= MAX_QUEUED_LINES && !this.#paused) {
        this.#paused = true;
        rl.pause();
      }
      this.#wake?.();
    });
    // The input ended: what was read is still run.
    rl.on("close", () => {
      this.#ended = true;
      this.#wake?.();
    });
  }

  /** The session is over: lines read and not run yet are dropped. */
  end(): void {
    this.#ended = true;
    this.#lines.length = 0;
    this.#wake?.();
  }

  /** The next line, or undefined once ended. */
  async next(): Promise<PipeLine | undefined> {
    while (this.#lines.length === 0 && !this.#ended) {
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = undefined;
    }
    const line = this.#lines.shift();
    if (this.#paused && this.#lines.length < MAX_QUEUED_LINES / 2) {
      this.#paused = false;
      this.#rl.resume();
    }
    return line === undefined ? undefined : { text: line };
  }
}

/**
 * Reads operations line by line: a shell with a prompt when stdin is a
 * terminal (the original lab's client), silently when it is a pipe or a
 * file (one result per line). Blank lines and `# comments` are skipped. A
 * lost connection is dialed again on the next command.
 *
 * In the shell, Ctrl-C cancels the running command (a partial summary for
 * `random`) and returns to the prompt; at an empty prompt it leaves, as
 * Ctrl-D does; a second Ctrl-C while a command is being cancelled exits at
 * once. A stop (`options.signal`: SIGINT/SIGTERM to the process, a closed
 * stdout) ends the session after the running line.
 *
 * Resolves with the number of failed lines.
 */
export async function runInteractive(link: Link, options: ModeOptions): Promise<number> {
  const tty = Deno.stdin.isTerminal();
  // A terminal's lines come through readline (prompt, editing, Ctrl-C); a
  // pipe's through PipeLines, each line bounded (h48 P7).
  const rl = tty
    ? createInterface({
      input: process.stdin,
      output: process.stdout,
      terminal: true,
      prompt: "dist> ",
    })
    : undefined;
  const lines = rl ? new LineQueue(rl) : new PipeLines();
  let running: AbortController | undefined;
  let failures = 0;
  // Only a terminal sends this (raw mode turns Ctrl-C into a key, not a signal).
  rl?.on("SIGINT", () => {
    if (running?.signal.aborted) {
      exitNow(() => inFlight([link.caller]));
    } else if (running !== undefined) {
      running.abort();
    } else if (rl!.line !== "") {
      // Drop what was typed, as a shell does (clearing it redraws the prompt).
      options.out("^C");
      rl!.write(null, { ctrl: true, name: "u" });
      rl!.write(null, { ctrl: true, name: "k" });
    } else {
      options.out("");
      lines.end();
    }
  });
  const stop = () => lines.end();
  options.signal?.addEventListener("abort", stop, { once: true });
  if (rl) {
    options.out(
      `Connected to ${link.caller.remote?.name}. Type "help" for operations, "exit" to leave.`,
    );
    rl.prompt();
  }
  try {
    for (let line = await lines.next(); line !== undefined; line = await lines.next()) {
      if ("tooLong" in line) {
        // Dropped as it streamed: it could never be sent in a frame.
        failures += failLine(
          options,
          "BAD_REQUEST",
          `line ${line.tooLong}: longer than ${MAX_LINE_BYTES >> 20} MiB, skipped`,
        );
        continue;
      }
      const words = line.text.trim().split(/\s+/).filter((w) => w !== "");
      if (words.length > 0 && !words[0].startsWith("#")) {
        if (words[0] === "exit" || words[0] === "quit") break;
        running = new AbortController();
        try {
          failures += await runLine(words, link, { ...options, cancel: running.signal });
        } finally {
          running = undefined;
        }
      }
      if (options.signal?.aborted) break;
      rl?.prompt();
    }
    // Ctrl-D leaves the cursor after the prompt.
    if (tty && !options.signal?.aborted) options.out("");
  } finally {
    options.signal?.removeEventListener("abort", stop);
    rl?.close();
    link.close();
  }
  return failures;
}

/**
 * Prints the client's own error for a line, its controls escaped as a
 * server's are (h48 P4: `add 1 ESC[2J` cleared the terminal): the line is
 * the user's file's, echoed back. Returns 1, a failed line.
 */
function failLine(options: ModeOptions, code: string, message: string): number {
  if (options.json) options.out(printableJson({ ok: false, error: { code, message } }));
  else options.out(`error ${code}: ${printableText(message)}`);
  return 1;
}

/** Runs one line of the shell; resolves with 1 if it failed, else 0. */
async function runLine(words: string[], link: Link, options: ModeOptions): Promise<number> {
  const [cmd, ...rest] = words;
  const fail = (code: string, message: string) => failLine(options, code, message);
  if (cmd === "help") {
    for (const line of SHELL_HELP) options.out(line);
    return 0;
  }
  let random: number | undefined;
  let op;
  if (cmd === "random") {
    random = Number(rest[0] ?? DEFAULT_RANDOM);
    if (!Number.isInteger(random) || random < 1) {
      return fail("BAD_REQUEST", `random takes a positive count, got ${rest[0]}`);
    }
    // A count nobody typed is said, so that a 10 is not a surprise.
    if (rest[0] === undefined && !options.json) {
      options.out(`random: ${DEFAULT_RANDOM} requests (random N sends N)`);
    }
  } else {
    try {
      op = parseOperation(words);
    } catch (err) {
      return fail("BAD_REQUEST", (err as Error).message);
    }
  }
  let peer;
  try {
    peer = await link.get();
  } catch (err) {
    const e = DistError.from(err);
    return fail(e.code, e.message);
  }
  if (random !== undefined) {
    // A cancel stops the batch, with a partial summary.
    const stop = AbortSignal.any([options.cancel!, options.signal].filter((s) => s !== undefined));
    return await runRandom(peer, random, { ...options, signal: stop }) > 0 ? 1 : 0;
  }
  const outcome = await perform(peer, op!, options.timeout, options.cancel);
  if (options.cancel?.aborted) {
    options.out(`cancelled: ${words.join(" ")}`);
    return 0;
  }
  if (options.json) options.out(outcomeJson(outcome));
  else if (outcome.ok) options.out(formatResult(outcome.result));
  else options.out(`error ${outcome.error!.code}: ${printableText(outcome.error!.message)}`);
  return outcome.ok ? 0 : 1;
}
