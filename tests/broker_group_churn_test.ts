/**
 * Queue groups against members that never read but do not stay long enough
 * to count as stalled (hostile review 38 L6: reconnecting every 30–100 ms,
 * ten of them took 85–89 % of a group, each join starting afresh), and
 * against members over MQTT-over-WebSocket (38 L7: the broker could not ask
 * the kernel about their socket, so ten that never read took 91 %). A
 * member whose client has not shown that it reads is on trial: it takes a
 * budget's worth, earned back by what proven members take. One that joins
 * and reads is proven within its first few hundred KB and takes its share.
 */
import assert from "node:assert/strict";
import { BrokerClient, rawSubscriber, withBroker } from "./helpers/broker.ts";
import { mqttClient, mqttOpts, withMqttBroker } from "./helpers/mqtt.ts";
import { closeQuietly, sleep, waitFor } from "./helpers/raw.ts";
import { countFrames, publishKb } from "./helpers/groups.ts";
import { wsThief } from "./helpers/ws_members.ts";

/**
 * `k` members of group g on /q (drop-oldest) that never read, each closed
 * after `holdMs` and replaced by a new connection, until `stop()`.
 */
function churningThieves(port: number, k: number, holdMs: number) {
  let stopped = false, joins = 0;
  const deadline = Date.now() + 60_000;
  const loops = Array.from({ length: k }, async () => {
    while (!stopped && Date.now() < deadline) {
      const m = await rawSubscriber(port, { topic: "/q", group: "g", policy: "drop-oldest" });
      joins++;
      await sleep(holdMs);
      closeQuietly(m.conn);
    }
  });
  return {
    get joins() {
      return joins;
    },
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

/**
 * Waits until `count()` reaches `goal`, or has not risen for `stillMs`
 * (its last value is then final), at most `capMs` in all.
 */
async function whileRising(count: () => number, goal: number, stillMs: number, capMs: number) {
  const end = performance.now() + capMs;
  let last = count(), since = performance.now();
  while (count() < goal && performance.now() - since < stillMs && performance.now() < end) {
    await sleep(50);
    if (count() !== last) [last, since] = [count(), performance.now()];
  }
}

/**
 * Alice reads group g on /q while `k` thieves rejoin every `holdMs`; 40,000 messages of 1 KB are
 * published: alice must get at least `share` of them, the thieves come back at least `joins` times.
 */
async function besideThieves(k: number, holdMs: number, share: number, joins: number) {
  await withBroker(async (b) => {
    const pub = await BrokerClient.connect(b.port);
    const alice = await rawSubscriber(b.port, { topic: "/q", group: "g" });
    const got = countFrames(alice.conn);
    const mallory = churningThieves(b.port, k, holdMs);
    try {
      await sleep(200 + 2 * k);
      const n = 40_000;
      await publishKb(pub, n, 10);
      // Alice's deliveries end about a second after the last publish, later on a loaded machine:
      // waited on while they go on (never more than 5 s without one), not for a fixed time.
      await whileRising(() => got.count, share * n, 5_000, 120_000);
      // None lost: each message went to a member (her or a thief, who drops it as it leaves).
      const stats = await pub.stats();
      const out = (stats.per_topic as Record<string, { out: number }>)["/q/x"]?.out;
      assert.ok(
        out >= n && stats.dropped === 0 && stats.undeliverable === 0,
        `delivered ${out} of ${n}, dropped ${stats.dropped}, undeliverable ${stats.undeliverable}`,
      );
      console.log(`alice: ${got.count} of ${n}; the thieves joined ${mallory.joins} times`);
      // Her share falls with the machine's load (stop 48, d48): a reader that now and then misses
      // the broker's 25 ms keeps up less, and no proven member keeping up, thieves are given more
      // (66-82 % at load 6-8, 62 % at 13, two to six busy loops beside; a CI run at ~15: 73 %).
      // Paced so that she keeps up (publishKbPaced) it held, but no longer told M2's bug apart (84-85 %
      // at 29b6d4d^ as at the fix): a product matter left open, not hidden by a lower bound. A
      // reader answering each request 50 ms late (countFrames answerAfterMs) got 54-58 %.
      assert.ok(got.count >= share * n, `alice got ${got.count} of ${n}, the thieves the rest`);
      assert.ok(mallory.joins >= joins, `the thieves came and went (${mallory.joins} joins)`);
    } finally {
      await mallory.stop();
      closeQuietly(alice.conn);
      await got.done;
      pub.close();
    }
  });
}

Deno.test("broker queue group: members that never read and rejoin every 50 ms cannot take most of its messages (hostile review 38 L6)", async () => {
  // Before: each new connection started with a clean slate and took ~150 KB before it counted
  // as stalled; alice got 10–15 %. Now about 87 % (members on trial take at most a ninth of what
  // proven ones do, past their group's first 1 MiB).
  await besideThieves(10, 50, 0.6, 20);
});

Deno.test("broker queue group: forty members that never read and rejoin every 100 ms, more than a pick's window, cannot take most of its messages (hostile review 38b M2)", async () => {
  // Before: joins and leaves shifted alice's place, the pick lost her past its window of 32 and
  // a thief of the window took the message: alice got about 63 %; now about 85 %.
  await besideThieves(40, 100, 0.75, 60);
});

Deno.test("broker queue group: a member that joins and reads takes its share at once", async () => {
  await withBroker(async (b) => {
    const pub = await BrokerClient.connect(b.port);
    const alice = await rawSubscriber(b.port, { topic: "/q", group: "g" });
    const aliceGot = countFrames(alice.conn);
    let bob: Awaited<ReturnType<typeof rawSubscriber>> | undefined;
    let bobGot: ReturnType<typeof countFrames> | undefined;
    try {
      await publishKb(pub, 5_000, 10); // alice is proven: she reads
      await waitFor(
        () => aliceGot.count === 5_000,
        10_000,
        `alice's deliveries (${aliceGot.count})`,
      );
      bob = await rawSubscriber(b.port, { topic: "/q", group: "g" });
      bobGot = countFrames(bob.conn);
      const n = 2_000; // 2 MB: bob must show he reads within the first few hundred KB
      await publishKb(pub, n, 10);
      const total = () => aliceGot.count - 5_000 + bobGot!.count;
      await waitFor(() => total() === n, 10_000, `the deliveries (${total()})`);
      assert.ok(bobGot.count >= 0.35 * n, `bob's share of ${n}: ${bobGot.count}`);
    } finally {
      closeQuietly(bob?.conn);
      closeQuietly(alice.conn);
      await Promise.all([aliceGot.done, bobGot?.done]);
      pub.close();
    }
  });
});

Deno.test(
  "MQTT over WebSocket: ten shared-subscription members that never read cannot take most of its messages (hostile review 38 L7)",
  mqttOpts,
  async () => {
    await withMqttBroker(async (b) => {
      const wsPort = (await b.mqttStats()).ws_port;
      const alice = await mqttClient(b.mqttPort, { protocolVersion: 5 });
      let got = 0;
      alice.on("message", () => got++);
      const mallory: Deno.Conn[] = [];
      try {
        await alice.subscribeAsync("$share/g/q/#", { qos: 0 });
        for (let i = 0; i < 10; i++) mallory.push(await wsThief(wsPort, "$share/g/q/#"));
        const n = 30_000;
        await publishKb(b.native, n);
        // Before: their socket was not asked about; they took ~4 MB each, alice ~9 %.
        await waitFor(() => got >= 0.6 * n, 30_000, `alice's deliveries (${got})`);
        // Passed over: once their sockets stalled; since stop 48 once they leave the broker's ping
        // unanswered 25 ms (group_proof.ts awaited), before their sockets fill.
        const groups = (await b.stats()).queue_groups as Record<string, number>;
        assert.ok(groups.passed_over >= 1, `passed over: ${JSON.stringify(groups)}`);
      } finally {
        for (const m of mallory) closeQuietly(m);
        await alice.endAsync(true);
      }
    }, { mqttWsPort: 0 });
  },
);
