/**
 * Helpers that run real `dist` processes for scenario tests.
 *
 * By default a process is `deno run -A <repo>/main.ts ...`; when the
 * environment variable `DIST_BIN` is set, that executable is run instead (to
 * test the compiled binary). Paths come from `import.meta.url`, so tests may
 * be run from any working directory.
 *
 * Every process a helper starts has its pipes drained, so a chatty child can
 * never block on a full pipe, and is killed when a wait times out, so a test
 * never hangs on it.
 */
import { fileURLToPath } from "node:url";

/** Absolute path of the repository's main.ts. */
export const MAIN_PATH: string = fileURLToPath(new URL("../../main.ts", import.meta.url));

/** How long {@link startDist} waits for the `Listening on` line by default (ms). */
export const LISTEN_TIMEOUT_MS = 10_000;
/** How long `stop()` waits after SIGTERM before it sends SIGKILL (ms). */
export const STOP_TIMEOUT_MS = 5_000;
/** How long {@link runDist} lets a one-shot command run by default (ms). */
export const RUN_TIMEOUT_MS = 15_000;

/** The line a listening role logs; an IPv6 host is in brackets (`[::1]:5557`). */
const LISTENING = /Listening on (\[[\w:.%]+\]|[\w.-]+):(\d+)/;

/** Most text kept per stream; older text is dropped (a bounded buffer). */
const MAX_KEPT_CHARS = 1 << 20;

/** The executable and arguments that run `dist` with `args`. */
export function distCommand(args: string[]): { exe: string; args: string[] } {
  const bin = Deno.env.get("DIST_BIN");
  if (bin) return { exe: bin, args };
  return { exe: Deno.execPath(), args: ["run", "-A", MAIN_PATH, ...args] };
}

/** Options shared by {@link startDist} and {@link runDist}. */
export interface SpawnOptions {
  /** Extra environment variables (added to the test's own). */
  env?: Record<string, string>;
  /** Working directory of the child (default: the test's). */
  cwd?: string;
  /** Its descriptor limit (`ulimit -n`, soft and hard: Deno raises the soft one to the hard). */
  nofile?: number;
}

function spawn(args: string[], stdin: "piped" | "null", opts: SpawnOptions): Deno.ChildProcess {
  let { exe, args: argv } = distCommand(args);
  if (opts.nofile !== undefined) {
    // exec: the child is dist itself, so signals reach it.
    argv = ["-c", `ulimit -n ${opts.nofile} && exec "$0" "$@"`, exe, ...argv];
    exe = "sh";
  }
  return new Deno.Command(exe, {
    args: argv,
    stdin,
    stdout: "piped",
    stderr: "piped",
    cwd: opts.cwd,
    env: { NO_COLOR: "1", ...opts.env },
  }).spawn();
}

/**
 * Reads a byte stream to its end as text, in the background, keeping at most
 * {@link MAX_KEPT_CHARS}; `onData` is called after every chunk and at the end.
 */
class Drain {
  text = "";
  ended = false;
  onData?: () => void;
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      try {
        for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
          this.text += chunk;
          if (this.text.length > MAX_KEPT_CHARS) this.text = this.text.slice(-MAX_KEPT_CHARS);
          this.onData?.();
        }
      } catch {
        // The pipe broke (the child was killed): what was read is all there is.
      } finally {
        this.ended = true;
        this.onData?.();
      }
    })();
  }
}

/**
 * Starts `dist ...args` without waiting for anything, its output read in the
 * background: for a test that kills it at a moment of its own choosing.
 */
export function spawnDist(
  args: string[],
  opts: SpawnOptions = {},
): { child: Deno.ChildProcess; stderr(): string; read: Promise<void> } {
  const child = spawn(args, "null", opts);
  const err = new Drain(child.stderr);
  const out = new Drain(child.stdout);
  return { child, stderr: () => err.text, read: Promise.all([err.done, out.done]).then(() => {}) };
}

/** A running `dist` process that listens on a port. */
export interface DistProcess {
  /** The port it listens on (as logged). */
  port: number;
  /** `host:port` it listens on, ready for `--connect`. */
  address: string;
  child: Deno.ChildProcess;
  /** Stderr read so far. */
  stderr(): string;
  /** Stdout read so far. */
  stdout(): string;
  /**
   * Sends `signal` (default SIGTERM), waits up to {@link STOP_TIMEOUT_MS} for
   * the process to exit, then SIGKILLs it. Safe to call more than once.
   * `killed` says whether SIGKILL was needed.
   */
  stop(signal?: Deno.Signal): Promise<{ code: number; stderr: string; killed: boolean }>;
}

/** Options of {@link startDist}. */
export interface StartOptions extends SpawnOptions {
  /** How long to wait for the `Listening on` line (ms). */
  timeoutMs?: number;
}

/**
 * Starts `dist ...args` and waits until its stderr says `Listening on
 * HOST:PORT`.
 *
 * @throws {Error} when the line does not come within `timeoutMs` (the child
 *   is killed) or the child exits first; the message includes its stderr.
 */
export async function startDist(args: string[], opts: StartOptions = {}): Promise<DistProcess> {
  const child = spawn(args, "piped", opts);
  const err = new Drain(child.stderr);
  const out = new Drain(child.stdout);
  const timeoutMs = opts.timeoutMs ?? LISTEN_TIMEOUT_MS;

  let stopped: Promise<{ code: number; stderr: string; killed: boolean }> | undefined;
  const stop = (signal: Deno.Signal = "SIGTERM") => {
    stopped ??= (async () => {
      try {
        child.kill(signal);
      } catch {
        // Already exited.
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      let killed = false;
      const status = await Promise.race([
        child.status,
        new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), STOP_TIMEOUT_MS)),
      ]);
      clearTimeout(timer);
      if (status === null) {
        killed = true;
        try {
          child.kill("SIGKILL");
        } catch {
          // Exited just now.
        }
      }
      const { code } = await child.status;
      await Promise.all([err.done, out.done]);
      await closeStdin(child);
      return { code, stderr: err.text, killed };
    })();
    return stopped;
  };

  let match: RegExpMatchArray;
  try {
    match = await new Promise<RegExpMatchArray>((resolve, reject) => {
      const timer = setTimeout(() => {
        err.onData = undefined;
        reject(new Error(`No "Listening on" line within ${timeoutMs} ms`));
      }, timeoutMs);
      err.onData = () => {
        const m = err.text.match(LISTENING);
        if (m !== null || err.ended) {
          clearTimeout(timer);
          err.onData = undefined;
          if (m !== null) resolve(m);
          else reject(new Error(`dist exited before listening`));
        }
      };
      err.onData();
    });
  } catch (e) {
    const { code } = await stop("SIGKILL");
    throw new Error(
      `${(e as Error).message}: dist ${args.join(" ")} (exit code ${code}); stderr:\n${err.text}`,
    );
  }
  const port = Number(match[2]);
  return {
    port,
    address: `${match[1]}:${port}`,
    child,
    stderr: () => err.text,
    stdout: () => out.text,
    stop,
  };
}

async function closeStdin(child: Deno.ChildProcess): Promise<void> {
  if (child.stdin.locked) return;
  try {
    await child.stdin.close();
  } catch {
    // The child is gone and its end of the pipe with it.
  }
}

/** Options of {@link runDist}. */
export interface RunOptions extends SpawnOptions {
  /** Text written to the child's stdin, which is then closed (default: no stdin). */
  stdin?: string;
  /** Kill the child after this long (ms). */
  timeoutMs?: number;
}

/** What a one-shot command did. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The child ran out of time and was killed. */
  timedOut: boolean;
}

/** Runs `dist ...args` to its end (or kills it after `timeoutMs`). */
export async function runDist(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const child = spawn(args, opts.stdin === undefined ? "null" : "piped", opts);
  const out = new Drain(child.stdout);
  const err = new Drain(child.stderr);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // Exited just now.
    }
  }, opts.timeoutMs ?? RUN_TIMEOUT_MS);
  try {
    if (opts.stdin !== undefined) {
      const writer = child.stdin.getWriter();
      try {
        await writer.write(new TextEncoder().encode(opts.stdin));
        await writer.close();
      } catch {
        // The child exited without reading all of its input; its exit code tells.
      }
    }
    const { code } = await child.status;
    await Promise.all([out.done, err.done]);
    return { code, stdout: out.text, stderr: err.text, timedOut };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Ports handed out lie below the kernel's ephemeral range (32768–60999 on
 * Linux): a port the kernel picked (port 0) is one any outgoing connection of
 * a test running beside may take between this check and the caller's bind,
 * which made a binder fail with AddrInUse in CI. Each test process walks the
 * range from its own random start.
 */
const PORT_LOW = 20_000;
const PORT_SPAN = 12_000;
let nextPort = PORT_LOW + Math.floor(Math.random() * PORT_SPAN);

/** A port on `host` where nothing listened a moment ago (undefined when `host` cannot be bound). */
export function freePortOn(host: string): number | undefined {
  for (let tries = 0; tries < 500; tries++) {
    const port = nextPort;
    nextPort = PORT_LOW + (port - PORT_LOW + 1 + Math.floor(Math.random() * 64)) % PORT_SPAN;
    try {
      Deno.listen({ hostname: host, port }).close();
      return port;
    } catch (e) {
      if (!(e instanceof Deno.errors.AddrInUse)) return undefined;
    }
  }
  return undefined;
}

/** A port on 127.0.0.1 where, a moment ago, nothing listened. */
export function freePort(): number {
  const port = freePortOn("127.0.0.1");
  if (port === undefined) throw new Error("no free port on 127.0.0.1 below the ephemeral range");
  return port;
}

/** The non-empty lines of a text. */
export function lines(text: string): string[] {
  return text.split("\n").map((l) => l.trimEnd()).filter((l) => l !== "");
}

/** CPU time (user + system) process `pid` has used so far, in seconds (from /proc, in clock ticks of 10 ms). */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

/**
 * CPU time every thread of process `pid` has run so far, in ms, to the
 * nanosecond (/proc's schedstat): what a few thousand calls of a few µs
 * each cost is under {@link cpuSeconds}' tick of 10 ms.
 */
export function cpuMs(pid: number): number {
  let ns = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/schedstat`).split(" ")[0]);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return ns / 1e6;
}
