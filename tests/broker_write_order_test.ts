/**
 * What one connection gets comes in exactly the order the broker made it:
 * deliveries, the answers to its own requests (confirmed publishes on the
 * fast path and decoded, errors), topic_created and undeliverable notices
 * and the errors for bad notifications, however they interleave in one
 * read. The broker appends a turn's deliveries to a connection and counts
 * them once at the end of the turn (FramedConn.sendWith with `later`); every other
 * frame written meanwhile must still land after the deliveries made before
 * it and before those made after it.
 */
import assert from "node:assert/strict";
import { withBroker } from "./helpers/broker.ts";
import { concat, jsonFrame, rawHandshake, RawReader, writeAll } from "./helpers/raw.ts";

/** Rounds in one write (each about 6 KB: the write spans many reads of the broker). */
const ROUNDS = 120;
/** The publisher's frame limit: a value of BIG characters is past it, not past the subscriber's. */
const LIMIT = 4096;
const BIG = "b".repeat(5000);
/** Bad notifications answered on one connection (NOTIFICATION_ERRORS_ANSWERED in front.ts). */
const BAD_ANSWERED = 10;

type Frame = Record<string, unknown>;

/** A raw JSON connection, welcomed, subscribed to `/o` (the subtree); returns its sid. */
async function subscriber(
  port: number,
  hello: Record<string, unknown> = {},
): Promise<{ conn: Deno.Conn; reader: RawReader; sid: number }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new RawReader(conn);
  await rawHandshake(conn, reader, { heartbeat: 60_000, ...hello });
  await writeAll(conn, jsonFrame({ id: 1, method: "broker.subscribe", params: { topic: "/o" } }));
  const answer = await reader.json(10_000);
  const sid = (answer?.result as { sid: number } | undefined)?.sid;
  assert.equal(typeof sid, "number", JSON.stringify(answer));
  return { conn, reader, sid: sid! };
}

/** One round's frames, sent by the publisher (who also subscribes to `/o`). */
function round(i: number): Uint8Array[] {
  const a = `/o/${i}/a`, b = `/o/${i}/b`;
  return [
    // Fire-and-forget on the fast path, creating a topic.
    jsonFrame({ method: "broker.publish", params: { topic: a, value: i } }),
    // Confirmed on the fast path.
    jsonFrame({ id: 1000 + i, method: "broker.publish", params: { topic: a, value: { n: i } } }),
    // A bad notification: an error frame (the first few), nothing else.
    jsonFrame({ method: "broker.publish", params: { topic: "/bad topic", value: 1 } }),
    // Confirmed, id last: decoded and dispatched, creating a topic.
    jsonFrame({ params: { value: "x", topic: b }, method: "broker.publish", id: 2000 + i }),
    // A request answered with an error.
    jsonFrame({ id: 3000 + i, method: "broker.unsubscribe", params: { sid: 999_999 } }),
    // Past the publisher's own frame limit: a notice to it, a delivery to the other.
    jsonFrame({ id: 4000 + i, method: "broker.publish", params: { topic: a, value: BIG } }),
    jsonFrame({ method: "broker.publish", params: { topic: a, value: `end ${i}` } }),
  ];
}

/** What the publisher's connection must get for round `i`, in order. */
function publisherExpects(i: number, sid: number): string[] {
  const a = `/o/${i}/a`, b = `/o/${i}/b`;
  return [
    `created ${sid} ${a}`,
    `message ${sid} ${a} ${i}`,
    `message ${sid} ${a} {"n":${i}}`,
    `answer ${1000 + i}`,
    ...(i < BAD_ANSWERED ? ["error null BAD_REQUEST"] : []),
    `created ${sid} ${b}`,
    `message ${sid} ${b} "x"`,
    `answer ${2000 + i}`,
    `error ${3000 + i} NOT_FOUND`,
    `undeliverable ${sid} ${a}`,
    `answer ${4000 + i}`,
    `message ${sid} ${a} "end ${i}"`,
  ];
}

/** What the other subscriber must get for round `i`, in order. */
function otherExpects(i: number, sid: number): string[] {
  const a = `/o/${i}/a`, b = `/o/${i}/b`;
  return [
    `created ${sid} ${a}`,
    `message ${sid} ${a} ${i}`,
    `message ${sid} ${a} {"n":${i}}`,
    `created ${sid} ${b}`,
    `message ${sid} ${b} "x"`,
    `message ${sid} ${a} "${BIG}"`,
    `message ${sid} ${a} "end ${i}"`,
  ];
}

/** A frame as one line, as the expectations above write it. */
function line(f: Frame): string {
  const p = f.params as Frame | undefined;
  switch (f.method) {
    case "broker.topic_created":
      return `created ${p!.sid} ${p!.topic}`;
    case "broker.message":
      return `message ${p!.sid} ${p!.topic} ${JSON.stringify(p!.value)}`;
    case "broker.undeliverable":
      return `undeliverable ${p!.sid} ${p!.topic}`;
  }
  if (f.error !== undefined) return `error ${f.id} ${(f.error as Frame).code}`;
  if (f.result !== undefined) return `answer ${f.id}`;
  return JSON.stringify(f);
}

/** Reads `n` frames (heartbeats skipped) as lines. */
async function take(reader: RawReader, n: number): Promise<string[]> {
  const got: string[] = [];
  while (got.length < n) {
    const f = await reader.json(20_000);
    assert.ok(
      f !== null,
      `closed after ${got.length} of ${n} frames: ${got.slice(0, 16).join(" | ")}`,
    );
    if (f.method !== "ping") got.push(line(f));
  }
  return got;
}

Deno.test("a connection gets its deliveries, answers and notices in the order they were made", async () => {
  await withBroker(async (broker) => {
    const pub = await subscriber(broker.port, { max_frame: LIMIT });
    const other = await subscriber(broker.port);
    try {
      const rounds = [];
      for (let i = 0; i < ROUNDS; i++) rounds.push(...round(i));
      const want = [], wantOther = [];
      for (let i = 0; i < ROUNDS; i++) {
        want.push(...publisherExpects(i, pub.sid));
        wantOther.push(...otherExpects(i, other.sid));
      }
      // All in one write: the broker reads it in batches of many frames each.
      const [got, gotOther] = await Promise.all([
        take(pub.reader, want.length),
        take(other.reader, wantOther.length),
        writeAll(pub.conn, concat(rounds)),
      ]);
      for (let i = 0; i < want.length; i++) {
        assert.equal(got[i], want[i], `publisher's frame ${i}`);
      }
      for (let i = 0; i < wantOther.length; i++) {
        assert.equal(gotOther[i], wantOther[i], `other subscriber's frame ${i}`);
      }
    } finally {
      pub.conn.close();
      other.conn.close();
    }
  });
});

/** More unsubscribes than one turn of the costly turns takes (4 ms, each counting at least 1/32). */
const PIPELINED = 300;

Deno.test("a request that waited for its turn is answered before anything sent after it is handled", async () => {
  await withBroker(async (broker) => {
    const pub = await subscriber(broker.port, { max_frame: LIMIT });
    try {
      // Unsubscribes of no subscription (errors), pipelined in one write: the
      // first 128 or so spend the turn, the rest wait for later turns, the
      // connection's input held meanwhile. Behind them, a subscribe (waiting
      // too) and publishes: a notice past the frame limit, and deliveries to
      // the new subscription, which must follow its answer.
      const frames: Uint8Array[] = [];
      for (let i = 0; i < PIPELINED; i++) {
        frames.push(jsonFrame({ id: i, method: "broker.unsubscribe", params: { sid: 999_999 } }));
      }
      frames.push(
        jsonFrame({ method: "broker.publish", params: { topic: "/o/big", value: BIG } }),
        jsonFrame({ id: "s", method: "broker.subscribe", params: { topic: "/p" } }),
        jsonFrame({ method: "broker.publish", params: { topic: "/p/x", value: 1 } }),
      );
      const want = [];
      for (let i = 0; i < PIPELINED; i++) want.push(`error ${i} NOT_FOUND`);
      want.push(`created ${pub.sid} /o/big`, `undeliverable ${pub.sid} /o/big`, "answer s");
      const [got] = await Promise.all([
        take(pub.reader, want.length + 2),
        writeAll(pub.conn, concat(frames)),
      ]);
      for (let i = 0; i < want.length; i++) assert.equal(got[i], want[i], `frame ${i}`);
      // The subscription's sid is known only from its answer: what it gets comes after.
      assert.match(got[want.length], /^created \d+ \/p\/x$/);
      assert.match(got[want.length + 1], /^message \d+ \/p\/x 1$/);
    } finally {
      pub.conn.close();
    }
  });
});
