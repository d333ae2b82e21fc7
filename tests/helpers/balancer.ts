/**
 * Helpers for balancer and worker scenario tests: servers, a balancer over
 * them, workers, and an RPC client to ask the balancer what it sees. Every
 * process is on port 0 and every wait is bounded.
 */
import type { Job } from "../../roles/balancer/mod.ts";
import { dial, type Peer } from "../../wire/mod.ts";
import { distCommand, type DistProcess, startDist } from "./dist.ts";
import { sleep } from "./raw.ts";

/** `n` servers, started in parallel, named `s1`..`sN` (`prefix` changes the letter). */
export function startServers(n: number, prefix = "s"): Promise<DistProcess[]> {
  return Promise.all(
    Array.from(
      { length: n },
      (_, i) => startDist(["server", "--port", "0", "--name", `${prefix}${i + 1}`]),
    ),
  );
}

/** A balancer and the address of its worker port. */
export interface BalancerProcess extends DistProcess {
  workerAddress: string;
}

/** `dist balancer --port 0 --worker-port 0 --backends …` with fast checks unless `args` say otherwise. */
export async function startBalancer(
  backends: DistProcess[],
  args: string[] = [],
): Promise<BalancerProcess> {
  const list = backends.length > 0 ? ["--backends", backends.map((b) => b.address).join(",")] : [];
  const p = await startDist([
    "balancer",
    "--port",
    "0",
    "--worker-port",
    "0",
    "--check-interval",
    "200ms",
    ...list,
    ...args,
  ]);
  const deadline = performance.now() + 5000;
  let m: RegExpMatchArray | null = null;
  while ((m = p.stderr().match(/Listening for workers on ([\d.]+:\d+)/)) === null) {
    if (performance.now() > deadline) {
      await p.stop("SIGKILL");
      throw new Error(`No worker port line; stderr:\n${p.stderr()}`);
    }
    await sleep(10);
  }
  return { ...p, workerAddress: m[1] };
}

/** A running worker. */
export interface WorkerProcess {
  child: Deno.ChildProcess;
  stderr(): string;
  /** Sends `signal` (default SIGTERM) and waits for the exit (SIGKILL after 5 s). */
  stop(signal?: Deno.Signal): Promise<number>;
}

/**
 * `dist worker --balancer ADDRESS …`, once it says it registered (or at
 * once with `registered: false`).
 */
export async function startWorker(
  address: string,
  args: string[] = [],
  { registered = true } = {},
): Promise<WorkerProcess> {
  const { exe, args: argv } = distCommand(["worker", "--balancer", address, ...args]);
  const child = new Deno.Command(exe, {
    args: argv,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let text = "";
  const drained = (async () => {
    try {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        text = (text + chunk).slice(-(1 << 20));
      }
    } catch {
      // Killed: what was read is all there is.
    }
  })();
  let stopped: Promise<number> | undefined;
  const stop = (signal: Deno.Signal = "SIGTERM") =>
    stopped ??= (async () => {
      try {
        child.kill(signal);
      } catch {
        // Already exited.
      }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Exited just now.
        }
      }, 5000);
      const { code } = await child.status;
      clearTimeout(timer);
      await drained;
      return code;
    })();
  const deadline = performance.now() + 10_000;
  while (registered && !text.includes("Registered with")) {
    if (performance.now() > deadline) {
      await stop("SIGKILL");
      throw new Error(`Worker did not register; stderr:\n${text}`);
    }
    await sleep(10);
  }
  return { child, stderr: () => text, stop };
}

/** A client connection to `address` ("host:port"). */
export function connectTo(address: string, timeoutMs = 5000): Promise<Peer> {
  const [host, port] = address.split(":");
  return dial({ host, port: Number(port) }, {
    role: "client",
    name: "test",
    timeoutMs,
  });
}

/** One backend as `balancer.backends` shows it. */
export interface BackendView {
  name: string;
  peer: string;
  kind: string;
  state: string;
  reason: string;
  inflight: number;
  served: number;
  failures: number;
}

export async function backendsOf(peer: Peer): Promise<BackendView[]> {
  return await peer.call("balancer.backends") as BackendView[];
}

/** Polls `cond` every 20 ms until it holds; throws after `ms`. */
export async function eventually(
  cond: () => Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const end = performance.now() + ms;
  while (!(await cond())) {
    if (performance.now() > end) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Waits until the balancer behind `peer` has every backend it lists up (and at least one). */
export async function allUp(peer: Peer, ms = 5000): Promise<void> {
  await eventually(
    async () => {
      const list = await backendsOf(peer);
      return list.length > 0 && list.every((b) => b.state === "up");
    },
    ms,
    "every backend up",
  );
}

/** Stops every process given, in parallel, whatever state each is in. */
export async function stopAll(
  processes: ({ stop(signal?: Deno.Signal): Promise<unknown> } | undefined)[],
): Promise<void> {
  await Promise.all(processes.map((p) => p?.stop("SIGKILL").catch(() => {})));
}

/**
 * A request for a Dispatcher in unit tests as the balancer makes one
 * (idempotent, never sent, nothing queued), with `fields` (an id, its flow,
 * a size…) added or overriding.
 */
export function newJob<T extends object>(fields: T): Job & T {
  return {
    idempotent: true,
    attempts: 0,
    deadline: 0,
    sentAt: 0,
    takenAt: 0,
    queuedBytes: 0,
    ...fields,
  };
}

/**
 * A balancer spreading requests round-robin over `backends` (addresses) and
 * a client of it, once every backend is up; both stopped if that never comes.
 */
export async function roundRobinOver(
  backends: string[],
): Promise<{ lb: BalancerProcess; client: Peer }> {
  const lb = await startBalancer([], ["--backends", backends.join(","), "--policy", "round-robin"]);
  const client = await connectTo(lb.address);
  try {
    await eventually(
      async () => (await backendsOf(client)).every((b) => b.state === "up"),
      3000,
      "every backend up",
    );
  } catch (err) {
    client.close();
    await lb.stop();
    throw err;
  }
  return { lb, client };
}
