/**
 * A queue group with slow members, through the client library against a
 * real broker run in this process: what each member's user sees. A message
 * goes to a member that keeps up (README Queue groups), so a slow member
 * is passed over rather than fed until its policy drops or cuts; only when
 * every member is behind does a member's policy apply, and then every
 * message is either delivered or counted by the broker (`dropped`,
 * `slow_consumers`): nothing is lost silently.
 */
import assert from "node:assert/strict";
import { connect, type Connection, type Subscription } from "../clients/mod.ts";
import { startBroker } from "./helpers/broker.ts";
import { waitFor, within } from "./helpers/raw.ts";

/** Most messages published (each carries its index), in rounds of {@link ROUND}. */
const MAX = 40_000;
const ROUND = 1000;
const PAYLOAD = "x".repeat(2000);

interface Stats {
  dropped: number;
  slow_consumers: number;
}

/** Reads `sub` as a program keeping up would, collecting each message's index. */
function readAll(sub: Subscription, into: number[]): Promise<unknown> {
  return (async () => {
    for await (const m of sub) into.push((m.value as { i: number }).i);
  })().then(() => undefined, (err) => err);
}

/** Publishes `from`…`to - 1` fire-and-forget, letting readers in every 100. */
async function publishRange(pub: Connection, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) {
    pub.publish("/jobs", { i, payload: PAYLOAD }, { retain: false });
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 1));
  }
}

/** The broker's counters, once every publish sent before on `pub` was routed. */
async function brokerStats(pub: Connection): Promise<Stats> {
  // Answered in order, after the publishes before it on this connection.
  return await pub.request("sys.stats") as Stats;
}

/**
 * Publishes rounds of {@link ROUND} until the broker has applied the slow
 * member's policy (the kernel's socket buffers take megabytes first, how
 * many depends on the machine), always an even count in all.
 * @returns how many were published
 */
async function publishUntilSlow(pub: Connection): Promise<number> {
  let n = 0;
  while (n < MAX) {
    await publishRange(pub, n, n + ROUND);
    n += ROUND;
    const stats = await brokerStats(pub);
    if (stats.dropped > 0 || stats.slow_consumers > 0) return n;
  }
  throw new Error(`The slow member never fell behind in ${MAX} messages`);
}

/** The indexes in 0…n-1 missing from `seen`. */
function missing(seen: number[], n: number): number[] {
  const set = new Set(seen);
  return Array.from({ length: n }, (_, i) => i).filter((i) => !set.has(i));
}

for (const policy of ["drop-oldest", "disconnect"] as const) {
  Deno.test(`a queue group with a slow member on ${policy}: it is passed over, not fed until its policy applies; the fast one gets the rest, nothing dropped`, async () => {
    const b = await startBroker({ maxPending: 256 * 1024 });
    const conns: Connection[] = [];
    try {
      for (let i = 0; i < 3; i++) conns.push(await connect(b.address));
      const [pub, fastConn, slowConn] = conns;
      const fast = await fastConn.subscribe("/jobs", { group: "g" });
      // It never reads until told: its iterator holds 4, then reading pauses.
      const slow = await slowConn.subscribe("/jobs", { group: "g", policy, buffer: 4 });
      const fastSeen: number[] = [];
      const fastDone = readAll(fast, fastSeen);
      // 40 MB in all: far more than the slow member's socket buffers take.
      for (let n = 0; n < MAX; n += ROUND) await publishRange(pub, n, n + ROUND);
      const stats = await brokerStats(pub);
      assert.equal(
        stats.dropped,
        0,
        "nothing dropped: the fast member took what the slow one could not",
      );
      assert.equal(stats.slow_consumers, 0, "the slow member is not cut");
      assert.equal(slowConn.connected, true);
      const slowSeen: number[] = [];
      const slowDone = readAll(slow, slowSeen);
      await waitFor(() => fastSeen.length + slowSeen.length >= MAX, 20_000, "every message");
      await new Promise((r) => setTimeout(r, 100)); // anything more would be a duplicate
      assert.equal(fastSeen.length + slowSeen.length, MAX, "none twice");
      assert.deepEqual(missing([...fastSeen, ...slowSeen], MAX), [], "none lost");
      assert.ok(slowSeen.length < MAX / 4, `the slow member got ${slowSeen.length} of ${MAX}`);
      assert.deepEqual(slowSeen, [...slowSeen].sort((x, y) => x - y), "in order");
      for (const c of conns) c.close();
      assert.equal(await within(fastDone, 5000, "the fast loop"), undefined);
      assert.equal(await within(slowDone, 5000, "the slow loop"), undefined);
    } finally {
      for (const c of conns) c.close();
      await b.stop();
    }
  });
}

Deno.test("a queue group whose members are all behind on drop-oldest: the policy applies, each keeps the newest of its own, the rest counted", async () => {
  const b = await startBroker({ maxPending: 256 * 1024 });
  const conns: Connection[] = [];
  try {
    for (let i = 0; i < 3; i++) conns.push(await connect(b.address));
    const [pub, oneConn, twoConn] = conns;
    const subs = [
      await oneConn.subscribe("/jobs", { group: "g", policy: "drop-oldest", buffer: 4 }),
      await twoConn.subscribe("/jobs", { group: "g", policy: "drop-oldest", buffer: 4 }),
    ];
    // Neither reads until the broker has dropped for them.
    const N = await publishUntilSlow(pub);
    const { dropped, slow_consumers } = await brokerStats(pub);
    assert.ok(dropped > 0);
    assert.equal(slow_consumers, 0, "drop-oldest cuts no one");
    const seen: number[][] = [[], []];
    const done = subs.map((sub, i) => readAll(sub, seen[i]));
    await waitFor(() => seen[0].length + seen[1].length >= N - dropped, 10_000, "what was kept");
    await new Promise((r) => setTimeout(r, 100)); // anything more would be a duplicate
    const all = [...seen[0], ...seen[1]];
    assert.equal(all.length + dropped, N, "delivered + dropped");
    assert.equal(missing(all, N).length, dropped, "none twice");
    for (const s of seen) assert.deepEqual(s, [...s].sort((x, y) => x - y), "oldest dropped first");
    assert.ok(Math.max(...all) >= N - 2, `the newest kept: ${Math.max(...all)}`);
    for (const c of conns) c.close();
    for (const d of done) assert.equal(await within(d, 5000, "a member's loop"), undefined);
  } finally {
    for (const c of conns) c.close();
    await b.stop();
  }
});
