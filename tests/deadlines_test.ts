/**
 * The write deadline's minimum-progress rule (wire/deadlines.ts): while
 * output waits on a peer, it must take 64 KiB (or all that waited, if less)
 * per write timeout. A peer that takes nothing, or a trickle, is cut off;
 * one that keeps up, or that has taken everything (no write in flight), is
 * not. Pure logic: ticks and
 * byte counts as FramedConn feeds them.
 */
import assert from "node:assert/strict";
import { Deadlines, MIN_PROGRESS_BYTES, WriteProgress } from "../wire/deadlines.ts";

const KIB = 1024;

/** Ticks of 250 ms with a write in flight, the peer taking `perTick` bytes each; the tick it is cut at. */
function cutAt(perTick: number, timeoutMs: number, ticks: number): number {
  const p = new WriteProgress();
  let out = 0;
  for (let t = 1; t <= ticks; t++) {
    out += perTick;
    if (p.tick(250, true, out, 10_000_000, timeoutMs)) return t;
  }
  return -1;
}

Deno.test("write progress: a peer taking nothing is cut after the write timeout", () => {
  assert.equal(cutAt(0, 1000, 100), 4);
});

Deno.test("write progress: a trickle (48 KiB per write timeout) is cut; 64 KiB per write timeout is kept", () => {
  assert.equal(cutAt(12 * KIB, 1000, 100), 4, "12 KiB a tick, 4 ticks a timeout");
  assert.equal(cutAt(16 * KIB, 1000, 1000), -1, "16 KiB a tick: 64 KiB a timeout");
  assert.equal(MIN_PROGRESS_BYTES, 64 * KIB);
});

Deno.test("write progress: a lump of progress starts the count again; no write in flight is never judged", () => {
  const p = new WriteProgress();
  const MB = 10_000_000;
  assert.equal(p.tick(750, true, 0, MB, 1000), false);
  assert.equal(p.tick(200, true, 64 * KIB, MB, 1000), false, "64 KiB taken: counted afresh");
  assert.equal(p.waited, 0);
  assert.equal(p.tick(900, true, 64 * KIB + 10, MB, 1000), false);
  assert.equal(p.tick(50_000, false, 64 * KIB + 10, MB, 1000), false, "nothing waits on it");
  assert.equal(p.tick(900, true, 64 * KIB + 10, MB, 1000), false);
  assert.equal(p.tick(100, true, 64 * KIB + 30, MB, 1000), true);
  assert.match(p.describe(1000), /^took 20 bytes in 1000 ms, less than the 65536 waiting/);
});

Deno.test("write progress: a peer keeping up with a slow stream is not judged by a write in flight at each tick", () => {
  const p = new WriteProgress();
  let out = 0;
  for (let t = 0; t < 100; t++) {
    out += 300; // 1.2 KB/s, each tick finding a write of 300 bytes in flight
    assert.equal(p.tick(250, true, out, 300, 1000), false, `tick ${t}`);
  }
});

Deno.test("deadlines: a trickle reader is stalled, with the reason in its SLOW_CONSUMER error", () => {
  const d = new Deadlines(1000, 3000);
  let out = 0;
  let due = "none";
  for (let t = 0; t < 4; t++) {
    out += 8 * KIB;
    due = d.check(250, true, true, true, out, 5_000_000, -1);
  }
  assert.equal(due, "stalled");
  const err = d.error("stalled", 5_000_000, 0);
  assert.match(err.message, /Peer took 32768 bytes in 1000 ms, less than the 65536 waiting/);
  assert.match(err.message, /5000000 bytes pending/);
});
