/**
 * Replication between binders running in this process: push, catch-up before
 * answering (lab row 3), convergence after a cut network and after a restart
 * under changing registrations, and the same state whichever peer a binder
 * learnt it from.
 */
import assert from "node:assert/strict";
import {
  CuttableProxy,
  ids,
  type LocalBinder,
  reg,
  startBinder,
  waitUntil,
} from "./helpers/binder.ts";
import { freePort } from "./helpers/dist.ts";

/** What clients of a binder see: every live instance with its meta. */
async function view(b: LocalBinder): Promise<string> {
  const res = await b.call("binder.list", {}) as { instances: unknown[] };
  return JSON.stringify(res.instances);
}

async function converged(binders: LocalBinder[]): Promise<boolean> {
  const views = await Promise.all(binders.map(view));
  return views.every((v) => v === views[0]);
}

/** Two binders that replicate with each other, on ports known in advance. */
async function pair(flags: Record<string, unknown> = {}): Promise<[LocalBinder, LocalBinder]> {
  const [pa, pb] = [freePort(), freePort()];
  const peers = [`127.0.0.1:${pa}`, `127.0.0.1:${pb}`];
  return await Promise.all([
    startBinder({ port: pa, peers, ...flags }),
    startBinder({ port: pb, peers, ...flags }),
  ]);
}

Deno.test("a change on one binder reaches the other at once, both ways", async () => {
  const [a, b] = await pair();
  try {
    const { id } = await a.call("binder.register", reg(5001)) as { id: string };
    const ms = await waitUntil(async () => (await ids(b)).includes(id), "the push to reach b");
    assert.ok(ms < 2000, `took ${ms} ms`);
    await b.call("binder.deregister", { id });
    await waitUntil(async () => (await ids(a)).length === 0, "the deregistration to reach a");
    // Renewals on a keep the instance alive on b past its TTL.
    const short = await a.call("binder.register", reg(5002, { ttl_ms: 1000 })) as { id: string };
    const renewing = setInterval(() => {
      a.call("binder.renew", { id: short.id }).catch(() => {}); // the assertion below tells
    }, 100);
    try {
      await new Promise((r) => setTimeout(r, 1500));
      assert.deepEqual(await ids(b), [short.id]);
    } finally {
      clearInterval(renewing);
    }
    const stats = await b.call("sys.stats") as { replication: { merged: number } };
    assert.ok(stats.replication.merged >= 3);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

for (const token of [undefined, "shared-cluster-token"]) {
  Deno.test(
    `a binder listed on one side only: ${
      token
        ? "with a shared token, changes are pushed both ways"
        : "without security settings, it takes no changes from the other"
    }`,
    async () => {
      // No anti-entropy for a minute: only pushes can carry the changes.
      const a = await startBinder({ antiEntropy: 60_000, token });
      const b = await startBinder({ peers: [a.address], antiEntropy: 60_000, token });
      try {
        await waitUntil(
          async () =>
            (await b.call("sys.stats") as { replication: { rounds: number } }).replication
              .rounds > 0,
          "b's first round with a",
        );
        const x = await a.call("binder.register", reg(5001)) as { id: string };
        const y = await b.call("binder.register", reg(5002)) as { id: string };
        // a's change reaches b over b's own link to a: b dialed a, so it trusts it.
        await waitUntil(async () => (await ids(b)).includes(x.id), "a's change to reach b", 2000);
        if (token !== undefined) {
          await waitUntil(async () => (await ids(a)).includes(y.id), "b's change to reach a", 2000);
        } else {
          // b is not one of a's --peers and cannot prove it is: a takes nothing from it.
          await new Promise((r) => setTimeout(r, 500));
          assert.deepEqual(await ids(a), [x.id]);
        }
      } finally {
        await Promise.all([a.stop(), b.stop()]);
      }
    },
  );
}

Deno.test("a binder started next to a peer knows its registrations before answering (lab row 3)", async () => {
  // 2,000 instances from one address: past the default --max-per-source (1,000).
  const a = await startBinder({ maxPerSource: 2000 });
  let b: LocalBinder | undefined;
  try {
    for (let port = 1; port <= 2000; port++) {
      a.call("binder.register", reg(port, { service: port <= 3 ? "compute" : "bulk" }));
    }
    await waitUntil(async () => (await ids(a, "compute")).length === 3, "registrations on a");
    await waitUntil(async () => (await ids(a, "bulk")).length === 1997, "registrations on a");
    b = await startBinder({ peers: [a.address] });
    // The very first request to b, sent as soon as it listens, sees a's state.
    const first = await b.call("binder.lookup", { service: "compute" }) as { port: number };
    assert.equal(first.port, 1);
    assert.equal((await ids(b, "bulk")).length, 1997);
    assert.equal((await b.call("sys.stats") as { ready: boolean }).ready, true);
  } finally {
    await b?.stop();
    await a.stop();
  }
});

Deno.test("a binder whose peers are all down answers from its own state without waiting long", async () => {
  const t0 = performance.now();
  const b = await startBinder({ peers: [`127.0.0.1:${freePort()}`], catchUp: 10_000 });
  try {
    await assert.rejects(b.call("binder.lookup", { service: "compute" }));
    const ms = performance.now() - t0;
    assert.ok(ms < 5000, `first answer after ${ms} ms`);
  } finally {
    await b.stop();
  }
});

Deno.test("binders cut off from each other converge once they meet again", async () => {
  // a and b reach each other only through proxies, which the test cuts.
  const [pa, pb] = [freePort(), freePort()];
  const toA = new CuttableProxy(pa);
  const toB = new CuttableProxy(pb);
  const [a, b] = await Promise.all([
    startBinder({ port: pa, peers: [toB.address] }),
    startBinder({ port: pb, peers: [toA.address] }),
  ]);
  try {
    const before = await a.call("binder.register", reg(5000)) as { id: string };
    const both = await a.call("binder.register", reg(5001)) as { id: string };
    await waitUntil(async () => (await ids(b)).length === 2, "b to learn of 5000 and 5001");
    toA.cut();
    toB.cut();
    // Changes on both sides while cut off, some to the same instance.
    await a.call("binder.register", reg(6001));
    await b.call("binder.register", reg(6002));
    await a.call("binder.deregister", { id: before.id });
    await new Promise((r) => setTimeout(r, 5));
    await b.call("binder.register", reg(5001, { meta: { side: "b", later: true } }));
    assert.notEqual(await view(a), await view(b));
    toA.heal();
    toB.heal();
    await waitUntil(() => converged([a, b]), "a and b to converge");
    assert.deepEqual(await ids(a), [both.id, "compute@127.0.0.1:6001", "compute@127.0.0.1:6002"]);
    const lookup = await a.call("binder.list", {}) as {
      instances: { port: number; meta?: unknown }[];
    };
    assert.deepEqual(lookup.instances.find((i) => i.port === 5001)!.meta, {
      side: "b",
      later: true,
    });
  } finally {
    await Promise.all([a.stop(), b.stop()]);
    await Promise.all([toA.close(), toB.close()]);
  }
});

Deno.test("three binders, one stopped and restarted while registrations change, converge", async () => {
  const ports = [freePort(), freePort(), freePort()];
  const peers = ports.map((p) => `127.0.0.1:${p}`);
  const start = (i: number) => startBinder({ port: ports[i], peers });
  const binders = await Promise.all([0, 1, 2].map(start));
  let running = true;
  let n = 0;
  // Registers, re-registers with a new meta, and deregisters on binders 1 and 3, at random.
  const churn = (async () => {
    while (running) {
      const b = binders[Math.random() < 0.5 ? 0 : 2];
      const port = 7000 + Math.floor(Math.random() * 40);
      n++;
      try {
        if (Math.random() < 0.3) {
          await b.call("binder.deregister", { id: `compute@127.0.0.1:${port}` });
        } else {
          await b.call("binder.register", reg(port, { meta: { n } }));
        }
      } catch {
        // NOT_FOUND for an instance never registered: fine.
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  try {
    await new Promise((r) => setTimeout(r, 300));
    await binders[1].stop();
    await new Promise((r) => setTimeout(r, 300));
    binders[1] = await start(1);
    await new Promise((r) => setTimeout(r, 300));
    running = false;
    await churn;
    assert.ok(n > 50, `only ${n} changes made`);
    await waitUntil(() => converged(binders), "the three binders to converge");
    assert.ok((await ids(binders[1])).length > 0);
  } finally {
    running = false;
    await churn;
    await Promise.all(binders.map((b) => b.stop()));
  }
});

Deno.test("a binder's state is the same whichever peer it learnt it from", async () => {
  const [a, b] = await pair();
  const late: LocalBinder[] = [];
  try {
    await a.call("binder.register", reg(5001, { meta: { zone: "a" } }));
    await b.call("binder.register", reg(5002));
    const { id } = await a.call("binder.register", reg(5003)) as { id: string };
    await b.call("binder.register", { ...reg(6001), service: "other" });
    await waitUntil(() => converged([a, b]), "a and b to converge");
    await b.call("binder.deregister", { id });
    await waitUntil(() => converged([a, b]), "a and b to converge again");
    late.push(await startBinder({ peers: [a.address] }));
    late.push(await startBinder({ peers: [b.address] }));
    const views = await Promise.all([a, b, ...late].map(view));
    assert.equal(views[2], views[0]);
    assert.equal(views[3], views[0]);
    assert.equal(JSON.parse(views[0]).length, 3);
    // Tombstones came along too: the removed instance stays removed everywhere.
    for (const x of late) await assert.rejects(x.call("binder.renew", { id }));
  } finally {
    await Promise.all([a, b, ...late].map((x) => x.stop()));
  }
});

Deno.test("an instance that stops renewing expires on every binder within its TTL and a round", async () => {
  const ports = [freePort(), freePort(), freePort()];
  const peers = ports.map((p) => `127.0.0.1:${p}`);
  const binders = await Promise.all(ports.map((port) => startBinder({ port, peers })));
  try {
    const { id } = await binders[0].call("binder.register", reg(5001, { ttl_ms: 600 })) as {
      id: string;
    };
    await waitUntil(
      async () => (await Promise.all(binders.map((b) => ids(b)))).every((l) => l.includes(id)),
      "every binder to know the instance",
    );
    const t0 = performance.now();
    await waitUntil(
      async () => (await Promise.all(binders.map((b) => ids(b)))).every((l) => l.length === 0),
      "the expiry on every binder",
    );
    const ms = performance.now() - t0;
    assert.ok(ms < 600 + 1000, `gone from all three ${ms} ms after the last renewal`);
  } finally {
    await Promise.all(binders.map((b) => b.stop()));
  }
});
