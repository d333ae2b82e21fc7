/**
 * What a subscription keeps waiting costs about what `bufferBytes` counts
 * (hostile34 Z4a): a value of many small containers takes ~20× its JSON
 * bytes once parsed (`{}` is 3 bytes of JSON, ~60 of heap), so an app that
 * does not consume held 8 MiB of frames as ~400 MiB of objects. Deliveries
 * read as bytes now wait as their bytes and are parsed when taken;
 * decoded ones (MessagePack) are counted by what their objects take. The
 * app runs in its own process (tests/helpers/held_app.ts), measured after
 * a garbage collection.
 */
import assert from "node:assert/strict";
import { connect } from "../clients/mod.ts";
import { DistError, encodeFrame, listen } from "../wire/mod.ts";
import { startDist } from "./helpers/dist.ts";

const COUNT = 12;
/** Containers per value: ~300 KB of JSON (100 KB of MessagePack), ~6 MB of objects. */
const ITEMS = 100_000;
const BUFFER_BYTES = 2 * 1024 * 1024;
const MiB = 1024 * 1024;
const APP = new URL("./helpers/held_app.ts", import.meta.url).pathname;

for (const codec of ["json", "msgpack"] as const) {
  Deno.test(`subscribe() (${codec}): values of many small containers waiting take about bufferBytes, not 20× it (hostile34 Z4a)`, async () => {
    const b = await startDist(["broker", "--port", "0"]);
    const pub = await connect(b.address);
    const app = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--v8-flags=--expose-gc", APP, b.address, codec, String(BUFFER_BYTES)],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const input = app.stdin.getWriter();
    const out = app.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const line = async (): Promise<string[]> => {
      const deadline = Date.now() + 15_000;
      while (!text.includes("\n")) {
        const timer = new Promise<never>((_, reject) =>
          setTimeout(
            () => reject(new Error(`no line from the app: ${text}`)),
            deadline - Date.now(),
          )
        );
        const r = await Promise.race([out.read(), timer]);
        if (r.done) throw new Error(`the app ended: ${text}`);
        text += r.value;
      }
      const i = text.indexOf("\n");
      const l = text.slice(0, i);
      text = text.slice(i + 1);
      return l.split(" ");
    };
    try {
      const [, ready] = await line();
      for (let i = 0; i < COUNT; i++) {
        const v: unknown[] = Array.from({ length: ITEMS }, () => ({}));
        v[0] = i;
        await pub.publish("/amp/x", v, { retain: false, confirm: true });
      }
      await new Promise((r) => setTimeout(r, 700)); // time to read more, were it not paused
      await input.write(new TextEncoder().encode("measure\n"));
      const [, held, waiting, waitingBytes] = await line();
      const grown = Number(held) - Number(ready);
      // Within 1.5× of what is counted (and 2 MiB for the connection's
      // buffers). Before: JSON 7 waiting, 2 MiB counted, 44 MiB held;
      // MessagePack 2 waiting counted as 1 MiB each, 13 MiB held.
      const counted = Number(waitingBytes);
      assert.ok(
        grown < 1.5 * counted + 2 * MiB,
        `${(grown / MiB).toFixed(1)} MiB held for ${waiting} waiting, ${counted} bytes counted`,
      );
      // All arrive, whole and in order, as the iterator takes them.
      await input.write(new TextEncoder().encode(`consume ${COUNT}\n`));
      for (let i = 0; i < COUNT; i++) {
        assert.deepEqual(await line(), ["got", String(i), String(ITEMS)]);
      }
    } finally {
      await input.close().catch(() => {});
      try {
        app.kill();
      } catch {
        // Exited.
      }
      await app.status;
      await out.cancel().catch(() => {});
      pub.close();
      await b.stop();
    }
  });
}

Deno.test("a waiting delivery whose value turns out not to be JSON is skipped and counted when taken; the rest arrive", async () => {
  // Only a broken broker writes one: the frame looks like a delivery, its value does not parse.
  const frame = (value: string) =>
    encodeFrame(new TextEncoder().encode(
      `{"method":"broker.message","params":{"topic":"/t/x","value":${value},"sid":1}}`,
    ));
  const fake = listen({
    host: "127.0.0.1",
    port: 0,
    role: "broker",
    name: "broken",
    onRequest: (method, _params, peer) => {
      if (method === "sys.ping") return { pong: true };
      if (method !== "broker.subscribe") throw new DistError("NOT_FOUND", method);
      setTimeout(() => {
        for (const v of ['"a"', "[1,,2]", '"b"']) peer.conn.sendRaw(frame(v));
      }, 50);
      return { sid: 1, topic: "/t", topics: [], topic_count: 0 };
    },
  });
  const conn = await connect(`127.0.0.1:${fake.addr.port}`);
  try {
    const sub = await conn.subscribe("/t");
    await new Promise((r) => setTimeout(r, 300)); // all three wait, unparsed
    assert.equal(sub.waiting, 3);
    const got: unknown[] = [];
    for await (const m of sub) {
      got.push(m.value);
      if (got.length === 2) break;
    }
    assert.deepEqual(got, ["a", "b"]);
    assert.equal(sub.invalid, 1);
  } finally {
    conn.close();
    await fake.close(0);
  }
});
