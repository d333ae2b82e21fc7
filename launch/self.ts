/**
 * Copies of this executable: how `dist up` starts one, and how a copy
 * notices that its launcher is gone.
 *
 * Compiled, `Deno.execPath()` is `dist` itself and a copy is `dist <role>
 * …`. From source it is the `deno` binary, and a copy is `deno run -A
 * <main.ts> <role> …`, with main.ts found next to this folder. Nothing is
 * read from the sources at run time either way.
 */
import { fileURLToPath } from "node:url";

/** Set in a child's environment to the launcher's pid. */
export const LAUNCHER_ENV = "DIST_LAUNCHER_PID";

/** How often a child checks that its launcher is alive (ms). */
const WATCH_MS = 500;
/** How long a child whose launcher is gone may take to stop before it exits anyway (ms). */
const ORPHAN_EXIT_MS = 10_000;

/** The executable and leading arguments that run this `dist`. */
export interface SelfCommand {
  exe: string;
  args: string[];
}

/** Whether this process is the `deno` binary running sources (rather than a compiled `dist`). */
export function runsFromSource(execPath: string = Deno.execPath()): boolean {
  const base = execPath.split(/[\\/]/).pop() ?? "";
  return /^deno(\.exe)?$/i.test(base);
}

/** The command that starts a copy of this `dist`, compiled or from source. */
export function selfCommand(execPath: string = Deno.execPath()): SelfCommand {
  if (!runsFromSource(execPath)) return { exe: execPath, args: [] };
  const main = fileURLToPath(new URL("../main.ts", import.meta.url));
  return { exe: execPath, args: ["run", "-A", main] };
}

/**
 * In a process started by `dist up`: calls `stop` once the launcher is gone
 * (killed without a chance to stop its children), so that no child outlives
 * it; if stopping takes longer than 10 s the process exits. Does nothing in
 * a process not started by `dist up`.
 *
 * @returns a function that ends the watch
 */
export function watchLauncher(stop: () => void): () => void {
  const launcher = Number(Deno.env.get(LAUNCHER_ENV));
  if (!Number.isInteger(launcher) || launcher <= 0) return () => {};
  // Orphans are adopted by init (or a subreaper): the parent pid changes.
  const check = () => {
    if (Deno.ppid === launcher) return;
    clearInterval(timer);
    stop();
    Deno.unrefTimer(setTimeout(() => Deno.exit(1), ORPHAN_EXIT_MS));
  };
  const timer = setInterval(check, WATCH_MS);
  Deno.unrefTimer(timer);
  check();
  return () => clearInterval(timer);
}
