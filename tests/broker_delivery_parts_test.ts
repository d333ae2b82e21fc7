/**
 * A delivery's parts (frames.ts) are kept for the message being fanned
 * out, keyed by its value, topic and retained flag: never reused for a
 * message whose parts could not be made.
 */
import assert from "node:assert/strict";
import { OutBuffer } from "../wire/mod.ts";
import { forgetParts, sidTail, writeDelivery } from "../roles/broker/frames.ts";
import { Message } from "../roles/broker/mod.ts";
import { RawJson } from "../roles/broker/raw_json.ts";

const text = (s: string) => new TextEncoder().encode(s);

Deno.test("writeDelivery() of a value used after its release throws each time, never writing another message's bytes", () => {
  const tail = sidTail(7, "json");
  // A message whose deliveries were written from its parts.
  const first = new OutBuffer(0);
  writeDelivery(first, new Message("/a", RawJson.borrow(text('"first value"'))), "json", tail);
  const written = new TextDecoder().decode(first.bytes.subarray(4, first.length));
  assert.deepEqual(JSON.parse(written).params, { topic: "/a", value: "first value", sid: 7 });
  // Then one whose value was released before its deliveries (a bug in its caller).
  const released = RawJson.borrow(text('"second"'));
  released.release();
  const msg = new Message("/b", released);
  for (let i = 0; i < 3; i++) {
    const out = new OutBuffer(0);
    assert.throws(() => writeDelivery(out, msg, "json", tail), /used after release/);
    assert.equal(out.length, 0, `delivery ${i + 1}: nothing written`);
  }
  forgetParts();
});
