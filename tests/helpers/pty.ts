/**
 * Runs `dist` on a pseudo-terminal, for tests of the interactive shell
 * (Ctrl-C, Ctrl-D, the prompt). Deno has no pty API, so a few lines of
 * Python (`pty.fork`) sit between the test and the child: the test's writes
 * become keystrokes, and what the terminal shows comes back as output.
 */
import { distCommand } from "./dist.ts";

const BRIDGE = `
import fcntl, os, pty, select, struct, sys, termios
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
keys_open = True
while True:
    r, _, _ = select.select([fd] + ([0] if keys_open else []), [], [], 0.1)
    if fd in r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            break
        os.write(1, data)
    if 0 in r:
        data = os.read(0, 4096)
        if data:
            os.write(fd, data)
        else:
            keys_open = False
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
sys.exit(128 - code if code < 0 else code)
`;

/** Text without terminal escape sequences (`\x1b[7G`, `\x1b[0J`). */
function plain(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "");
}

/** Why pty tests cannot run here, or undefined when they can. */
export async function ptyUnavailable(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("python3", { args: ["-c", "import pty, termios"] })
      .output();
    return out.success ? undefined : "python3 has no pty module";
  } catch {
    return "python3 is not installed";
  }
}

/** A `dist` process on a terminal. */
export interface PtySession {
  /** Types `keys` (`"\x03"` is Ctrl-C, `"\r"` is Enter, `"\x04"` is Ctrl-D). */
  type(keys: string): Promise<void>;
  /** Everything the terminal has shown so far. */
  screen(): string;
  /**
   * Waits until what the terminal shows after `from` (a length of
   * {@link screen}), without its escape sequences (cursor moves, line
   * clears), matches `pattern`; throws after `ms` with the screen.
   */
  waitFor(pattern: RegExp, options?: { from?: number; ms?: number }): Promise<void>;
  /** The exit code (128 + N for a signal). */
  status: Promise<number>;
  /** Kills the child and the bridge (safe to call more than once). */
  kill(): Promise<void>;
}

/** Starts `dist ...args` on a pseudo-terminal (see {@link ptyUnavailable}). */
export function startPty(args: string[]): PtySession {
  const { exe, args: argv } = distCommand(args);
  return startPtyProgram(exe, argv);
}

/** How {@link startPtyProgram} runs a program. */
export interface PtyProgramOptions {
  cwd?: string;
  /** Added to the environment (NO_COLOR and TERM are set). */
  env?: Record<string, string>;
}

/**
 * Starts any program on a pseudo-terminal, as its session leader: e.g. an
 * interactive shell (`bash -i`), which then runs what the test types as a
 * job in the foreground, the way a person's terminal does.
 */
export function startPtyProgram(
  exe: string,
  argv: string[],
  options: PtyProgramOptions = {},
): PtySession {
  const child = new Deno.Command("python3", {
    args: ["-c", BRIDGE, exe, ...argv],
    cwd: options.cwd,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", TERM: "xterm", ...options.env },
  }).spawn();
  const writer = child.stdin.getWriter();
  let text = "";
  let onData: (() => void) | undefined;
  const reading = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      onData?.();
    }
  })();
  const drainErr = child.stderr.pipeTo(new WritableStream());
  const status = (async () => {
    const { code } = await child.status;
    await Promise.allSettled([reading, drainErr]);
    return code;
  })();
  return {
    async type(keys) {
      await writer.write(new TextEncoder().encode(keys));
    },
    screen: () => text,
    waitFor(pattern, options = {}) {
      const from = options.from ?? 0;
      const ms = options.ms ?? 10_000;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          onData = undefined;
          reject(
            new Error(`No ${pattern} within ${ms} ms; the terminal shows:\n${text.slice(from)}`),
          );
        }, ms);
        onData = () => {
          if (!pattern.test(plain(text.slice(from)))) return;
          clearTimeout(timer);
          onData = undefined;
          resolve();
        };
        onData();
      });
    },
    status,
    async kill() {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
      await writer.close().catch(() => {});
      await status;
    },
  };
}
