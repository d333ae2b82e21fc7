/**
 * A binder against a peer that watches services it will never use, over
 * many connections. Each watch costs the binder up to 1.5 KB of RSS; the only
 * bound was 10,000 per connection, so a peer opening connections (10,000
 * allowed) could grow the binder by gigabytes. `--max-watches` bounds them
 * across connections, and each connection's first few are granted anyway,
 * so the flood cannot keep a real client from watching its service.
 */
import assert from "node:assert/strict";
import { connectTo, CuttableProxy, ids, reg, startBinder, waitUntil } from "./helpers/binder.ts";
import { freePort } from "./helpers/dist.ts";
import { DistError, type Peer } from "../wire/mod.ts";
import { RESERVED_WATCHES_PER_CONN } from "../roles/binder/watch.ts";
import { BUCKETS } from "../roles/binder/digest.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
/** An empty registry's digest: a well-formed binder.diff. */
const digest = { x: Array(BUCKETS).fill(0), n: Array(BUCKETS).fill(0) };

/** Watches `count` made-up services on `peer`; how many were granted, and the refusals. */
async function watchMany(peer: Peer, tag: string, count: number) {
  const results = await Promise.allSettled(
    Array.from({ length: count }, (_, i) => peer.call("binder.watch", { service: `${tag}-${i}` })),
  );
  const refused = results.filter((r) => r.status === "rejected").map((r) => r.reason as DistError);
  return { granted: count - refused.length, refused };
}

Deno.test({
  name: "attack: watches are bounded across connections, and a real client still watches",
  ...opts,
  async fn() {
    const max = 200;
    const b = await startBinder({ maxWatches: max });
    const flood: Peer[] = [];
    try {
      let granted = 0;
      for (let c = 0; c < 4; c++) {
        const peer = await connectTo(b.address);
        flood.push(peer);
        const r = await watchMany(peer, `fake${c}`, 100);
        granted += r.granted;
        for (const e of r.refused) {
          assert.equal(e.code, "OVERLOADED");
          assert.match(e.message, /Too many watches on this binder \(--max-watches 200\)/);
        }
      }
      // 100 + 100, then only each later connection's reserved ones.
      assert.equal(granted, max + 2 * RESERVED_WATCHES_PER_CONN);
      let stats = await b.call("sys.stats") as { watchers: number };
      assert.equal(stats.watchers, granted);

      // A client watching its service is served, and hears of a new instance.
      const changes: unknown[] = [];
      const client = await connectTo(b.address, "client", (method, params) => {
        if (method === "binder.changed") changes.push(params);
      });
      flood.push(client);
      await client.call("binder.watch", { service: "compute" });
      await b.call("binder.register", reg(21999));
      await waitUntil(() => changes.length === 1, "binder.changed to the real client");

      // Closing the flood gives its room back.
      for (const p of flood.splice(0, 2)) p.close();
      await waitUntil(async () => {
        stats = await b.call("sys.stats") as { watchers: number };
        return stats.watchers === granted + 1 - 200;
      }, "the closed connections' watches to go");
      const again = await connectTo(b.address);
      flood.push(again);
      assert.equal((await watchMany(again, "later", 150)).granted, 150);
    } finally {
      for (const p of flood) p.close();
      await b.stop();
    }
  },
});

Deno.test({
  name: "attack: binder.diff keeps one peer key per connection, whatever nodes it names",
  ...opts,
  async fn() {
    const b = await startBinder();
    let fake: Peer | undefined;
    try {
      // Any local process may say "binder" and call binder.diff (it reads): each call
      // naming another node used to keep its key, so one connection grew the binder
      // without bound (200,000 calls: +255 MB of RSS).
      fake = await connectTo(b.address, "binder");
      const keys = async () =>
        ((await b.call("sys.stats")) as { replication: { peer_keys: number } }).replication
          .peer_keys;
      // A malformed request keeps nothing.
      await assert.rejects(
        fake.call("binder.diff", { node: "node-x", key: "k".repeat(64), digest: {} }),
        /"digest" must be/,
      );
      assert.equal(await keys(), 0);
      await Promise.all(Array.from(
        { length: 300 },
        (_, i) => fake!.call("binder.diff", { node: `node-${i}`, key: "k".repeat(64), digest }),
      ));
      assert.equal(await keys(), 1);
      // A node name longer than a binder's is refused before anything is kept.
      const other = await connectTo(b.address, "binder");
      await assert.rejects(
        other.call("binder.diff", { node: "n".repeat(1100), key: "k", digest: {} }),
        /"node" must be/,
      );
      assert.equal(await keys(), 1);
      other.close();
      fake.close();
      await waitUntil(async () => await keys() === 0, "the key to go with its connection");
    } finally {
      fake?.close();
      await b.stop();
    }
  },
});

Deno.test({
  name: "attack: a process that names a peer binder's node first cannot hold a false key for it",
  ...opts,
  async fn() {
    // A node's id is in every binder.diff answer. A local process could name
    // b's node at a (a binder just restarted) with a key of its own before b
    // did: the first key was held while its connection stayed open, so every
    // push a sent b carried it and b refused them all (b learnt a's changes
    // only from its own rounds, here 30 s apart).
    const [pa, pb] = [freePort(), freePort()];
    const toA = new CuttableProxy(pa); // b reaches a only through it: cut until the attack is in
    toA.cut();
    const a = await startBinder({
      port: pa,
      peers: [`127.0.0.1:${pa}`, `127.0.0.1:${pb}`],
      antiEntropy: 30_000,
    });
    const b = await startBinder({ port: pb, peers: [toA.address], antiEntropy: 30_000 });
    let attacker: Peer | undefined;
    const stats = async (x: typeof a) =>
      (await x.call("sys.stats") as {
        replication: { rounds: number; peer_keys: number; unproven: number; bad_pushes: number };
      }).replication;
    try {
      await waitUntil(async () => (await stats(a)).rounds > 0, "a's first round with b");
      const spy = await connectTo(b.address, "binder");
      const { node } = await spy.call("binder.diff", { digest }) as { node: string };
      spy.close();
      attacker = await connectTo(a.address, "binder");
      await attacker.call("binder.diff", { node, key: crypto.randomUUID(), digest });
      assert.equal((await stats(a)).peer_keys, 0, "the false key was kept");
      toA.heal();
      await waitUntil(async () => (await stats(b)).rounds > 0, "b's first round with a");
      assert.equal((await stats(a)).peer_keys, 1);
      const { id } = await a.call("binder.register", reg(5101)) as { id: string };
      const ms = await waitUntil(async () => (await ids(b)).includes(id), "the push to b", 3000);
      assert.ok(ms < 2000, `took ${ms} ms`);
      const got = await stats(b);
      assert.equal(got.unproven + got.bad_pushes, 0, JSON.stringify(got));
    } finally {
      attacker?.close();
      await Promise.all([a.stop(), b.stop()]);
      await toA.close();
    }
  },
});
