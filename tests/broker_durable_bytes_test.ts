/**
 * A MessagePack retained value published fire-and-forget (the byte fast
 * path keeps it as it came) reaches subscribers the same after a restart
 * on `--data-dir` as before it: its members in their order, a float32 as a
 * float32 (hostile review 40a T8: read back decoded and encoded again,
 * `{b, a, "2"}` came back `{"2", b, a}` to JSON and MessagePack
 * subscribers alike), and a number alone as it came (-0 came back 0,
 * hostile46b M-B4).
 */
import assert from "node:assert/strict";
import { frame, jsonFrame, rawHandshake, RawReader, writeAll } from "./helpers/raw.ts";
import { startBroker } from "./helpers/broker.ts";
import { toMsgpack } from "../wire/mod.ts";

const enc = new TextEncoder();
const str = (s: string) => Uint8Array.of(0xa0 | s.length, ...enc.encode(s));

/** Values as MessagePack bytes no encoder of ours writes: map order, a float32. */
const VALUES: Record<string, { bytes: Uint8Array; json: string }> = {
  order: {
    bytes: Uint8Array.of(0x83, ...str("b"), 1, ...str("a"), 2, ...str("2"), 3),
    json: '{"b":1,"a":2,"2":3}',
  },
  float32: { bytes: Uint8Array.of(0x91, 0xca, 0x3f, 0xc0, 0, 0), json: "[1.5]" },
  // A number alone was read back decoded: -0 went out as 0 (hostile46b M-B4).
  negativeZero: { bytes: Uint8Array.of(0xcb, 0x80, 0, 0, 0, 0, 0, 0, 0), json: "-0" },
};

/** A `broker.publish` notification with `value` as its bytes, retained. */
function publish(topic: string, value: Uint8Array): Uint8Array {
  const head = Uint8Array.of(
    0x82,
    ...str("method"),
    ...str("broker.publish"),
    ...str("params"),
    0x83,
    ...str("topic"),
  );
  const topicBytes = toMsgpack(topic);
  return frame(
    Uint8Array.of(...head, ...topicBytes, ...str("value"), ...value, ...str("retain"), 0xc3),
  );
}

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** What a subscriber of `codec` to /kb gets: its answer, then the retained deliveries (the barrier too). */
async function retained(port: number, codec: "json" | "msgpack"): Promise<Uint8Array[]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new RawReader(conn);
  try {
    await rawHandshake(conn, reader, { codec });
    const subscribe = { id: 1, method: "broker.subscribe", params: { topic: "/kb" } };
    await writeAll(conn, codec === "json" ? jsonFrame(subscribe) : frame(toMsgpack(subscribe)));
    const frames: Uint8Array[] = [];
    while (frames.length < Object.keys(VALUES).length + 2) frames.push((await reader.frame())!);
    return frames;
  } finally {
    conn.close();
  }
}

/** Whether every value is in the deliveries as it was sent (JSON: its text). */
async function check(port: number, when: string): Promise<void> {
  const json = (await retained(port, "json")).map((f) => new TextDecoder().decode(f)).join("\n");
  const msgpack = await retained(port, "msgpack");
  for (const [name, v] of Object.entries(VALUES)) {
    assert.ok(json.includes(`"value":${v.json}`), `${when}: ${name} to JSON, in ${json}`);
    assert.ok(msgpack.some((f) => contains(f, v.bytes)), `${when}: ${name} to MessagePack`);
  }
}

Deno.test("broker --data-dir: a fast-path MessagePack retained value comes back as it came", async () => {
  const dir = await Deno.makeTempDir();
  try {
    let b = await startBroker({ dataDir: dir });
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
      const reader = new RawReader(conn);
      await rawHandshake(conn, reader, { codec: "msgpack" });
      for (const [name, v] of Object.entries(VALUES)) {
        await writeAll(conn, publish(`/kb/${name}`, v.bytes));
      }
      // Answered once its commit is done: the notifications before it are in it.
      const barrier = { id: 1, method: "broker.publish", params: { topic: "/kb/z", value: 0 } };
      await writeAll(conn, frame(toMsgpack(barrier)));
      await reader.frame(5000);
      conn.close();
      await check(b.port, "before the restart");
    } finally {
      await b.stop();
    }
    b = await startBroker({ dataDir: dir });
    try {
      await check(b.port, "after the restart");
    } finally {
      await b.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
