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

interface TopicsPage {
  topics: { topic: string }[];
  truncated: boolean;
  next?: string;
}

/** Every page of `broker.topics` under `prefix`, following `next`. */
async function allPages(peer: Peer, params: Record<string, unknown>): Promise<TopicsPage[]> {
  const pages: TopicsPage[] = [];
  let after: string | undefined;
  for (let i = 0; i < 1000; i++) {
    const page = await peer.call("broker.topics", { ...params, after }) as TopicsPage;
    pages.push(page);
    if (page.next === undefined) return pages;
    after = page.next;
  }
  throw new Error("No end after 1,000 pages");
}

Deno.test("broker.topics pages of 3 KB names fit a frame and page through every topic", async () => {
  await withBroker(async (b) => {
    const peer = await json(b.port);
    try {
      await makeTopics(peer, 1100);
      const pages = await allPages(peer, { prefix: "/long" });
      assert.ok(pages.length >= 3, `${pages.length} pages`);
      assert.equal(pages[0].truncated, true);
      const names = pages.flatMap((p) => p.topics.map((t) => t.topic));
      const want = ["/long/last", ...Array.from({ length: 1100 }, (_, j) => longName(j))];
      assert.deepEqual(new Set(names), new Set(want));
      assert.equal(names.length, want.length);
    } finally {
      peer.close();
    }
  });
});

Deno.test("broker.topics at the largest limit (10,000) answers within the frame limit, with next", async () => {
  await withBroker(async (b) => {
    const peer = await json(b.port);
    try {
      // 3,000 entries are ~370 KB: past this broker's 256 KiB frames (10,000 pass 1 MiB).
      for (let j = 0; j < 3000; j++) {
        peer.notify("broker.publish", { topic: `/t/${j % 100}/${j}`, value: 1, retain: false });
      }
      await peer.call("broker.publish", { topic: "/t/last", value: 1, retain: false });
      const first = await peer.call("broker.topics", { prefix: "/t", limit: 10_000 }) as TopicsPage;
      assert.equal(first.truncated, true);
      assert.notEqual(first.next, undefined);
      const pages = await allPages(peer, { prefix: "/t", limit: 10_000 });
      const names = pages.flatMap((p) => p.topics.map((t) => t.topic));
      assert.equal(new Set(names).size, names.length);
      assert.equal(names.filter((n) => /^\/t\/\d+\/\d+$/.test(n)).length, 3000);
    } finally {
      peer.close();
    }
  }, { maxFrame: 256 * 1024 });
});
