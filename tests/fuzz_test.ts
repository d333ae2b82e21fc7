/**
 * Property-based fuzzing of wire/ with fast-check: random and mutated byte
 * streams and messages, split at random points, through the frame decoder,
 * both codecs and a live Peer over TCP. Seeded (a failure replays with the
 * same seed) and bounded in runs and time.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  dispatch,
  DistError,
  FrameDecoder,
  jsonCodec,
  listen,
  type Listener,
  msgpackCodec,
  OutBuffer,
  type Peer,
} from "../wire/mod.ts";
import { OPERATIONS } from "../roles/ops.ts";
import { ops } from "../clients/contracts/mod.ts";
import {
  closeQuietly,
  concat,
  frame,
  HELLO,
  jsonFrame,
  RawReader,
  writeAll,
} from "./helpers/raw.ts";

const SEED = 20261122;

/** Cuts `bytes` at the given points (taken modulo its length), in order. */
function split(bytes: Uint8Array, points: number[]): Uint8Array[] {
  const cuts = [...new Set(points.map((p) => bytes.length === 0 ? 0 : p % bytes.length))]
    .sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const cut of cuts) {
    if (cut > from) chunks.push(bytes.subarray(from, cut));
    from = Math.max(from, cut);
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

function depthOf(value: unknown): number {
  if (value === null || typeof value !== "object") return 0;
  let deepest = 0;
  for (const v of Object.values(value)) deepest = Math.max(deepest, depthOf(v));
  return deepest + 1;
}

Deno.test("FrameDecoder: any frames split at any points come back whole and in order", () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 30 }),
      fc.array(fc.nat(), { maxLength: 40 }),
      (payloads, points) => {
        const decoder = new FrameDecoder(1024);
        const got: number[][] = [];
        for (const chunk of split(concat(payloads.map(frame)), points)) {
          // A fresh copy per push, overwritten after: the decoder must not keep views of it.
          const copy = chunk.slice();
          decoder.push(copy);
          let f: Uint8Array | null;
          while ((f = decoder.next()) !== null) got.push([...f]);
          copy.fill(0xee);
        }
        assert.deepEqual(got, payloads.map((p) => [...p]));
        assert.equal(decoder.buffered, 0);
      },
    ),
    { seed: SEED, numRuns: 300 },
  );
});

Deno.test("FrameDecoder: random bytes only ever yield frames or FRAME_TOO_LARGE", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 4000 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      (bytes, points) => {
        const decoder = new FrameDecoder(512);
        try {
          for (const chunk of split(bytes, points)) {
            decoder.push(chunk);
            let f: Uint8Array | null;
            while ((f = decoder.next()) !== null) assert.ok(f.length <= 512);
            // What it holds is bounded by one frame, whatever it was fed.
            assert.ok(decoder.buffered <= 512 + 4 + chunk.length);
          }
        } catch (err) {
          assert.ok(err instanceof DistError, `not a DistError: ${err}`);
          assert.equal(err.code, "FRAME_TOO_LARGE");
        }
      },
    ),
    { seed: SEED, numRuns: 300 },
  );
});

/** A valid message, then bytes of it flipped, cut or repeated. */
const mutated = (encode: (v: unknown) => Uint8Array) =>
  fc.tuple(
    fc.record({ id: fc.nat(), method: fc.string(), params: fc.jsonValue({ maxDepth: 5 }) }),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
    fc.nat(),
  ).map(([msg, flips, cut]) => {
    const bytes = encode(msg).slice();
    for (const [at, value] of flips) if (bytes.length > 0) bytes[at % bytes.length] = value;
    return cut % 3 === 0 ? bytes.subarray(0, cut % (bytes.length + 1)) : bytes;
  });

for (const codec of [jsonCodec, msgpackCodec]) {
  const encode = (v: unknown) => {
    const out = new OutBuffer(0);
    codec.writeFrame(out, v, 1 << 20);
    return out.bytes.subarray(4, out.length);
  };
  Deno.test(`${codec.name} codec: any bytes decode to a value or BAD_REQUEST, never deeper than 64`, () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.uint8Array({ maxLength: 2000 }), mutated(encode)),
        (bytes) => {
          try {
            const value = codec.decode(bytes);
            assert.ok(depthOf(value) <= 64, "depth bounded");
          } catch (err) {
            assert.ok(err instanceof DistError, `not a DistError: ${err}`);
            assert.equal(err.code, "BAD_REQUEST");
          }
        },
      ),
      { seed: SEED, numRuns: 1000 },
    );
  });
}

/** One item of a fuzzed conversation: a well-formed request, or garbage of some kind. */
type Item =
  | { kind: "request"; method: string; params: unknown }
  | { kind: "bytes"; bytes: Uint8Array } // raw bytes, not framed: desynchronises the stream
  | { kind: "frame"; bytes: Uint8Array } // a frame of random bytes
  | { kind: "json"; value: unknown }; // a frame of valid JSON that is no valid message

const item: fc.Arbitrary<Item> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.oneof(
      fc.record({
        kind: fc.constant("request" as const),
        method: fc.constant("echo"),
        params: fc.tuple(fc.string()),
      }),
      fc.record({
        kind: fc.constant("request" as const),
        method: fc.constantFrom("add", "sub", "mul", "div"),
        params: fc.tuple(fc.double(), fc.double()),
      }),
      fc.record({
        kind: fc.constant("request" as const),
        method: fc.constant("sum"),
        params: fc.jsonValue({ maxDepth: 3 }),
      }),
      fc.record({
        kind: fc.constant("request" as const),
        method: fc.string({ maxLength: 300 }),
        params: fc.jsonValue({ maxDepth: 3 }),
      }),
      fc.record({
        kind: fc.constant("request" as const),
        method: fc.constant("sleep"),
        params: fc.tuple(fc.integer({ min: 0, max: 20 })),
      }),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("frame" as const),
      bytes: fc.uint8Array({ maxLength: 200 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("json" as const),
      value: fc.jsonValue({ maxDepth: 3 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("bytes" as const),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }),
    }),
  },
);

function serve(): { listener: Listener; peers: Peer[] } {
  const peers: Peer[] = [];
  const listener = listen({
    host: "127.0.0.1",
    port: 0,
    role: "server",
    name: "fuzz",
    maxFrame: 64 * 1024,
    onPeer: (p) => peers.push(p),
    onRequest: dispatch([ops], OPERATIONS).onRequest,
  });
  return { listener, peers };
}

Deno.test("a live Peer answers every well-formed request exactly once, or closes with a reason", async () => {
  const { listener, peers } = serve();
  const rssBefore = Deno.memoryUsage().rss;
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.array(item, { minLength: 1, maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        async (items, points) => {
          const ids = new Set<number>();
          const parts: Uint8Array[] = [jsonFrame(HELLO)];
          items.forEach((it, i) => {
            if (it.kind === "request") {
              ids.add(i);
              parts.push(jsonFrame({ id: i, method: it.method, params: it.params }));
            } else if (it.kind === "json") {
              // Valid JSON, but an array or a bare value is no message.
              parts.push(jsonFrame(Array.isArray(it.value) ? it.value : [it.value]));
            } else if (it.kind === "frame") parts.push(frame(it.bytes));
            else parts.push(it.bytes);
          });
          const desync = items.some((it) => it.kind === "bytes");
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
          const reader = new RawReader(conn);
          const answered = new Map<number, number>();
          try {
            const writing = (async () => {
              for (const chunk of split(concat(parts), points)) await writeAll(conn, chunk);
            })().catch(() => {}); // the server may hang up first: that is allowed
            let closed = false;
            const welcome = await reader.json(5000);
            if (welcome === null) closed = true;
            while (!closed && [...ids].some((id) => !answered.has(id))) {
              const payload = await reader.frame(5000);
              if (payload === null) {
                closed = true;
                break;
              }
              const msg = JSON.parse(new TextDecoder().decode(payload));
              if (msg.method === "ping") continue;
              if (typeof msg.id === "number") {
                assert.ok(ids.has(msg.id), `an answer to ${msg.id}, which was no request`);
                answered.set(msg.id, (answered.get(msg.id) ?? 0) + 1);
              } else {
                assert.equal(msg.id, null, "errors about no request carry id null");
              }
            }
            await writing;
            for (const [id, n] of answered) assert.equal(n, 1, `request ${id} answered ${n} times`);
            if (!closed) {
              assert.equal(answered.size, ids.size, "every request answered");
            } else {
              // Closed early: only for a reason the stream gave (garbage).
              const hadGarbage = items.some((it) => it.kind !== "request");
              assert.ok(hadGarbage || desync, "closed though every message was well-formed");
              const serverSide = peers.at(-1);
              if (serverSide !== undefined && serverSide.isClosed) {
                assert.ok(serverSide.conn.closeReason, "the server says why it closed");
              }
            }
          } finally {
            closeQuietly(conn);
          }
        },
      ),
      { seed: SEED, numRuns: 120, interruptAfterTimeLimit: 20_000 },
    );
    // No connection is left behind on the server once its client is gone.
    const end = performance.now() + 3000;
    while (listener.peers.size > 0 && performance.now() < end) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(listener.peers.size, 0, "server-side connections all closed");
    const grown = Deno.memoryUsage().rss - rssBefore;
    assert.ok(grown < 200 * 1024 * 1024, `RSS grew ${Math.round(grown / 1048576)} MiB`);
  } finally {
    await listener.close(0);
  }
});
