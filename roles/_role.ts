/**
 * What every role shares with main.ts: the `Role` and `RunContext` shapes,
 * and the habits every role should have: output that survives a closed pipe
 * ({@link writeStdout}), the `Listening on` line ({@link announceListening}),
 * waiting for a stop ({@link untilAborted}), and how a process stops
 * ({@link Stopper}: the first SIGINT/SIGTERM stops gracefully, a second one
 * exits at once after saying what it abandons).
 */
import type { Logger } from "@logtape/logtape";
import {
  formatAddress,
  type Options,
  type OptionSpec,
  type RoleInfo,
  type RoleOptions,
} from "../config/mod.ts";
import type { ProcessMetrics } from "../obs/mod.ts";
import { concatBytes } from "../wire/byte_words.ts";

/** What a role's `run` gets besides its options. */
export interface RunContext {
  /**
   * Aborted on SIGINT/SIGTERM, when stdout's reader has gone, or by a test:
   * stop, finish in-flight work (bounded), return.
   */
  signal: AbortSignal;
  /** Positional arguments (the client's operation words). */
  positionals: string[];
  /** Called once the role listens, with its bound address and chosen name. */
  onListening?: (addr: { hostname: string; port: number; name: string }) => void;
  /** Where results for people or pipes go (default: stdout). */
  stdout?: (line: string) => void;
  /**
   * Tells what a forced exit (a second SIGINT/SIGTERM while stopping) would
   * abandon: `describe` returns e.g. "3 requests in flight", or undefined
   * for nothing.
   */
  onForcedExit?: (describe: () => string | undefined) => void;
  /**
   * This process's metrics (`--metrics`): the shell and the roles add
   * theirs; undefined when nobody asked, so nothing is counted.
   */
  metrics?: ProcessMetrics;
}

/** A role as main.ts sees it: its option spec and how to run it. */
export interface Role extends RoleInfo {
  /** Resolves with the process exit code. */
  run(options: Options, ctx: RunContext): Promise<number>;
}

/**
 * A role whose `run` takes its options typed from its own spec (so a
 * misspelt or renamed option is a compile error where it is read).
 */
export function defineRole<const S extends OptionSpec>(
  role: Omit<RoleInfo, "options"> & {
    options: S;
    run(options: RoleOptions<S>, ctx: RunContext): Promise<number>;
  },
): Role {
  // The one cast of typed options: the loader builds a role's values from
  // this very spec (its defaults merged, each value converted by its type),
  // which is what RoleOptions<S> says they are.
  return role as unknown as Role;
}

const encoder = new TextEncoder();
let stdoutGone = false;
let onStdoutGone: (() => void) | undefined;
/** Why stdout could not be written, other than its reader gone (a full disk). */
let stdoutError: Error | undefined;

/**
 * A write to stdout failed: its reader gone (EPIPE: quietly), or anything
 * else (ENOSPC, EIO: h48 P5, a full disk under `dist consumer > log` crashed
 * the consumer): kept for {@link stdoutFailure}. Either way later output is
 * dropped and the role is stopped as on SIGTERM.
 */
function stdoutFailed(err: unknown): void {
  if (!(err instanceof Deno.errors.BrokenPipe)) {
    stdoutError ??= err instanceof Error ? err : new Error(String(err));
  }
  stdoutGone = true;
  onStdoutGone?.();
}

/**
 * Why output was lost, as the one line main.ts prints (exit 1), as GNU
 * tools say `write error: No space left on device`; undefined when nothing
 * was, or only because the reader had gone (`| head`).
 */
export function stdoutFailure(): string | undefined {
  return stdoutError && `cannot write to standard output: ${stdoutError.message}`;
}

/**
 * Writes one line to stdout synchronously (output is never lost at exit).
 *
 * When the reader has gone (`dist client --random 2000 | head -2`), the line
 * is dropped, so are all later ones, and the handler given to
 * {@link onStdoutClosed} runs (main.ts stops the role as on SIGTERM): the
 * process ends quietly, as `cat` does, not with "Broken pipe". Any other
 * failure (a full disk) stops the role too, and main.ts says it in one
 * `dist:` line ({@link stdoutFailure}), exit 1.
 */
export function writeStdout(line: string): void {
  if (stdoutGone) return;
  const bytes = encoder.encode(line + "\n");
  try {
    let off = 0;
    while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
  } catch (err) {
    stdoutFailed(err);
  }
}

/**
 * Lines to stdout written without blocking the event loop, for a role whose
 * output can outrun its reader (a consumer printed to a paused terminal or a
 * slow pipe): heartbeats and the wire keep running meanwhile. Past
 * `highWater` bytes waiting, `onBacklog(true)` says to stop taking input;
 * once under a quarter of it, `onBacklog(false)`. A reader that has gone is
 * handled as by {@link writeStdout}.
 */
export class StdoutLines {
  #queue: Uint8Array[] = [];
  #bytes = 0;
  #writing: Promise<void> | undefined;
  #backlogged = false;
  #highWater: number;
  #onBacklog: (backlogged: boolean) => void;

  constructor(onBacklog: (backlogged: boolean) => void, highWater = 1 << 20) {
    this.#onBacklog = onBacklog;
    this.#highWater = highWater;
  }

  /** Bytes waiting to be written. */
  get pending(): number {
    return this.#bytes;
  }

  /** Whether more than `highWater` bytes wait (input should be paused). */
  get backlogged(): boolean {
    return this.#backlogged;
  }

  /** Queues `text` and a newline. */
  write(text: string): void {
    if (stdoutGone) return;
    const bytes = encoder.encode(text + "\n");
    this.#queue.push(bytes);
    this.#bytes += bytes.length;
    if (!this.#backlogged && this.#bytes > this.#highWater) {
      this.#backlogged = true;
      this.#onBacklog(true);
    }
    this.#writing ??= this.#drain().finally(() => this.#writing = undefined);
  }

  /** Resolves once everything queued has been written (or the reader has gone). */
  async flushed(): Promise<void> {
    while (this.#writing !== undefined) await this.#writing;
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0 && !stdoutGone) {
      const chunk = this.#queue.length === 1 ? this.#queue[0] : concatBytes(this.#queue);
      this.#queue = [];
      try {
        for (let off = 0; off < chunk.length;) off += await Deno.stdout.write(chunk.subarray(off));
      } catch (err) {
        stdoutFailed(err);
      }
      this.#bytes -= chunk.length;
      if (this.#backlogged && this.#bytes <= this.#highWater / 4) {
        this.#backlogged = false;
        this.#onBacklog(false);
      }
    }
    this.#queue = [];
    this.#bytes = 0;
  }
}

/** Runs `handler` once stdout's reader has gone (see {@link writeStdout}). */
export function onStdoutClosed(handler: () => void): void {
  onStdoutGone = handler;
}

/**
 * Logs `Listening on HOST:PORT` at info (the line tests and the launcher wait
 * for; IPv6 in brackets), with `address`, `host` and `port` as properties
 * (so `--json` logs carry them), and calls `ctx.onListening`.
 */
export function announceListening(
  ctx: RunContext,
  log: Logger,
  listening: { addr: { hostname: string; port: number }; name: string },
): void {
  const { hostname: host, port } = listening.addr;
  log.info("Listening on {address}", { address: formatAddress({ host, port }), host, port });
  ctx.onListening?.({ hostname: host, port, name: listening.name });
}

/** `1 request`, `3 requests`: a count with its noun, in the right number. */
export function counted(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}

/** Resolves once `signal` is aborted (at once if it already is). */
export function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

/** Exit code of a process ended by a second interrupt (as a shell reports SIGINT). */
export const FORCED_EXIT_CODE = 130;

/**
 * Exits at once after a second interrupt, saying what is abandoned:
 * `dist: Interrupted again: exiting now, abandoning 3 requests in flight`.
 */
export function exitNow(
  describe: () => string | undefined = () => undefined,
  exit: (code: number) => void = (code) => Deno.exit(code),
): void {
  let what: string | undefined;
  try {
    what = describe();
  } catch {
    // Describing must not stand in the way of exiting.
  }
  const line = `dist: Interrupted again: exiting now${what ? `, abandoning ${what}` : ""}\n`;
  try {
    Deno.stderr.writeSync(encoder.encode(line));
  } catch {
    // stderr is gone too.
  }
  exit(FORCED_EXIT_CODE);
}

/**
 * How a process stops. The first {@link stop} (SIGINT, SIGTERM, a closed
 * stdout) aborts {@link signal}: the role stops accepting, finishes what is
 * in flight (bounded) and returns. A second SIGINT/SIGTERM does not wait:
 * it prints `dist: Interrupted again: exiting now, abandoning 3 requests in
 * flight` and exits with {@link FORCED_EXIT_CODE}, as `docker compose` does.
 */
export class Stopper {
  #abort = new AbortController();
  #describe: () => string | undefined = () => undefined;
  #exit: (code: number) => void;

  /** @param exit how to exit at once (a test passes its own) */
  constructor(exit: (code: number) => void = (code) => Deno.exit(code)) {
    this.#exit = exit;
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Sets what a forced exit would abandon (see {@link RunContext.onForcedExit}). */
  describeAbandoned(describe: () => string | undefined): void {
    this.#describe = describe;
  }

  /** Stops gracefully (the first time; later calls do nothing). */
  stop(): void {
    this.#abort.abort();
  }

  /** The first interrupt stops gracefully; the next one exits at once. */
  interrupt(): void {
    if (!this.#abort.signal.aborted) return this.stop();
    exitNow(this.#describe, this.#exit);
  }

  /** Listens for SIGINT and SIGTERM; returns the function that stops listening. */
  listen(): () => void {
    const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
    const onSignal = () => this.interrupt();
    for (const s of signals) Deno.addSignalListener(s, onSignal);
    return () => {
      for (const s of signals) Deno.removeSignalListener(s, onSignal);
    };
  }
}
