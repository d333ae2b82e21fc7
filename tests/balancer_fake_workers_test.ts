/**
 * A fleet of fake workers from one address (hostile39a P1): each answers its
 * hello, health checks and heartbeats, registers under its own name, and
 * never answers a task. Before the fix, eight of them held a closed-loop
 * client's eight requests for the whole `--timeout` (1 answer in 10 s).
 */
import assert from "node:assert/strict";
import { dial, type DistError, type Peer } from "../wire/mod.ts";
import {
  backendsOf,
  connectTo,
  eventually,
  startBalancer,
  startServers,
  stopAll,
} from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";

/** `n` fakes registered at `address` into `fakes`: health checks answered, tasks never (`onTask`). */
async function registerFakes(
  address: string,
  n: number,
  fakes: Peer[],
  onTask: () => void,
): Promise<void> {
  const [whost, wport] = address.split(":");
  for (let i = 0; i < n; i++) {
    const peer = await dial({ host: whost, port: Number(wport) }, {
      role: "worker",
      name: `fake${i}`,
      onRequest: (method) => {
        if (method === "sys.ping") return { pong: true };
        onTask();
        return new Promise(() => {});
      },
    });
    fakes.push(peer);
    await peer.call("worker.register", { name: `fake${i}`, capacity: 16 });
  }
}

/**
 * `n` fakes, then a c=8 client for 4 s; `proven`: the server answered a
 * request before they came (past 16 backends, each request is a pick of its
 * own: runs.ts RUN_POOL).
 */
async function fleet(proven: boolean, n: number): Promise<void> {
  const servers = await startServers(1);
  // --timeout 20s: longer than the test, as the default 30 s is.
  const lb = await startBalancer(servers, ["--timeout", "20s"]);
  const [whost, wport] = lb.workerAddress.split(":");
  const fakes: Peer[] = [];
  let tasks = 0;
  const client = await connectTo(lb.address);
  try {
    // The server is proven first (it answers), as in any running cluster; or it has answered
    // nothing yet (a `--backends` server is in rotation all the same: trials go on).
    if (proven) assert.equal(await client.call("add", { a: 1, b: 1 }), 2);
    await registerFakes(lb.workerAddress, n, fakes, () => tasks++);
    // A closed loop of 8 for 4 s.
    let answered = 0;
    let slowest = 0;
    const end = performance.now() + 4_000;
    await Promise.all(Array.from({ length: 8 }, async (_, k) => {
      for (let i = 0; performance.now() < end; i++) {
        const t = performance.now();
        assert.equal(await client.call("add", { a: i, b: k }), i + k);
        slowest = Math.max(slowest, performance.now() - t);
        answered++;
      }
    }));
    // Before P1's fix: 0-8 answers (every request held by a fake for --timeout).
    assert.ok(answered > 1_000, `${answered} answers in 4 s beside ${n} fakes`);
    // A held trial is sent to the server after a second (trials.ts).
    assert.ok(slowest < 3_000, `slowest answer ${Math.round(slowest)} ms`);
    // One trial at a time, a second each; each fake that failed one waits 10 s for the next.
    assert.ok(tasks >= 1 && tasks <= 6, `the fakes got ${tasks} tasks in 4 s`);
    const failed =
      lb.stderr().match(/Backend fake\d+ \(fake\d+\) held a trial request add past \d+ ms/g) ?? [];
    assert.ok(failed.length >= 1, lb.stderr());
    assert.equal(new Set(failed).size, failed.length, "no fake tried twice");
    // Nothing closed for a trial (hostile39c R1: real workers were closed so), no source benched.
    assert.ok(fakes.every((f) => f.canCall), "every fake still connected");
    const again = await dial({ host: whost, port: Number(wport) }, {
      role: "worker",
      name: "newcomer",
      onRequest: () => new Promise(() => {}),
    });
    fakes.push(again);
    const reg = await again.call("worker.register", { name: "newcomer" }) as { registered: string };
    assert.equal(reg.registered, "newcomer");
    assert.doesNotMatch(lb.stderr(), /closed: it held/);
  } finally {
    client.close();
    for (const f of fakes) f.close();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
}

Deno.test("a fleet of fake workers from one address holds a client's requests a trial at a time, a second each, and each failed trial waits its backoff (nothing closed)", async () => {
  await fleet(true, 8);
});

Deno.test("a fleet of 20 fake workers registered before the server answered anything holds no request past its trial's second", async () => {
  await fleet(false, 20);
});

Deno.test("a real worker on trial answers its first task and stays, taking requests (slow start)", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, []);
  const [whost, wport] = lb.workerAddress.split(":");
  const client = await connectTo(lb.address);
  const worker = await dial({ host: whost, port: Number(wport) }, {
    role: "worker",
    name: "real",
    onRequest: (method, params) =>
      method === "sys.ping"
        ? { pong: true }
        : (params as { a: number; b: number }).a + (params as { a: number; b: number }).b,
  });
  try {
    assert.equal(await client.call("add", { a: 1, b: 1 }), 2);
    await worker.call("worker.register", { name: "real", capacity: 16 });
    // Rounds of 100 calls until it has served a few (at most 10 s): on a loaded machine 400 calls
    // could all be answered by the server before the worker's trial and slow start gave it 5.
    let real: Awaited<ReturnType<typeof backendsOf>>[number] | undefined;
    for (let round = 0, end = Date.now() + 10_000; Date.now() < end; round++) {
      await Promise.all(
        Array.from({ length: 100 }, (_, i) => client.call("add", { a: round * 100 + i, b: 1 })),
      );
      real = (await backendsOf(client)).find((b) => b.name === "real");
      if (round >= 3 && (real?.served ?? 0) >= 5) break;
    }
    assert.ok(
      real !== undefined && real.served >= 5 && real.state === "up" && worker.canCall,
      `the worker served ${real?.served}`,
    );
  } finally {
    client.close();
    worker.close();
    await stopAll([lb, ...servers]);
  }
});

/** A worker on the worker port answering `add`, and `add` with `a: -1` never (hangs). */
function workerNamed(address: string, name: string, answers = true): Promise<Peer> {
  const [host, port] = address.split(":");
  return dial({ host, port: Number(port) }, {
    role: "worker",
    name,
    onRequest: (method, params) => {
      if (method === "sys.ping") return { pong: true };
      const { a, b } = params as { a: number; b: number };
      return answers && a !== -1 ? a + b : new Promise(() => {});
    },
  });
}

Deno.test("a fake that took a free worker name and failed its trial passes nothing to the real worker (hostile39a P8)", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--timeout", "300ms"]);
  const client = await connectTo(lb.address);
  const peers: Peer[] = [];
  try {
    assert.equal(await client.call("add", { a: 1, b: 1 }), 2);
    const fake = await workerNamed(lb.workerAddress, "w1", false);
    peers.push(fake);
    await fake.call("worker.register", { name: "w1", capacity: 4 });
    // It holds its trial past its bound (--timeout 300ms), which the server then answers: failed.
    await eventually(
      async () => {
        await Promise.all(
          Array.from({ length: 4 }, () => client.call("add", { a: 1, b: 1 }).catch(() => 0)),
        );
        return /Backend w1 \(w1\) held a trial request/.test(lb.stderr());
      },
      5_000,
      "the fake w1's failed trial",
    );
    fake.close();
    await eventually(
      async () => !(await backendsOf(client)).some((b) => b.name === "w1"),
      2_000,
      "the fake gone",
    );
    const real = await workerNamed(lb.workerAddress, "w1");
    peers.push(real);
    await real.call("worker.register", { name: "w1", capacity: 4 });
    // Before P8: "back within its backoff: out for 10 s more"; before R1's fix, its address benched.
    await eventually(
      async () => {
        await Promise.all(Array.from({ length: 8 }, () => client.call("add", { a: 2, b: 2 })));
        const w1 = (await backendsOf(client)).find((b) => b.name === "w1");
        return w1 !== undefined && w1.state === "up" && w1.served > 0;
      },
      2_000,
      "the real w1 up and serving",
    );
  } finally {
    client.close();
    for (const p of peers) p.close();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
});

Deno.test("a worker out for its answers, its connection alive, keeps its name: a newcomer is refused, not swapped in (hostile39a P8)", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--timeout", "300ms"]);
  const client = await connectTo(lb.address);
  const peers: Peer[] = [];
  try {
    const w1 = await workerNamed(lb.workerAddress, "w1");
    peers.push(w1);
    await w1.call("worker.register", { name: "w1", capacity: 4 });
    await eventually(
      async () => {
        await Promise.all(Array.from({ length: 8 }, () => client.call("add", { a: 1, b: 1 })));
        return ((await backendsOf(client)).find((b) => b.name === "w1")?.served ?? 0) > 0;
      },
      3_000,
      "w1 serving",
    );
    // Requests it never answers take it out (its backoff).
    await eventually(
      async () => {
        await Promise.all(
          Array.from({ length: 8 }, () => client.call("add", { a: -1, b: 1 }).catch(() => 0)),
        );
        return (await backendsOf(client)).find((b) => b.name === "w1")?.state === "down";
      },
      5_000,
      "w1 out for its timeouts",
    );
    const other = await workerNamed(lb.workerAddress, "w1");
    peers.push(other);
    const refused = await other.call("worker.register", { name: "w1" }).catch((e) =>
      e
    ) as DistError;
    assert.equal(refused.code, "BAD_REQUEST", String(refused));
    assert.ok(w1.canCall, "the holder's connection is not closed");
  } finally {
    client.close();
    for (const p of peers) p.close();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
});

Deno.test("a client's non-idempotent requests are never a fake's trial while the server is proven: 20 fakes hold none of them (hostile40c V2)", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--timeout", "20s"]);
  const fakes: Peer[] = [];
  let tasks = 0;
  const client = await connectTo(lb.address);
  try {
    assert.equal(await client.call("add", { a: 1, b: 1 }), 2);
    await registerFakes(lb.workerAddress, 20, fakes, () => tasks++);
    // A closed loop of 8 non-idempotent calls for 3 s.
    let answered = 0;
    let slowest = 0;
    const end = performance.now() + 3_000;
    await Promise.all(Array.from({ length: 8 }, async (_, k) => {
      for (let i = 0; performance.now() < end; i++) {
        const t = performance.now();
        const sum = await client.call("add", { a: i, b: k }, {
          idempotent: false,
          timeout: 25_000,
        });
        assert.equal(sum, i + k);
        slowest = Math.max(slowest, performance.now() - t);
        answered++;
      }
    }));
    // Before: a fake took one each second and held it for --timeout (17, 0, 0, 0 … a second).
    assert.equal(tasks, 0, `the fakes got ${tasks} non-idempotent requests`);
    assert.ok(slowest < 1_000, `slowest answer ${Math.round(slowest)} ms`);
    assert.ok(answered > 500, `${answered} answers in 3 s`);
  } finally {
    client.close();
    for (const f of fakes) f.close();
    await stopAll([lb, ...servers]);
  }
});
