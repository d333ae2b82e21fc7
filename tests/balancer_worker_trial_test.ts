/**
 * A worker's trial (roles/balancer/trials.ts) judged by the same method on
 * proven backends, and a worker name's holder (workers.ts keepsName).
 * hostile39c R1: a client's slow request (`sleep 1500`), or one past
 * `--timeout`, became a newly registered real worker's trial; held past a
 * second, or timed out, it closed the worker, every other untried worker
 * of its address with it, and benched the address. R2: a fake that
 * answered one task and then held every task kept its name while
 * connected, so the real `dist worker --name w1` was refused for good.
 */
import assert from "node:assert/strict";
import { dial, type DistError, type Peer } from "../wire/mod.ts";
import {
  backendsOf,
  connectTo,
  eventually,
  startBalancer,
  startServers,
  startWorker,
  stopAll,
  type WorkerProcess,
} from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";

/** Serves `add`s until every worker named in `names` has served one. */
async function untilServed(client: Peer, names: string[], ms = 5_000): Promise<void> {
  await eventually(
    async () => {
      await Promise.all(Array.from({ length: 16 }, (_, i) => client.call("add", { a: i, b: 1 })));
      const list = await backendsOf(client);
      return names.every((n) => (list.find((b) => b.name === n)?.served ?? 0) > 0);
    },
    ms,
    `${names.join(", ")} serving`,
  );
}

/** Two real `dist worker`s, registered, then a client's three `sleep` calls at once; then what follows. */
async function slowTrial(args: string[], sleepMs: number): Promise<void> {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, args);
  const client = await connectTo(lb.address, 10_000);
  const workers: WorkerProcess[] = [];
  try {
    // The server is proven with fast calls, as in a running cluster.
    for (let i = 0; i < 20; i++) assert.equal(await client.call("add", { a: i, b: 1 }), i + 1);
    for (const name of ["realw1", "realw2"]) {
      workers.push(await startWorker(lb.workerAddress, ["--name", name]));
    }
    // One of them becomes a worker's trial (one trial at a time); the others go to the server.
    await Promise.all(
      Array.from({ length: 3 }, () => client.call("sleep", { ms: sleepMs }).catch((e) => e)),
    );
    await sleep(300);
    // Before: "Worker realw1 ... closed: it held or timed out a task ...; 2 worker(s) on trial
    // from 127.0.0.1 closed, its registrations refused for 10 s".
    assert.doesNotMatch(lb.stderr(), /closed: it held|refused/);
    await untilServed(client, ["realw1", "realw2"]);
    // And a third from the same address registers at once.
    workers.push(await startWorker(lb.workerAddress, ["--name", "realw3"]));
    for (const w of workers) assert.doesNotMatch(w.stderr(), /refused|UNAVAILABLE/);
  } finally {
    client.close();
    await Promise.all(workers.map((w) => w.stop()));
    await stopAll([lb, ...servers]);
  }
}

Deno.test("a client's slow request as a real worker's trial closes nothing: it is sent to the server after a second, and the workers serve (hostile39c R1)", async () => {
  await slowTrial([], 1500);
});

Deno.test("a real worker's trial past --timeout closes nothing when the method times out on the server too (hostile39c R1)", async () => {
  await slowTrial(["--timeout", "1s"], 1500);
});

Deno.test("a trial is given as long as its method takes on proven backends: a worker answering a slow method in its time is proven by it", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, []);
  const client = await connectTo(lb.address, 10_000);
  let worker: WorkerProcess | undefined;
  try {
    // Fast calls keep the server's p99 low (600: up to 6 sleeps stay past it); its slow method takes 1.6 s.
    for (let i = 0; i < 600; i++) await client.call("add", { a: i, b: 1 });
    // Three of them (one slow answer does not raise a method's bound: hostile40c V4).
    const first = Array.from({ length: 3 }, () => client.call("sleep", { ms: 1600 }));
    assert.deepEqual(await Promise.all(first), [1600, 1600, 1600]);
    worker = await startWorker(lb.workerAddress, ["--name", "slow1"]);
    // Pairs of sleeps until one is the worker's trial: it answers it itself, in 1.6 s.
    const by: string[] = [];
    await eventually(
      async () => {
        const answers = await Promise.all(
          Array.from({ length: 2 }, () => client.request("sleep", { ms: 1600 })),
        );
        by.push(...answers.map((a) => a.by ?? ""));
        return by.includes("slow1");
      },
      6_000,
      "a sleep answered by the worker",
    );
    // Before: held past a second (4x the server's p99 of mostly adds), it was closed.
    assert.doesNotMatch(lb.stderr(), /closed: it held|held a trial request/);
    const w = (await backendsOf(client)).find((b) => b.name === "slow1");
    assert.ok(w !== undefined && w.served > 0, JSON.stringify(w));
  } finally {
    client.close();
    await worker?.stop();
    await stopAll([lb, ...servers]);
  }
});

/**
 * A fake w1 that answers its first task and holds the rest (answering one
 * held task late every `dripMs`, if given), out for its timeouts; then the
 * real w1 registers every half second until it takes the name.
 */
async function squat(dripMs?: number): Promise<void> {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--timeout", "500ms"]);
  const client = await connectTo(lb.address);
  const [host, port] = lb.workerAddress.split(":");
  const peers: Peer[] = [];
  let drip: ReturnType<typeof setInterval> | undefined;
  try {
    assert.equal(await client.call("add", { a: 1, b: 1 }), 2);
    let tasks = 0;
    const held: (() => void)[] = [];
    const fake = await dial({ host, port: Number(port) }, {
      role: "worker",
      name: "w1",
      onRequest: (method, params) => {
        if (method === "sys.ping") return { pong: true };
        const { a, b } = params as { a: number; b: number };
        if (tasks++ === 0) return a + b; // passes its trial, holds the rest
        return new Promise((resolve) => held.push(() => resolve(a + b)));
      },
    });
    peers.push(fake);
    if (dripMs !== undefined) drip = setInterval(() => held.shift()?.(), dripMs);
    await fake.call("worker.register", { name: "w1", capacity: 4 });
    // Client traffic until the fake is out for its timeouts.
    await eventually(
      async () => {
        await Promise.all(
          Array.from({ length: 8 }, (_, i) => client.call("add", { a: i, b: 1 }).catch(() => 0)),
        );
        const w1 = (await backendsOf(client)).find((b) => b.name === "w1");
        return w1 !== undefined && w1.served === 1 && w1.state === "down";
      },
      6_000,
      "the fake w1 out for its timeouts",
    );
    // The real w1 tries every half second: refused while the fake's silence is short, then takes over.
    const t0 = performance.now();
    let real: Peer | undefined;
    let refusals = 0;
    while (real === undefined && performance.now() - t0 < 14_000) {
      const p = await dial({ host, port: Number(port) }, {
        role: "worker",
        name: "w1",
        onRequest: (method, params) =>
          method === "sys.ping"
            ? { pong: true }
            : (params as { a: number }).a + (params as { b: number }).b,
      });
      peers.push(p);
      try {
        await p.call("worker.register", { name: "w1", capacity: 4 });
        real = p;
      } catch (err) {
        assert.equal((err as DistError).code, "BAD_REQUEST");
        refusals++;
        p.close();
        await sleep(500);
      }
    }
    // Before: refused for as long as the fake stayed connected.
    assert.ok(real !== undefined, `the real w1 refused ${refusals} times in 14 s`);
    assert.ok(refusals > 0, "the fake kept the name while its silence was short");
    await eventually(() => Promise.resolve(!fake.canCall), 2_000, "the fake's connection closed");
    await untilServed(client, ["w1"]);
  } finally {
    clearInterval(drip);
    client.close();
    for (const p of peers) p.close();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
}

Deno.test("a worker that answered one task and holds the rest loses its name to a newcomer once silent 10 s, not for as long as it stays connected (hostile39c R2)", async () => {
  await squat();
});

Deno.test("late answers keep no name: a fake answering one held task late every 3 s loses it all the same (hostile40c V1)", async () => {
  await squat(3_000);
});

Deno.test("a trial answered with an error the balancer sends on to check (BAD_REQUEST, verify.ts) is not a failed trial", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, []);
  const client = await connectTo(lb.address);
  let worker: WorkerProcess | undefined;
  try {
    assert.equal(await client.call("add", { a: 1, b: 1 }), 2);
    worker = await startWorker(lb.workerAddress, ["--name", "w1"]);
    // Divisions by zero, some of them the worker's trial: it answers BAD_REQUEST at once, and the
    // balancer asks the server too; that answer is no verdict on a trial the worker answered (nor
    // proof: hostile41a W3). Then its next trial, a result, proves it: no 10 s trial backoff.
    const end = performance.now() + 1_500;
    while (performance.now() < end) {
      await Promise.all(
        Array.from({ length: 4 }, () => client.call("div", { a: 1, b: 0 }).catch(() => 0)),
      );
    }
    await eventually(
      async () => {
        await Promise.all(Array.from({ length: 4 }, (_, i) => client.call("add", { a: i, b: 1 })));
        return ((await backendsOf(client)).find((b) => b.name === "w1")?.served ?? 0) > 0;
      },
      5_000,
      "the worker proven",
    );
    assert.doesNotMatch(lb.stderr(), /a trial request/);
  } finally {
    client.close();
    await worker?.stop();
    await stopAll([lb, ...servers]);
  }
});

Deno.test("a server's error answer to a trial sent on is no verdict: a worker serving a method the server lacks keeps its trials (hostile40c V5)", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, []);
  const [whost, wport] = lb.workerAddress.split(":");
  const client = await connectTo(lb.address);
  let renders = 0;
  const worker = await dial({ host: whost, port: Number(wport) }, {
    role: "worker",
    name: "render1",
    onRequest: async (method) => {
      if (method === "sys.ping") return { pong: true };
      if (method !== "render") throw new Error("unknown");
      renders++;
      await sleep(1_500);
      return "rendered";
    },
  });
  try {
    assert.equal(await client.call("add", { a: 1, b: 1 }), 2);
    await worker.call("worker.register", { name: "render1" });
    // Renders one after another for 4.5 s: each trial is held past its second and sent to the
    // server, which answers UNKNOWN_METHOD in milliseconds.
    const end = performance.now() + 4_500;
    while (performance.now() < end) await client.call("render", {}).catch(() => 0);
    // Before: that error was a verdict ("held a trial request render past 1000 ms, which … answered
    // in 2 ms: no trial for 10 s"), and the worker ran 1 render in 4.5 s.
    assert.doesNotMatch(lb.stderr(), /held a trial request render/);
    assert.ok(renders >= 2, `the worker ran ${renders} renders in 4.5 s`);
  } finally {
    client.close();
    worker.close();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
});
