/**
 * Review h48b L6: wire/msgpack_to_json.ts reserved 6 bytes of room per byte of any string (its
 * worst case, `\u00XX`), so one 10 MB plain string grew the scratch buffer to 64 MiB for its
 * conversion. Now the plain text's room, and the worst case for the rest from its first escape.
 */
import assert from "node:assert/strict";
import { encode } from "@msgpack/msgpack";
import { msgpackToJson } from "../wire/msgpack_to_json.ts";

const MB = 1024 * 1024;

Deno.test("msgpackToJson: a 10 MB plain string grows the scratch buffer to its size, not six times it", () => {
  const text = "a".repeat(10 * MB);
  const json = msgpackToJson(encode({ text }));
  assert.equal(json.length, 10 * MB + 11);
  // 16 MiB: the doubling past 10 MB (before: 64 MiB, for 6 x 10 MB).
  assert.ok(json.buffer.byteLength <= 16 * MB, `scratch ${json.buffer.byteLength} bytes`);
});

Deno.test("msgpackToJson: strings escaped first, last, throughout and mid-way are written whole", () => {
  const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  for (
    const s of [
      "\u0001" + "a".repeat(100_000),
      "a".repeat(100_000) + "\u0001",
      '"\\\n\u0002'.repeat(50_000),
      "x".repeat(70_000) + '\u001f"'.repeat(30_000) + "y",
    ]
  ) {
    const out = msgpackToJson(encode([s, s]));
    assert.deepEqual(JSON.parse(decoder.decode(out)), [s, s]);
  }
});
