/**
 * Log lines to stderr that never stop the process. Under `dist up` a role's stderr is a pipe the
 * launcher reads; a launcher paused (Ctrl-Z, SIGSTOP, a debugger) reads nothing, and once 64 KiB
 * were unread the next blocking write froze the whole role: servers stopped answering, brokers
 * stopped routing (hostile47 Q16). There the pipe is made non-blocking (`fcntl O_NONBLOCK`, Linux
 * with `--allow-ffi`): a line that does not fit is dropped and counted, and the next line that
 * fits is preceded by how many were lost. Elsewhere (a terminal, a file, a pipe of the user's own)
 * stderr stays as it was: written synchronously, every line kept.
 */
import { libc } from "../wire/libc.ts";

const encoder = new TextEncoder();
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;

let dropped = 0;
/** A line was cut by a full pipe: the next write ends it first. */
let broken = false;

/**
 * Makes fd 2 non-blocking when this process runs under a launcher (`launcherEnv` set) and stderr
 * is a pipe. Returns whether it did.
 */
export function unblockStderr(launcherEnv: string): boolean {
  try {
    if (Deno.env.get(launcherEnv) === undefined) return false;
    const lib = libc("fcntl");
    if (lib === null || !Deno.statSync("/proc/self/fd/2").isFifo) return false;
    const flags = lib.fcntl(2, F_GETFL, 0);
    if (flags < 0 || lib.fcntl(2, F_SETFL, flags | O_NONBLOCK) !== 0) return false;
    restore = () => {
      restore = undefined;
      lib.fcntl(2, F_SETFL, flags);
    };
    return true;
  } catch {
    return false;
  }
}

let restore: (() => void) | undefined;

/**
 * Makes stderr blocking again (a no-op unless {@link unblockStderr} changed it): for the last
 * lines of a process that is ending, which are worth waiting for the launcher to read (and
 * which `console.error` would otherwise fail to write into a full pipe).
 */
export function blockStderr(): void {
  try {
    restore?.();
  } catch {
    // Nothing more to do: the lines may be lost.
  }
}

/** Writes `line` (ending in a newline) to stderr, or drops and counts it where it would block. */
export function writeStderrLine(line: string): void {
  try {
    if (dropped > 0 || broken) {
      const note = `${broken ? "…\n" : ""}dist: ${dropped} log line(s) dropped: stderr was not ` +
        `read (a paused launcher?)\n`;
      writeAll(encoder.encode(note));
      dropped = 0;
      broken = false;
    }
    writeAll(encoder.encode(line));
  } catch (err) {
    if (err instanceof Deno.errors.WouldBlock) dropped++;
    // Else stderr is gone (closed pipe): nowhere left to report it.
  }
}

function writeAll(bytes: Uint8Array): void {
  let off = 0;
  try {
    while (off < bytes.length) off += Deno.stderr.writeSync(bytes.subarray(off));
  } catch (err) {
    if (off > 0) broken = true;
    throw err;
  }
}
