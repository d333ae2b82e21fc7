/**
 * What hostile44a's tests share: a JSON peer on a node socket bound to a
 * loopback address of choice (Deno.connect cannot bind one), and a lying
 * worker's answers (everything at once, `sleep` included).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { Buffer } from "node:buffer";
import { HELLO, jsonFrame } from "./raw.ts";
import { dial, DistError, type Peer } from "../../wire/mod.ts";

/** A JSON peer on a node socket from `from` (it pings, and answers requests with `answer`). */
export function rawPeer(
  address: string,
  from: string,
  hello: Record<string, unknown>,
  answer: (method: string, params: Record<string, unknown>) => unknown,
  all: net.Socket[],
  by = hello.name,
): Promise<(msg: Record<string, unknown>) => Promise<Record<string, unknown>>> {
  const [host, port] = address.split(":");
  const socket = net.connect({ host, port: Number(port), localAddress: from });
  all.push(socket);
  let buf = Buffer.alloc(0);
  const waiting = new Map<unknown, (m: Record<string, unknown>) => void>();
  const timer = setInterval(() => socket.write(jsonFrame({ method: "ping" })), 300);
  socket.on("error", () => {});
  socket.on("close", () => clearInterval(timer));
  socket.on("connect", () => socket.write(jsonFrame({ ...HELLO, ...hello, heartbeat: 60_000 })));
  let id = 0;
  const call = (msg: Record<string, unknown>) =>
    new Promise<Record<string, unknown>>((resolve) => {
      waiting.set(++id, resolve);
      socket.write(jsonFrame({ id, ...msg }));
    });
  return new Promise((resolve) => {
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const msg = JSON.parse(buf.subarray(4, 4 + buf.readUInt32BE(0)).toString());
        buf = buf.subarray(4 + buf.readUInt32BE(0));
        if (msg.op === "welcome") resolve(call);
        else if (msg.method !== undefined && msg.id !== undefined) {
          socket.write(
            jsonFrame({ id: msg.id, result: answer(msg.method, msg.params ?? {}), by }),
          );
        } else if (msg.method === undefined) {
          waiting.get(msg.id)?.(msg);
          waiting.delete(msg.id);
        }
      }
    });
  });
}

/** A lying worker's answer to anything, at once. */
export function quick(method: string, p: Record<string, unknown>): unknown {
  if (method === "sys.ping") return { pong: true };
  if (method === "add") return (p.a as number) + (p.b as number);
  if (method === "echo") return p.text;
  if (method === "sleep") return p.ms;
  return 0;
}

/**
 * A lying worker from 127.0.0.9 on `workerAddress` ({@link quick}'s
 * answers, with `by` on them) that asks to register as `name` (capacity
 * 64): "registered", or the refusal's code.
 */
export async function registerLiar(
  workerAddress: string,
  name: string,
  all: net.Socket[],
  by = name,
): Promise<string> {
  const hello = { role: "worker", name: "liar" };
  const register = await rawPeer(workerAddress, "127.0.0.9", hello, quick, all, by);
  const reg = await register({ method: "worker.register", params: { name, capacity: 64 } });
  return reg.error === undefined ? "registered" : String((reg.error as { code: string }).code);
}

/** A lying worker `name` ({@link registerLiar}), registered. */
export async function lyingWorker(
  workerAddress: string,
  all: net.Socket[],
  name = "quick",
): Promise<void> {
  const answer = await registerLiar(workerAddress, name, all);
  if (answer !== "registered") throw new Error(`${name} not registered: ${answer}`);
}

/**
 * Who answers a client of 127.0.3.7 calling `add` one at a time for `ms`:
 * counts by each answer's `by` (an error's code when it failed).
 */
export async function answeredBy(
  address: string,
  ms: number,
  all: net.Socket[],
): Promise<Map<string, number>> {
  const call = await rawPeer(address, "127.0.3.7", { role: "client", name: "honest" }, quick, all);
  const by = new Map<string, number>();
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const m = await call({ method: "add", params: { a: 2, b: 2 } });
    const who = String(m.by ?? (m.error as { code?: string } | undefined)?.code);
    by.set(who, (by.get(who) ?? 0) + 1);
    await new Promise((r) => setTimeout(r, 10));
  }
  return by;
}

/** Calls of `add` answered in `ms` by `c` loops on `peer`, and the refusals among them. */
export async function closedLoop(peer: Peer, c: number, ms: number): Promise<[number, string[]]> {
  let answered = 0;
  const refused: string[] = [];
  const end = performance.now() + ms;
  await Promise.all(Array.from({ length: c }, async () => {
    for (let i = 0; performance.now() < end; i++) {
      try {
        assert.equal(await peer.call("add", { a: i, b: 1 }, { timeout: 10_000 }), i + 1);
        answered++;
      } catch (e) {
        if (!(e instanceof DistError)) throw e;
        refused.push(`${e.code}: ${e.message}`);
      }
    }
  }));
  return [answered, refused];
}

/**
 * `n` loops of `sleep ms` on `peer` (each past the balancer's `--timeout`
 * in the attacks), until `stop()` says so; failures are the point.
 */
export function sleepLoops(peer: Peer, n: number, ms: number, stop: () => boolean): Promise<void> {
  return Promise.all(Array.from({ length: n }, async () => {
    while (!stop()) await peer.call("sleep", { ms }, { timeout: ms + 10_000 }).catch(() => {});
  })).then(() => {});
}

/**
 * How many of the looks at `balancer.backends` (every 200 ms for `ms`,
 * on a connection of its own to `address`) found every backend `watched`
 * picks (two of them) out together: [together, looks].
 */
export async function outTogether(
  address: string,
  ms: number,
  watched: (b: { kind: string; peer: string }) => boolean,
): Promise<[number, number]> {
  const [host, port] = address.split(":");
  const watch = await dial({ host, port: Number(port) }, { role: "client", name: "watch" });
  let together = 0;
  let looks = 0;
  try {
    const until = performance.now() + ms;
    while (performance.now() < until) {
      const view = await watch.call("balancer.backends") as {
        kind: string;
        peer: string;
        state: string;
      }[];
      looks++;
      if (view.filter((b) => watched(b) && b.state !== "up").length === 2) together++;
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    watch.close();
  }
  return [together, looks];
}
