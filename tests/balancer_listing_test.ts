/**
 * `balancer.backends` in a frame whatever the names (roles/balancer/listing.ts;
 * hostile43a A15): texts cut to a budget of JSON bytes, head and tail kept,
 * and pages for a pool larger than a frame.
 */
import assert from "node:assert/strict";
import type { BackendInfo } from "../clients/contracts/mod.ts";
import { cutBytes, jsonBytes, listBackends, NAME_BYTES } from "../roles/balancer/listing.ts";
import { DistError } from "../wire/mod.ts";

function info(name: string, peer = name): BackendInfo {
  return {
    name,
    address: "127.0.9.1:40000",
    peer,
    kind: "worker",
    source: "worker port",
    state: "up",
    reason: "connected",
    since_ms: 1,
    inflight: 0,
    capacity: 16,
    served: 0,
    failures: 0,
    checks_failed: 0,
    latency_ms: { p50: 0, p90: 0, p99: 0, max: 0 },
  };
}

Deno.test("cutBytes() keeps a text that fits, and cuts one that does not to its head and tail within the budget", () => {
  const ascii = "w".repeat(200);
  assert.equal(cutBytes(ascii, NAME_BYTES), ascii);
  const cjk = "\u4e2d".repeat(195) + "12345";
  const cut = cutBytes(cjk, NAME_BYTES);
  assert.ok(jsonBytes(cut) <= NAME_BYTES, `${jsonBytes(cut)} bytes`);
  assert.ok(cut.startsWith("\u4e2d\u4e2d") && cut.endsWith("\u4e2d12345"), cut);
  assert.ok(cut.includes("\u2026"));
  // JSON's escapes count whole: a quote is 2 bytes, a lone surrogate 6.
  assert.equal(jsonBytes('"\\'), 4);
  assert.equal(jsonBytes("\ud800"), 6);
  assert.equal(jsonBytes("\u{1f600}"), 4);
  assert.ok(jsonBytes(cutBytes("\ud800".repeat(200), 100)) <= 100);
  // A surrogate pair is never split.
  const emoji = cutBytes("\u{1f600}".repeat(100), 50);
  assert.ok(jsonBytes(emoji) <= 50 && !/[\ud800-\udbff](?![\udc00-\udfff])/.test(emoji), emoji);
});

Deno.test("listBackends() fits 1,001 backends with 200-character CJK names in a 1 MiB frame (hostile43a A15)", () => {
  const list = Array.from({ length: 1001 }, (_, i) => {
    const id = String(i);
    return "\u4e2d".repeat(200 - id.length) + id;
  });
  const all = listBackends(list, (n) => info(n, n.slice(0, 128)), { maxFrame: 1024 * 1024 });
  assert.equal(all.length, 1001);
  const bytes = new TextEncoder().encode(JSON.stringify({ id: 1, result: all })).length;
  assert.ok(bytes < 1024 * 1024, `${bytes} bytes`);
  // Each still tells which it is: its tail (the id) is kept.
  assert.ok(all[1000].name.endsWith("1000"), all[1000].name);
});

Deno.test("listBackends() refuses all at once past a frame, and pages: as many as fit from offset, an empty page at the end", () => {
  const list = Array.from({ length: 300 }, (_, i) => `w${i}`);
  const maxFrame = 128 * 1024;
  assert.throws(
    () => listBackends(list, (n) => info(n, "x".repeat(128)), { maxFrame: 16 * 1024 }),
    (e: unknown) =>
      e instanceof DistError && e.code === "FRAME_TOO_LARGE" && /offset/.test(e.message),
  );
  // 300 short entries fit 128 KiB: all at once.
  assert.equal(listBackends(list, (n) => info(n), { maxFrame }).length, 300);
  const seen: string[] = [];
  for (let offset = 0;;) {
    const page = listBackends(list, (n) => info(n, "x".repeat(128)), {
      page: { offset, limit: 1000 },
      maxFrame: 16 * 1024,
    });
    if (page.length === 0) break;
    const bytes = new TextEncoder().encode(JSON.stringify({ id: 1, result: page })).length;
    assert.ok(bytes <= 16 * 1024, `${bytes} bytes`);
    seen.push(...page.map((b) => b.name));
    offset += page.length;
  }
  assert.deepEqual(seen, list);
  assert.deepEqual(
    listBackends(list, (n) => info(n), { page: { offset: 10, limit: 2 }, maxFrame }).map((b) =>
      b.name
    ),
    ["w10", "w11"],
  );
});
