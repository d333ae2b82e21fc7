/**
 * A queue group with one slow member, through the client library against a
 * real broker run in this process: what each member's user sees under the
 * slow member's policy. The broker hands a group's messages out in turn,
 * so the fast member's share must all reach it whatever the slow one does,
 * and every message of the slow one's share is either delivered or counted
 * by the broker (`dropped`, `slow_consumers`): nothing is lost silently.
 */
import assert from "node:assert/strict";
import { connect, type Connection, DistError, type Subscription } from "../clients/mod.ts";
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

Deno.test("a queue group with a slow member on drop-oldest: the fast one gets its whole share, the slow one the newest of its own, the rest counted", async () => {
  const b = await startBroker({ maxPending: 256 * 1024 });
  const conns: Connection[] = [];
  try {
    for (let i = 0; i < 3; i++) conns.push(await connect(b.address));
    const [pub, fastConn, slowConn] = conns;
    const fast = await fastConn.subscribe("/jobs", { group: "g" });
    // It never reads until told: its iterator holds 4, then reading pauses.
    const slow = await slowConn.subscribe("/jobs", {
      group: "g",
      policy: "drop-oldest",
      buffer: 4,
    });
    const fastSeen: number[] = [];
    const fastDone = readAll(fast, fastSeen);
    const N = await publishUntilSlow(pub);
    const { dropped } = await brokerStats(pub);
    await waitFor(() => fastSeen.length >= N / 2, 10_000, "the fast member's share");

    // The slow member catches up: it gets what the policy kept.
    const slowSeen: number[] = [];
    const slowDone = readAll(slow, slowSeen);
    await waitFor(() => slowSeen.length >= N / 2 - dropped, 10_000, "what was kept for it");
    await new Promise((r) => setTimeout(r, 100)); // anything more would be a duplicate
    assert.equal(fastSeen.length, N / 2, "the fast member: its share, nothing more");
    assert.equal(slowSeen.length + dropped, N / 2, "the slow member: delivered + dropped");
    const share = (seen: number[]) => new Set(seen.map((i) => i % 2));
    assert.equal(share(fastSeen).size, 1, "the fast member got every other message");
    assert.equal(share(slowSeen).size, 1);
    assert.notDeepEqual(share(fastSeen), share(slowSeen));
    assert.deepEqual(missing([...fastSeen, ...slowSeen], N).length, dropped, "none twice");
    // Dropped oldest first: the slow member kept the newest, in order.
    assert.deepEqual(slowSeen, [...slowSeen].sort((x, y) => x - y));
    assert.ok(slowSeen.at(-1)! >= N - 2, `the last kept is ${slowSeen.at(-1)}`);
    assert.equal(slowConn.connected, true, "drop-oldest does not cut it off");
    assert.equal((await brokerStats(pub)).slow_consumers, 0);
    for (const c of conns) c.close();
    assert.equal(await within(fastDone, 5000, "the fast loop"), undefined);
    assert.equal(await within(slowDone, 5000, "the slow loop"), undefined);
  } finally {
    for (const c of conns) c.close();
    await b.stop();
  }
});

Deno.test("a queue group with a slow member on disconnect: it is cut off and told, the fast one then gets everything", async () => {
  const b = await startBroker({ maxPending: 256 * 1024 });
  const conns: Connection[] = [];
  try {
    for (let i = 0; i < 2; i++) conns.push(await connect(b.address));
    const [pub, fastConn] = conns;
    // Without redial, as a program that wants to know when it lost messages.
    const slowConn = await connect(b.address, { redial: false });
    conns.push(slowConn);
    const fast = await fastConn.subscribe("/jobs", { group: "g" });
    const slow = await slowConn.subscribe("/jobs", { group: "g", policy: "disconnect", buffer: 4 });
    const fastSeen: number[] = [];
    const fastDone = readAll(fast, fastSeen);
    const N = await publishUntilSlow(pub);
    assert.equal((await brokerStats(pub)).slow_consumers, 1);
    // After the cut, every message goes to the member left.
    const after = 200;
    await publishRange(pub, N, N + after);
    await waitFor(() => fastSeen.includes(N + after - 1), 10_000, "the messages after the cut");
    // The slow program reads on: what reached it before the cut, then why it ended.
    const slowSeen: number[] = [];
    const slowEnd = await within(readAll(slow, slowSeen), 15_000, "the slow loop to end");
    assert.ok(slowEnd instanceof DistError, `the slow loop ended with ${slowEnd}`);
    assert.equal(slowEnd.code, "SLOW_CONSUMER");
    assert.equal(slowConn.connected, false);
    // The fast member lost none of its own share, and got all that came after.
    const lost = missing([...fastSeen, ...slowSeen], N + after);
    const parities = new Set(lost.map((i) => i % 2));
    assert.ok(parities.size <= 1, "only the slow member's share may be missing");
    assert.ok(!parities.has(fastSeen[0] % 2), "none of the fast member's share is missing");
    assert.ok(lost.every((i) => i < N), `lost ${lost.at(-1)}, after the cut`);
    assert.equal(new Set(fastSeen).size, fastSeen.length, "none twice");
    for (const c of conns) c.close();
    assert.equal(await within(fastDone, 5000, "the fast loop"), undefined);
  } finally {
    for (const c of conns) c.close();
    await b.stop();
  }
});
