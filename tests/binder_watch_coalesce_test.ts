/**
 * binder.watch against watchers that do not read (hostile35 H5): every
 * change of a large list went to every watcher, encoded for each and queued
 * behind what it had not read: 40 such watchers and one change every 50 ms
 * took a binder from 104 to 965 MiB in 24 s. A watcher needs only the newest
 * list: one that has not taken its last one gets the newest when it does,
 * the list is encoded once for all, and memory stays near a list per watcher.
 */
import assert from "node:assert/strict";
import { connectTo, reg, startBinder, waitUntil } from "./helpers/binder.ts";
import { jsonFrame } from "./helpers/raw.ts";

/** About 4 KB of meta: 200 instances make a list of about 850 KB. */
const meta = (k: number) => ({ note: String(k).padEnd(4000, "m") });
const MiB = 1024 * 1024;

/**
 * A connection that watches `compute` and then reads nothing until told; it
 * pings every 500 ms, so it is not cut for silence.
 */
async function lazyWatcher(
  port: number,
  name: string,
  timers: ReturnType<typeof setInterval>[],
): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ port });
  const hello = { op: "hello", v: 1, codec: "json", role: "client", name, heartbeat: 60_000 };
  await conn.write(jsonFrame(hello));
  await conn.write(jsonFrame({ id: 1, method: "binder.watch", params: { service: "compute" } }));
  const ping = jsonFrame({ method: "ping" });
  timers.push(setInterval(() => conn.write(ping).catch(() => {}), 500));
  return conn;
}

/**
 * Reads `conn` until it is quiet for `quietMs` (less than the binder's 1 s
 * heartbeat) or for 10 s at most; the `binder.changed` notifications in it.
 */
async function readChanged(conn: Deno.TcpConn, quietMs: number) {
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(1 << 20);
  const t0 = performance.now();
  while (performance.now() - t0 < 10_000) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      conn.read(chunk),
      new Promise<"quiet">((r) => timer = setTimeout(() => r("quiet"), quietMs)),
    ]);
    clearTimeout(timer);
    if (n === "quiet" || n === null) break;
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
  }
  const changed: { instances: { port: number; meta: { note: string } }[] }[] = [];
  const text = new TextDecoder();
  for (let off = 0; off + 4 <= buf.length;) {
    const len = new DataView(buf.buffer, off).getUint32(0);
    if (off + 4 + len > buf.length) break;
    const msg = JSON.parse(text.decode(buf.subarray(off + 4, off + 4 + len)));
    if (msg.method === "binder.changed") changed.push(msg.params);
    off += 4 + len;
  }
  return changed;
}

Deno.test("binder.watch: watchers that do not read hold a list or so each, and get the newest when they read", async () => {
  const b = await startBinder();
  const conns: Deno.TcpConn[] = [];
  const timers: ReturnType<typeof setInterval>[] = [];
  try {
    for (let i = 0; i < 200; i++) {
      await b.call("binder.register", reg(1000 + i, { meta: meta(i), ttl_ms: 600_000 }));
    }
    for (let i = 0; i < 20; i++) conns.push(await lazyWatcher(b.port, `w${i}`, timers));
    const late = conns[0];
    // A watcher that reads: it must still hear of the last change.
    let last = "";
    const reader = await connectTo(b.address, "client", (method, params) => {
      if (method !== "binder.changed") return;
      const list = (params as { instances: { port: number; meta: { note: string } }[] }).instances;
      last = list.find((i) => i.port === 1000)!.meta.note;
    });
    await reader.call("binder.watch", { service: "compute" });
    await new Promise((r) => setTimeout(r, 300));
    const before = Deno.memoryUsage().rss;
    let peak = before;
    // Changes for 4 s: well within the write deadline (10 s), so no watcher is cut meanwhile.
    const t0 = performance.now();
    let n = 0;
    while (performance.now() - t0 < 4000) {
      await b.call("binder.register", reg(1000, { meta: meta(1000 + n++), ttl_ms: 600_000 }));
      await new Promise((r) => setTimeout(r, 50));
      peak = Math.max(peak, Deno.memoryUsage().rss);
    }
    const final = meta(1000 + n - 1).note;
    // 20 lists of 850 KB are 17 MB; queued per change they were hundreds (with two cores, 400+ MB).
    const grew = (peak - before) / MiB;
    assert.ok(grew < 120, `RSS grew ${grew.toFixed(0)} MiB with 20 watchers that do not read`);
    await waitUntil(() => last === final, "the reading watcher to hear of the last change");
    // The late reader gets what its socket took before it stopped, then the newest list.
    const changed = await readChanged(late, 600);
    assert.ok(changed.length > 0);
    const newest = changed.at(-1)!.instances.find((i) => i.port === 1000)!;
    assert.equal(newest.meta.note, final);
    reader.close();
  } finally {
    for (const t of timers) clearInterval(t);
    for (const c of conns) c.close();
    await b.stop();
  }
});
