/**
 * Helpers for scenario tests of `dist up`: a topology in a temporary file,
 * a launcher whose output is read as it comes, and checks that no process
 * it started is left. Every wait is bounded; `stop()` always ends the
 * launcher and then SIGKILLs any child it reported that is still alive.
 */
import assert from "node:assert/strict";
import { DEFAULT_TOPOLOGY } from "../../config/mod.ts";
import { distCommand } from "./dist.ts";
import { sleep } from "./raw.ts";

/** How long {@link UpProcess.waitFor} waits by default (ms). */
export const WAIT_MS = 20_000;

/** Writes `text` to a fresh `.toml` file and returns its path. */
export async function topologyFile(text: string): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "dist-up-test-", suffix: ".toml" });
  await Deno.writeTextFile(path, text);
  return path;
}

/** Whether process `pid` still runs (a zombie does not). */
export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return false;
  }
}

/** Waits until none of `pids` runs; throws naming the ones left after `timeoutMs`. */
export async function assertGone(pids: number[], timeoutMs = 5000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (pids.some(alive)) {
    if (performance.now() > end) {
      throw new Error(`Processes still running: ${pids.filter(alive).join(", ")}`);
    }
    await sleep(20);
  }
}

/** The result of a launcher that has exited. */
export interface UpResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A running `dist up`. */
export interface UpProcess {
  child: Deno.ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Pids of every child it reported starting ("started, pid N", "restarted …, pid N"). */
  pids(): number[];
  /** Resolves with the first match of `pattern` in stdout (read so far or to come). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Waits for the launcher to exit by itself (SIGKILLed after `timeoutMs`). */
  exited(timeoutMs?: number): Promise<UpResult>;
  /** SIGTERM (or `signal`), then SIGKILL after 10 s; kills children left over. */
  stop(signal?: Deno.Signal): Promise<UpResult>;
}

/** How {@link startUp} runs `dist up`. */
export interface StartUpOptions {
  env?: Record<string, string>;
  /** A compiled `dist` to run (default: as tests/helpers/dist.ts runs dist). */
  bin?: string;
  /** Its working directory (default: the test's). */
  cwd?: string;
}

/** Starts `dist up …args` (with NO_COLOR) and reads its output as it comes. */
export function startUp(args: string[], options: StartUpOptions = {}): UpProcess {
  const { exe, args: argv } = options.bin
    ? { exe: options.bin, args: ["up", ...args] }
    : distCommand(["up", ...args]);
  const child = new Deno.Command(exe, {
    args: argv,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    cwd: options.cwd,
    env: { NO_COLOR: "1", ...options.env },
  }).spawn();
  let out = "";
  let err = "";
  const listeners = new Set<() => void>();
  const read = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
    try {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        add(chunk);
        for (const l of listeners) l();
      }
    } catch {
      // Broken pipe: what was read is all there is.
    }
  };
  const io = Promise.all([
    read(child.stdout, (s) => out += s),
    read(child.stderr, (s) => err += s),
  ]);
  let ended = false;
  const status = child.status.then(async (s) => {
    await io;
    ended = true;
    for (const l of listeners) l();
    return s;
  });
  const pids = () =>
    [...out.matchAll(/started(?: \(restart \d+\))?, pid (\d+)/g)].map((m) => Number(m[1]));
  const result = async (): Promise<UpResult> => ({
    code: (await status).code,
    stdout: out,
    stderr: err,
  });
  const killLeftovers = () => {
    for (const pid of pids().filter(alive)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }
  };
  const exited = async (timeoutMs = WAIT_MS): Promise<UpResult> => {
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited just now.
      }
    }, timeoutMs);
    try {
      return await result();
    } finally {
      clearTimeout(timer);
    }
  };
  let stopped: Promise<UpResult> | undefined;
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    pids,
    waitFor(pattern, timeoutMs = WAIT_MS) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = out.match(pattern);
          if (match === null && !ended) return;
          listeners.delete(check);
          clearTimeout(timer);
          if (match !== null) resolve(match);
          else reject(new Error(`dist up ended without printing ${pattern}:\n${out}\n${err}`));
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`No ${pattern} within ${timeoutMs} ms:\n${out}\n${err}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
    exited,
    stop(signal: Deno.Signal = "SIGTERM") {
      return stopped ??= (async () => {
        try {
          child.kill(signal);
        } catch {
          // Exited already.
        }
        try {
          return await exited(10_000);
        } finally {
          killLeftovers();
        }
      })();
    },
  };
}

/** Lines a child printed through the launcher: the text after `name | `. */
export function linesOf(stdout: string, name: string): string[] {
  const prefix = new RegExp(`^${name.replace(/[.]/g, "\\.")} +\\| (.*)$`);
  return stdout.split("\n").map((l) => prefix.exec(l)?.[1]).filter((l) => l !== undefined);
}

/**
 * Runs `body` with `dist up FILE …args` on a fresh file holding `text`; the
 * launcher is stopped and the file removed afterwards, whatever happens.
 */
export async function withUp(
  text: string,
  args: string[],
  body: (up: UpProcess, file: string) => Promise<void>,
  options: StartUpOptions = {},
): Promise<void> {
  const file = await topologyFile(text);
  const up = startUp([file, ...args], options);
  try {
    await body(up, file);
  } finally {
    await up.stop();
    await Deno.remove(file);
  }
}

/** A `dist up` of one server (`s1`) with its dashboard: see {@link startDashboard}. */
export interface Dashboard {
  up: UpProcess;
  /** The dashboard's URL (`http://127.0.0.1:PORT/`). */
  base: string;
  port: number;
  /** Stops the launcher and removes its topology file. */
  stop(): Promise<void>;
}

/**
 * `dist up` of one server (`s1`) with its dashboard on a free port, once
 * every instance is ready (stopped again if that does not come).
 */
export async function startDashboard(): Promise<Dashboard> {
  const file = await topologyFile(`[[server]]\nname = "s1"\nport = 0\n`);
  const up = startUp([file, "--dashboard", "127.0.0.1:0"]);
  const stop = async () => {
    await up.stop();
    await Deno.remove(file).catch(() => {});
  };
  try {
    const [, base] = await up.waitFor(/All 1 ready .*dashboard at (http:\S+)/);
    return { up, base, port: Number(new URL(base).port), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The dashboard tests' topology: a broker, two servers, a balancer and a
 * consumer, every port free ({@link DASHBOARD_NAMES} are its instances).
 */
export const DASHBOARD_TOPOLOGY = `
[[broker]]
name = "broker"
port = 0

[[server]]
name = "server"
replicas = 2
port = 0

[[balancer]]
name = "balancer"
port = 0
worker_port = 0
backends = ["server"]

[[consumer]]
name = "consumer"
broker = "broker"
`;

/** The instances of {@link DASHBOARD_TOPOLOGY}, in its order. */
export const DASHBOARD_NAMES = ["broker", "server-1", "server-2", "balancer", "consumer"];

/** Stops the launcher with `signal` and asserts a clean stop: exit 0, every child gone. */
export async function stopCleanly(up: UpProcess, signal?: Deno.Signal): Promise<UpResult> {
  const result = await up.stop(signal);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  await assertGone(up.pids());
  return result;
}

/** Waits for the launcher to end by itself with `code`, then for every child to be gone. */
export async function endsWith(up: UpProcess, code: number): Promise<UpResult> {
  const result = await up.exited(30_000);
  assert.equal(result.code, code, result.stdout + result.stderr);
  await assertGone(up.pids());
  return result;
}

/**
 * Checks `dist up` of a compiled `dist` at `bin`: the launcher starts copies
 * of the binary itself (Deno.execPath() is `dist`, not `deno`), which serve.
 */
export async function checkCompiledUp(bin: string): Promise<void> {
  const topology = '[[server]]\nport = 0\n[[client]]\nconnect = "server"\nrandom = 5\n';
  await withUp(topology, ["--dashboard", "127.0.0.1:0"], async (up) => {
    // The dashboard's page and uPlot are embedded: the binary serves them with no source around.
    const [, url] = await up.waitFor(/dashboard at (\S+)$/m);
    const served: [string, RegExp][] = [
      ["/", /<script src="\/assets\/page\.js">/],
      ["/assets/uplot.js", /uPlot/],
    ];
    for (const [path, pattern] of served) {
      const res = await fetch(new URL(path, url));
      assert.equal(res.status, 200, path);
      assert.match(await res.text(), pattern);
    }
    await up.waitFor(/client exited \(exit code 0\)/);
    const [, pid] = (await up.waitFor(/server started, pid (\d+)/)).map(Number);
    const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
    assert.deepEqual(argv.slice(0, 2), [bin, "server"]);
    const { stdout } = await stopCleanly(up);
    assert.match(stdout, /^dist up: server ready at 127\.0\.0\.1:\d+/m);
    assert.match(linesOf(stdout, "client").at(-1)!, /^5 requests: 5 ok, 0 errors/);
  }, { bin });
}

/** A port where nothing listens, below the ephemeral range, with `count - 1` free ones after it. */
export function freeRange(count: number): number {
  for (let tries = 0; tries < 200; tries++) {
    const base = 20_000 + Math.floor(Math.random() * 12_000);
    const held: Deno.Listener[] = [];
    try {
      for (let i = 0; i < count; i++) {
        held.push(Deno.listen({ hostname: "127.0.0.1", port: base + i }));
      }
      return base;
    } catch {
      // Taken: try elsewhere.
    } finally {
      for (const l of held) l.close();
    }
  }
  throw new Error("No free ports found");
}

/**
 * The default topology with its ports moved off the fixed ones, which a
 * person's cluster or another test may hold: to 0 wherever the launcher
 * learns the port from the instance (broker, servers, balancer), and to free
 * ports below the ephemeral range (where no port-0 listener lands) for the
 * binders (peers must know each other's ports) and the balancer's worker
 * port (workers find it in the file only).
 */
export function movedTopology(): string {
  const binders = freeRange(2);
  const workerPort = freeRange(1);
  let role = "";
  return DEFAULT_TOPOLOGY.split("\n").map((line) => {
    role = /^\[\[(\w+)\]\]/.exec(line)?.[1] ?? role;
    if (/^worker_port = \d+/.test(line)) return `worker_port = ${workerPort}`;
    // The broker's MQTT port too: a moved topology beside a default one must not meet it at 1884.
    if (/^mqtt_port = \d+/.test(line)) return "mqtt_port = 0";
    if (/^port = \d+/.test(line)) return `port = ${role === "binder" ? binders : 0}`;
    return line;
  }).join("\n");
}
