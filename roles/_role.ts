import type { Options, RoleInfo } from "../config/mod.ts";

/** What a role's `run` gets besides its options. */
export interface RunContext {
  /** Aborted on SIGINT/SIGTERM (or by a test): stop, finish in-flight work, return. */
  signal: AbortSignal;
  /** Positional arguments (the client's operation words). */
  positionals: string[];
  /** Called once the role listens, with its bound address and chosen name. */
  onListening?: (addr: { hostname: string; port: number; name: string }) => void;
  /** Where results for people or pipes go (default: stdout). */
  stdout?: (line: string) => void;
}

/** A role as main.ts sees it: its option spec and how to run it. */
export interface Role extends RoleInfo {
  /** Resolves with the process exit code. */
  run(options: Options, ctx: RunContext): Promise<number>;
}

const encoder = new TextEncoder();

/** Writes one line to stdout synchronously (output is never lost at exit). */
export function writeStdout(line: string): void {
  const bytes = encoder.encode(line + "\n");
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}
