/**
 * The broker's answers that list topic names always fit a frame, however
 * long the names (hostile33 Y11 subscribe, Y3 broker.topics): a name may be
 * 1,024 characters of 3 bytes each, so 1,000 of them passed the 1 MiB frame
 * limit; the subscription was made anyway and its answer refused.
 */
import assert from "node:assert/strict";
import { codecByName, dial, type Peer } from "../wire/mod.ts";
import { connect } from "../clients/mod.ts";
import { withBroker } from "./helpers/broker.ts";

/** `/long/<6 digits><987 × €>`: 1,000 characters, ~2,970 bytes of UTF-8. */
function longName(j: number): string {
  return `/long/${String(j).padStart(6, "0")}${"€".repeat(987)}`;
}

function json(port: number): Promise<Peer> {
  return dial({ host: "127.0.0.1", port }, {
    role: "client",
    name: "t",
    codec: codecByName("json"),
  });
}

async function makeTopics(peer: Peer, n: number): Promise<void> {
  for (let j = 0; j < n; j++) {
    peer.notify("broker.publish", { topic: longName(j), value: 1, retain: false });
  }
  // A confirmed publish after them: the notifications before it are done.
  await peer.call("broker.publish", { topic: "/long/last", value: 1, retain: false });
}

interface SubscribeAnswer {
  sid: number;
  topics: string[];
  topic_count: number;
  truncated?: boolean;
}

Deno.test("broker.subscribe over 1,100 topics of 3 KB names answers a cut list (truncated) and nothing leaks", async () => {
  await withBroker(async (b) => {
    const peer = await json(b.port);
    const app = await connect(`127.0.0.1:${b.port}`, { timeout: 5000 });
    try {
      await makeTopics(peer, 1100);
      const answer = await peer.call("broker.subscribe", { topic: "/long" }) as SubscribeAnswer;
      assert.equal(answer.topic_count, 1101);
      assert.equal(answer.truncated, true);
      assert.ok(
        answer.topics.length > 10 && answer.topics.length < 1101,
        `${answer.topics.length}`,
      );
      for (const t of answer.topics) assert.ok(t.startsWith("/long/"), t);
      // The client library subscribes and receives too.
      const sub = await app.subscribe("/long");
      await peer.call("broker.publish", { topic: "/long/live", value: "L", retain: false });
      const it = sub[Symbol.asyncIterator]();
      const got = await it.next();
      assert.equal((got.value as { value: unknown }).value, "L");
      const stats = await peer.call("sys.stats", {}) as { subscriptions: number };
      assert.equal(stats.subscriptions, 2);
    } finally {
      app.close();
      peer.close();
    }
  });
});

Deno.test("broker.subscribe with a small --max-frame cuts the list to fit, in MessagePack too", async () => {
  await withBroker(async (b) => {
    const peer = await json(b.port);
    const mp = await dial({ host: "127.0.0.1", port: b.port }, {
      role: "client",
      name: "mp",
      codec: codecByName("msgpack"),
      maxFrame: 64 * 1024,
    });
    try {
      await makeTopics(peer, 200);
      for (const p of [peer, mp]) {
        const answer = await p.call("broker.subscribe", { topic: "/long" }) as SubscribeAnswer;
        assert.equal(answer.truncated, true);
        assert.ok(
          answer.topics.length >= 10 && answer.topics.length < 30,
          `${answer.topics.length}`,
        );
      }
      const stats = await peer.call("sys.stats", {}) as { subscriptions: number };
      assert.equal(stats.subscriptions, 2);
    } finally {
      mp.close();
      peer.close();
    }
  }, { maxFrame: 64 * 1024 });
});
