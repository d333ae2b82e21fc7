/**
 * Queue groups give a message to a member that keeps up (hostile review 34
 * Z11): a member that stops reading takes what its socket and sink hold,
 * then nothing while another member reads, so the group loses nothing to
 * it, whatever its policy. Members that keep up still share in rotation.
 */
import assert from "node:assert/strict";
import { topicSegments } from "../clients/contracts/mod.ts";
import { BrokerCore } from "../roles/broker/mod.ts";
import { PICK_WINDOW, SubscriptionTree } from "../roles/broker/subscriptions.ts";
import { UNFIT, UNPROVEN } from "../roles/broker/group.ts";
import { FakeSink } from "./helpers/broker_sink.ts";
import { BrokerClient, rawSubscriber, statsUntil, withBroker } from "./helpers/broker.ts";
import { mqttClient, mqttOpts, withMqttBroker } from "./helpers/mqtt.ts";
import { closeQuietly, waitFor } from "./helpers/raw.ts";
import { publishKb } from "./helpers/groups.ts";

const MIB = 1024 * 1024;

interface Member {
  sid: number;
  name: string;
  segments: readonly string[];
  group: string;
  load: number;
}

function group(loads: number[]) {
  const t = new SubscriptionTree<Member>();
  const members = loads.map((load, i) => ({
    sid: i + 1,
    name: `m${i}`,
    segments: topicSegments("/jobs"),
    group: "g",
    load,
  }));
  for (const m of members) t.add(m);
  return { members, group: t.match(["jobs"]).groups[0] };
}

Deno.test("Group.pick(load) skips loaded members, rotates over those with none", () => {
  const { group: g } = group([0, 5, 0]);
  const picks = Array.from({ length: 4 }, () => g.pick((m) => m.load).name);
  assert.deepEqual(picks, ["m0", "m2", "m0", "m2"]);
});

Deno.test("Group.pick(load) takes the least loaded when all are loaded, earliest in turn on ties", () => {
  const { members, group: g } = group([7, 3, 3]);
  assert.equal(g.pick((m) => m.load).name, "m1");
  assert.equal(g.pick((m) => m.load).name, "m2", "the rotation goes on after the last pick");
  members[0].load = 1;
  assert.equal(g.pick((m) => m.load).name, "m0");
});

Deno.test("Group.pick(load) looks at most PICK_WINDOW members a pick", () => {
  const loads = Array.from({ length: PICK_WINDOW + 1 }, (_, i) => (i === PICK_WINDOW ? 0 : 9));
  const { group: g } = group(loads);
  let looked = 0;
  const first = g.pick((m) => (looked++, m.load));
  assert.equal(looked, PICK_WINDOW);
  assert.equal(first.name, "m0", "the least loaded of the window (a tie: the earliest)");
});

Deno.test("Group.pick(load) goes back past the window to the member that kept up (hostile review 36 J3)", () => {
  // m0 reads; 40 members behind it in turn (more than a window) do not.
  const loads = [0, ...Array.from({ length: 40 }, () => 9)];
  const { members, group: g } = group(loads);
  const picks = Array.from({ length: 10 }, () => g.pick((m) => m.load).name);
  assert.deepEqual(picks, Array(10).fill("m0"), "not the least behind of a window without m0");
  // Behind now too, but less than any of them: still m0; more behind than one: that one.
  members[0].load = 5;
  assert.equal(g.pick((m) => m.load).name, "m0");
  members[0].load = 20;
  assert.equal(g.pick((m) => m.load).load, 9);
});

Deno.test("BrokerCore queue group: a drop-oldest member that never reads loses none of the group's messages", () => {
  for (const policy of ["drop-oldest", "latest", "disconnect"]) {
    const c = new BrokerCore({ retainBytes: 64 * MIB, maxPending: 8 * MIB, maxTopics: 1e6 });
    const reader = new FakeSink(), thief = new FakeSink();
    reader.size = thief.size = 1000;
    thief.stalled = true; // pings, never reads: what it is given stays pending
    c.subscribe(reader, { topic: "/q", group: "g" }).sub.release();
    const stolen = c.subscribe(thief, { topic: "/q", group: "g", policy }).sub;
    stolen.release();
    const n = 2000;
    for (let i = 0; i < n; i++) c.publish(`/q/${i % 7}`, i);
    // The thief takes what goes out while it looks as if it kept up (64 KiB), then nothing.
    assert.ok(thief.written.length <= 70, `${policy}: the thief took ${thief.written.length}`);
    assert.equal(reader.written.length + thief.written.length, n, `${policy}: each message once`);
    assert.equal(stolen.dropped, 0, `${policy}: none dropped`);
    assert.equal(thief.slowError, undefined, `${policy}: not cut by its policy`);
  }
});

Deno.test("BrokerCore queue group: when no member keeps up, the least loaded takes the message", () => {
  const c = new BrokerCore({ retainBytes: 64 * MIB, maxPending: 8 * MIB, maxTopics: 1e6 });
  const a = new FakeSink(), b = new FakeSink();
  a.stalled = b.stalled = true;
  a.size = b.size = 10_000;
  c.subscribe(a, { topic: "/q", group: "g" }).sub.release();
  c.subscribe(b, { topic: "/q", group: "g" }).sub.release();
  for (let i = 0; i < 100; i++) c.publish("/q", i);
  assert.deepEqual([a.written.length, b.written.length], [50, 50]);
  b.drain(); // b reads again: it takes the next ones
  for (let i = 0; i < 4; i++) c.publish("/q", i);
  assert.deepEqual([a.written.length, b.written.length], [50, 54]);
});

Deno.test("broker queue group: a member that never reads does not take half the group's messages", async () => {
  await withBroker(async (b) => {
    const alice = await BrokerClient.connect(b.port);
    const pub = await BrokerClient.connect(b.port);
    // Mallory subscribes with drop-oldest, then never reads (her socket fills: a few MB).
    const mallory = await rawSubscriber(b.port, { topic: "/q", group: "g", policy: "drop-oldest" });
    try {
      await alice.subscribe("/q", { group: "g" });
      const value = "m".repeat(1000);
      const n = 30_000;
      for (let i = 0; i < n; i += 500) {
        for (let k = i; k < i + 500; k++) pub.publish("/q/x", value);
        await pub.confirm("/other", 0, false);
      }
      // Before: alice got n / 2, and most of mallory's half was dropped.
      await waitFor(() => alice.deliveries.length >= 0.75 * n, 20_000, "alice's deliveries");
      const stats = await statsUntil(pub, (s) => s.queued_bytes === 0, 5000);
      assert.equal(stats.dropped, 0);
    } finally {
      closeQuietly(mallory.conn);
      alice.close();
      pub.close();
    }
  });
});

Deno.test("broker queue group: members whose frame limit no delivery fits lose no message: another member takes it", async () => {
  await withBroker(async (b) => {
    const alice = await BrokerClient.connect(b.port);
    const pub = await BrokerClient.connect(b.port);
    // 40 members say hello with a frame limit of 300 bytes: no 1 KB delivery fits (more than a
    // pick's window of 32: hostile review 36 J12).
    const small = await Promise.all(
      Array.from(
        { length: 40 },
        () => rawSubscriber(b.port, { topic: "/q", group: "g" }, { max_frame: 300 }),
      ),
    );
    try {
      await alice.subscribe("/q", { group: "g" });
      const value = "m".repeat(1000);
      const n = 2000;
      for (let i = 0; i < n; i += 500) {
        for (let k = i; k < i + 500; k++) pub.publish("/q/x", value);
        await pub.confirm("/other", 0, false);
      }
      // Before J4: each took its turn and dropped it, alice got 1/41; before L4 (hostile review
      // 38) each lost the first it refused (alice n - 40).
      await waitFor(() => alice.deliveries.length === n, 10_000, "alice's deliveries");
      const stats = await pub.stats();
      // Each refused one, counted, which went to alice.
      assert.ok(
        (stats.undeliverable as number) <= 40,
        `${stats.undeliverable} deliveries past a member's frame limit`,
      );
    } finally {
      for (const s of small) closeQuietly(s.conn);
      alice.close();
      pub.close();
    }
  });
});

Deno.test(
  "MQTT shared subscription: members whose Maximum Packet Size no delivery fits lose one message each",
  mqttOpts,
  async () => {
    await withMqttBroker(async (b) => {
      const alice = await BrokerClient.connect(b.port);
      const members = await Promise.all(
        [0, 1, 2].map(() =>
          mqttClient(b.mqttPort, { protocolVersion: 5, properties: { maximumPacketSize: 32 } })
        ),
      );
      try {
        await alice.subscribe("/q", { group: "g" });
        for (const m of members) {
          await m.subscribeAsync("$share/g/q/#", { qos: 0 });
        }
        const value = "m".repeat(1000);
        const n = 2000;
        for (let i = 0; i < n; i += 500) {
          for (let k = i; k < i + 500; k++) b.native.publish("/q/x", value);
          await b.native.confirm("/other", 0, false);
        }
        // Before: alice got a quarter, 1,500 undeliverable.
        await waitFor(() => alice.deliveries.length >= n - 3, 10_000, "alice's deliveries");
        const mqtt = await b.mqttStats();
        assert.ok(mqtt.undeliverable <= 3, `${mqtt.undeliverable} past a member's packet size`);
      } finally {
        await Promise.all(members.map((m) => m.endAsync(true)));
        alice.close();
      }
    });
  },
);

Deno.test(
  "MQTT shared subscription: members whose Maximum Packet Size is a few bytes under the packets take none of them (hostile review 38 L4)",
  mqttOpts,
  async () => {
    await withMqttBroker(async (b) => {
      const alice = await mqttClient(b.mqttPort, { protocolVersion: 5 });
      let got = 0;
      alice.on("message", () => got++);
      // A 1,000-byte value on q/x makes a 1,009-byte PUBLISH (MQTT 5, QoS 0): 1 byte under it.
      const members = await Promise.all(
        [0, 1, 2].map(() =>
          mqttClient(b.mqttPort, { protocolVersion: 5, properties: { maximumPacketSize: 1008 } })
        ),
      );
      try {
        await alice.subscribeAsync("$share/g/q/#", { qos: 0 });
        for (const m of members) await m.subscribeAsync("$share/g/q/#", { qos: 0 });
        const n = 4000;
        await publishKb(b.native, n);
        // Before: judged by the value alone (1,000 bytes, under 1,008), each kept its turn and
        // lost it: alice got a quarter, 3,000 undeliverable.
        await waitFor(() => got === n, 10_000, `alice's deliveries (${got})`);
        const mqtt = await b.mqttStats();
        assert.ok(mqtt.undeliverable <= 3, `${mqtt.undeliverable} refused by a member`);
        const groups = (await b.stats()).queue_groups as Record<string, number>;
        assert.ok(groups.rerouted >= 1, "a refused delivery went to another member");
        // Every member reads, so none holds anything unacknowledged: none is stalled.
        assert.equal(groups.stalled_sockets, 0, JSON.stringify(groups));
      } finally {
        await Promise.all(members.map((m) => m.endAsync(true)));
        await alice.endAsync(true);
      }
    });
  },
);

Deno.test("broker queue group: one message past two members' frame limit leaves them their turns (hostile review 36 J13)", async () => {
  await withBroker(async (b) => {
    const alice = await BrokerClient.connect(b.port);
    const pub = await BrokerClient.connect(b.port);
    // Alice and bob read; their hello says 64 KiB frames. A 100 KB value fits neither.
    const bob = await rawSubscriber(b.port, { topic: "/q", group: "g" }, { max_frame: 65_536 });
    let bobGot = 0;
    const reading = (async () => {
      const buf = new Uint8Array(256 * 1024);
      try {
        while (true) {
          const n = await bob.conn.read(buf);
          if (n === null) return;
          for (let i = 0; i < n; i++) if (buf[i] === 0x6d && buf[i + 1] === 0x6d) bobGot++; // "mm"
        }
      } catch {
        // Closed.
      }
    })();
    let mallory: Awaited<ReturnType<typeof rawSubscriber>> | undefined;
    try {
      await alice.subscribe("/q", { group: "g" });
      await pub.confirm("/q/big", "x".repeat(100_000));
      await pub.confirm("/q/big", "x".repeat(100_000));
      // Mallory joins, never reads, drop-oldest: once her socket is full she is behind.
      mallory = await rawSubscriber(b.port, { topic: "/q", group: "g", policy: "drop-oldest" });
      const n = 20_000;
      for (let i = 0; i < n; i += 500) {
        for (let k = i; k < i + 500; k++) pub.publish("/q/x", "m".repeat(1000));
        await pub.confirm("/other", 0, false);
      }
      // Before: a member that once refused ranked below one that is behind, so every message
      // went to mallory and her policy dropped it (alice 0). Mallory's socket holds a few MB.
      await waitFor(() => alice.deliveries.length >= n / 4, 10_000, "alice's deliveries");
      assert.ok(bobGot > 0, "bob takes his turns too");
    } finally {
      closeQuietly(mallory?.conn);
      closeQuietly(bob.conn);
      await reading;
      alice.close();
      pub.close();
    }
  });
});

Deno.test("broker queue group: values that shrink a byte at a time cost a member whose frame limit refused one a few refusals, not one each (hostile review 38b M4)", async () => {
  await withBroker(async (b) => {
    const alice = await BrokerClient.connect(b.port);
    const pub = await BrokerClient.connect(b.port);
    const small = await Promise.all(
      Array.from(
        { length: 8 },
        () => rawSubscriber(b.port, { topic: "/q", group: "g" }, { max_frame: 300 }),
      ),
    );
    try {
      await alice.subscribe("/q", { group: "g" });
      const before = (await pub.stats()).queue_groups as Record<string, number>;
      const n = 400;
      for (let i = 0; i < n; i++) pub.publish("/q/x", "m".repeat(4000 - i));
      await pub.confirm("/other", 0, false);
      await waitFor(() => alice.deliveries.length === n, 10_000, "alice's deliveries");
      const stats = await pub.stats();
      const groups = stats.queue_groups as Record<string, number>;
      // Before: each refusal marked a member unfit for values as large or larger, so each value a
      // byte smaller was offered to every member again: about 8 refusals a publish, none lost.
      const rerouted = groups.rerouted - before.rerouted; // counted process-wide
      assert.ok(
        (stats.undeliverable as number) <= 16 && rerouted <= 16,
        `${stats.undeliverable} refused, ${rerouted} rerouted`,
      );
    } finally {
      for (const s of small) closeQuietly(s.conn);
      alice.close();
      pub.close();
    }
  });
});

Deno.test("Group.pick(load): past a long run of UNFIT members, later picks look at a window, not the group (hostile review 37 K4)", async (t) => {
  for (const fitLoad of [0, 5]) {
    await t.step(`the one fit member's load ${fitLoad}`, () => {
      const n = 20_000;
      const loads = Array.from({ length: n }, (_, i) => (i === n - 7 ? fitLoad : UNFIT));
      const { group: g } = group(loads);
      let looked = 0;
      const load = (m: Member) => (looked++, m.load);
      assert.equal(
        g.pick(load).name,
        `m${n - 7}`,
        "the first pick finds it, looking as far as it must",
      );
      const most = [];
      for (let p = 0; p < 1_000; p++) {
        looked = 0;
        assert.equal(
          g.pick(load).name,
          `m${n - 7}`,
          `pick ${p}: the fit member takes every message`,
        );
        most.push(looked);
      }
      // Before the fix every pick looked at every member from the rotation's place to the fit one.
      assert.ok(
        Math.max(...most) <= PICK_WINDOW + 2,
        `at most a window and the fit member: ${Math.max(...most)}`,
      );
    });
  }
});

Deno.test("Group.pick(load): members on trial joining and leaving past a window never take a message while one member keeps up (hostile review 38b M2)", () => {
  // m0 reads; 40 members on trial (their budget spent) come and go ahead of it in turn.
  const t = new SubscriptionTree<Member>();
  const member = (i: number, load: number) => ({
    sid: i + 1,
    name: `m${i}`,
    segments: topicSegments("/jobs"),
    group: "g",
    load,
  });
  let sid = 0;
  const thieves = Array.from({ length: 40 }, () => member(++sid, UNPROVEN));
  for (const m of thieves) t.add(m);
  t.add(member(0, 0));
  const g = t.match(["jobs"]).groups[0];
  const picks = new Map<string, number>();
  for (let p = 0; p < 2_000; p++) {
    const name = g.pick((m) => m.load).name;
    picks.set(name, (picks.get(name) ?? 0) + 1);
    // One leaves, a new one joins: every other member's place shifts.
    t.remove(thieves.shift()!);
    const m = member(++sid, UNPROVEN);
    thieves.push(m);
    t.add(m);
  }
  // Before: the reader's place moved at every change, the pick lost it and a thief of the window
  // took most messages.
  assert.equal(picks.get("m0"), 2_000, JSON.stringify([...picks].slice(0, 5)));
});

Deno.test("Group.pick(load): a member on trial is given a message only after a pick looked at one that keeps up (hostile review 38b M2)", () => {
  // The reader is past the first window and no pick found it yet.
  const loads = [...Array.from({ length: 50 }, () => UNPROVEN), 0];
  const { group: g } = group(loads);
  const picks = Array.from({ length: 10 }, () => g.pick((m) => m.load).name);
  assert.deepEqual(picks, Array(10).fill("m50"));
});
