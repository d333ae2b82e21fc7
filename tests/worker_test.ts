/**
 * Scenario tests of `dist worker`: workers dial a balancer's worker port,
 * register, share its requests, fail over, and come back by themselves.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import {
  backendsOf,
  connectTo,
  eventually,
  startBalancer,
  startWorker,
  stopAll,
  type WorkerProcess,
} from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import type { Peer } from "../wire/mod.ts";

/** Waits until the balancer lists exactly `names` as workers that are up. */
async function workersUp(peer: Peer, names: string[]) {
  await eventually(
    async () => {
      const up = (await backendsOf(peer)).filter((b) => b.kind === "worker" && b.state === "up");
      return up.map((b) => b.name).toSorted().join() === names.toSorted().join();
    },
    10_000,
    `workers ${names.join(", ")} up`,
  );
}

/** A balancer with workers w1 and w2 registered, and a client connection to it. */
async function withTwoWorkers(
  body: (peer: Peer, workers: WorkerProcess[]) => Promise<void>,
): Promise<void> {
  const lb = await startBalancer([]);
  const workers = await Promise.all(
    ["w1", "w2"].map((n) => startWorker(lb.workerAddress, ["--name", n])),
  );
  const peer = await connectTo(lb.address);
  try {
    await workersUp(peer, ["w1", "w2"]);
    await body(peer, workers);
  } finally {
    peer.close();
    await stopAll([lb, ...workers]);
  }
}

Deno.test("worker: two workers register and share the tasks, with the server's operations", async () => {
  await withTwoWorkers(async (peer) => {
    const by = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      const res = await peer.request("sum", { values: "1,2,3,4,5" });
      assert.equal(res.result, 15);
      by.set(res.by!, (by.get(res.by!) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(by), { w1: 10, w2: 10 });
    await assert.rejects(peer.call("div", { a: 1, b: 0 }), /Division by zero/);
  });
});

Deno.test("worker: a worker killed mid-task has its task completed by the other", async () => {
  await withTwoWorkers(async (peer, workers) => {
    const tasks = [peer.request("sleep", { ms: 800 }), peer.request("sleep", { ms: 800 })];
    await sleep(200);
    const busy = (await backendsOf(peer)).filter((b) => b.inflight === 1).map((b) => b.name);
    assert.deepEqual(busy.toSorted(), ["w1", "w2"], "one task on each");
    await workers[0].stop("SIGKILL");
    const results = await Promise.all(tasks);
    assert.deepEqual(results.map((r) => r.result), [800, 800]);
    assert.deepEqual(results.map((r) => r.by), ["w2", "w2"]);
    await workersUp(peer, ["w2"]);
  });
});

Deno.test("worker: when the balancer restarts, workers come back by themselves", async () => {
  let lb = await startBalancer([]);
  const workerPort = lb.workerAddress.split(":")[1];
  const workers = await Promise.all(
    ["w1", "w2"].map((n) => startWorker(lb.workerAddress, ["--name", n])),
  );
  let peer = await connectTo(lb.address);
  try {
    await workersUp(peer, ["w1", "w2"]);
    peer.close();
    await lb.stop("SIGKILL");
    lb = await startBalancer([], ["--worker-port", workerPort]);
    peer = await connectTo(lb.address);
    await workersUp(peer, ["w1", "w2"]);
    assert.equal(await peer.call("add", { a: 2, b: 3 }), 5);
    for (const w of workers) {
      assert.match(w.stderr(), /Registered with[^\n]*\n[\s\S]*Registered with/);
    }
  } finally {
    peer.close();
    await stopAll([lb, ...workers]);
  }
});

Deno.test("worker: --capacity 1 gets one task at a time", async () => {
  const lb = await startBalancer([]);
  let worker: WorkerProcess | undefined;
  const peer = await connectTo(lb.address);
  try {
    worker = await startWorker(lb.workerAddress, ["--name", "solo", "--capacity", "1"]);
    await workersUp(peer, ["solo"]);
    const t0 = performance.now();
    const tasks = Array.from({ length: 3 }, () => peer.call("sleep", { ms: 300 }));
    await sleep(100);
    const [view] = await backendsOf(peer);
    assert.equal(view.inflight, 1);
    assert.equal((await peer.call("sys.stats") as { queued: number }).queued, 2);
    assert.deepEqual(await Promise.all(tasks), [300, 300, 300]);
    assert.ok(performance.now() - t0 >= 850, "one after another");
  } finally {
    peer.close();
    await stopAll([lb, worker]);
  }
});

Deno.test("worker: SIGTERM exits 0; a bad --balancer is one `dist:` line and exit 2", async () => {
  const lb = await startBalancer([]);
  try {
    const worker = await startWorker(lb.workerAddress, ["--name", "w"]);
    assert.equal(await worker.stop("SIGTERM"), 0);
    const bad = await runDist(["worker", "--balancer", "nowhere"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^dist: --balancer: "nowhere" is not host:port/);
  } finally {
    await stopAll([lb]);
  }
});

Deno.test("worker: the worker port refuses anything but registration and the balancer's own methods", async () => {
  const lb = await startBalancer([]);
  const peer = await connectTo(lb.workerAddress);
  try {
    await assert.rejects(peer.call("echo", { text: "x" }), /UNKNOWN_METHOD|Unknown method/);
    await assert.rejects(peer.call("worker.register", { name: "" }), /name must be a string/);
    await assert.rejects(
      peer.call("worker.register", { name: "x", capacity: 0 }),
      /capacity must be an integer/,
    );
    assert.equal((await peer.call("sys.ping") as { role: string }).role, "balancer");
  } finally {
    peer.close();
    await stopAll([lb]);
  }
});

Deno.test("dist worker --help shows its flags", async () => {
  const r = await runDist(["worker", "--help"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /--balancer/);
  assert.match(r.stdout, /--capacity/);
});
