/**
 * hostile46a G1: `dist balancer --threads N` keeps the bounds an operator
 * sets for the process, not N times them. Each thread is a balancer of its
 * own (threads.ts), so each counted `--max-connections` and `--max-workers`
 * for itself, and held a worker's name for itself: with two threads,
 * `--max-connections 16` let 32 clients in, `--max-workers 4` registered 8
 * workers, and two workers held one name at once (one a thread).
 */
import assert from "node:assert/strict";
import { dial, type Peer } from "../wire/mod.ts";
import { connectTo, eventually, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";

/** A balancer with `--threads 2` and `args`, once both threads accept. */
async function threaded(args: string[]) {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--threads", "2", ...args]);
  await eventually(
    () => Promise.resolve(lb.stderr().includes("Accepting on 2 threads")),
    10_000,
    "both threads accepting",
  );
  return { lb, servers };
}

/** Whether `peer` still answers (its connection was kept). */
async function alive(peer: Peer): Promise<boolean> {
  try {
    await peer.call("sys.ping", undefined, { timeout: 2000 });
    return true;
  } catch {
    return false;
  }
}

Deno.test("balancer --threads 2 --max-connections 16: at most 16 client connections at once (hostile46a G1)", async () => {
  const { lb, servers } = await threaded(["--max-connections", "16"]);
  const peers: Peer[] = [];
  try {
    // One at a time: with 48 tries both threads take some (all on one is a 2^-47 chance).
    for (let i = 0; i < 48; i++) {
      try {
        peers.push(await connectTo(lb.address, 2000));
      } catch {
        // Refused at the limit: what a full balancer does.
      }
    }
    const kept = (await Promise.all(peers.map(alive))).filter((a) => a).length;
    assert.ok(kept <= 16, `${kept} client connections open at once under --max-connections 16`);
    assert.ok(kept >= 8, `the balancer still takes clients: ${kept}`);
  } finally {
    for (const p of peers) p.close();
    await stopAll([lb, ...servers]);
  }
});

/** Registers a worker named `name` on the worker port; true when the balancer took it. */
async function register(address: string, name: string, held: Peer[]): Promise<boolean> {
  const [host, port] = address.split(":");
  const peer = await dial({ host, port: Number(port) }, {
    role: "worker",
    name,
    onRequest: (method) => {
      if (method === "sys.ping") return { pong: true };
      return 0;
    },
  });
  held.push(peer);
  try {
    await peer.call("worker.register", { name, capacity: 4 }, { timeout: 3000 });
    return true;
  } catch {
    return false;
  }
}

Deno.test("balancer --threads 2 --max-workers 4: at most 4 workers registered at once (hostile46a G1)", async () => {
  const { lb, servers } = await threaded(["--max-workers", "4"]);
  const held: Peer[] = [];
  try {
    let registered = 0;
    for (let i = 0; i < 16; i++) if (await register(lb.workerAddress, `w${i}`, held)) registered++;
    assert.ok(registered <= 4, `${registered} workers registered under --max-workers 4`);
    assert.ok(registered >= 1, "a worker registers");
  } finally {
    for (const p of held) p.close();
    await stopAll([lb, ...servers]);
  }
});

Deno.test("balancer --threads 2: one name, one live worker (hostile46a G1)", async () => {
  const { lb, servers } = await threaded([]);
  const held: Peer[] = [];
  try {
    let registered = 0;
    for (let i = 0; i < 16; i++) if (await register(lb.workerAddress, "w1", held)) registered++;
    assert.equal(registered, 1, `${registered} live workers registered under the name w1`);
  } finally {
    for (const p of held) p.close();
    await stopAll([lb, ...servers]);
  }
});
