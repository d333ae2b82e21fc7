/**
 * PublishMemo after a run of misses (a publisher whose layout keeps
 * changing) tries one frame in RETRY_EVERY, not each: a publisher that
 * then settles on one layout is still matched again, soon and from then on
 * every time, and a frame that is not a kept one's is never matched.
 */
import assert from "node:assert/strict";
import { PublishMemo } from "../wire/publish_memo.ts";

const enc = new TextEncoder();
const PREFIX = '{"method":"broker.publish","params":{"topic":"/t","value":';

function publish(value: string): { b: Uint8Array; start: number; end: number } {
  const b = enc.encode(`${PREFIX}${value},"retain":false}}`);
  return { b, start: PREFIX.length, end: PREFIX.length + value.length };
}

/** One publish through the memo as readPublish does it: matched, else read in full and kept. */
function offer(memo: PublishMemo, value: string): boolean {
  const { b, start, end } = publish(value);
  const kept = memo.match(b);
  if (kept !== undefined) {
    assert.equal(kept.valueStart, start);
    assert.equal(kept.valueEnd, end);
    return true;
  }
  memo.checked(b, { valueStart: start, valueEnd: end, topic: "/t", retain: false }, false);
  return false;
}

Deno.test("after changing layouts, a settled publisher is matched again and stays matched", () => {
  for (const changing of [9, 40, 300, 1000]) {
    const memo = new PublishMemo();
    // Layouts of one length that differ outside digits: none matches another.
    for (let i = 0; i < changing; i++) {
      assert.equal(
        offer(memo, `{"${String.fromCharCode(97 + (i % 26))}${i % 2 ? "x" : "y"}":1}`),
        false,
      );
    }
    let first = -1;
    for (let i = 0; i < 600; i++) {
      const hit = offer(memo, `{"id":${1000 + (i % 9000)},"t":2${i % 10}.5}`);
      if (hit && first < 0) first = i;
      if (first >= 0) {
        assert.ok(hit, `after ${changing} misses: frame ${i} matched once ${first} was`);
      }
    }
    assert.ok(first >= 0 && first <= 300, `after ${changing} misses: matched again at ${first}`);
  }
});

Deno.test("a frame that differs outside digits is never matched, tried or not", () => {
  const memo = new PublishMemo();
  const letter = (n: number) => String.fromCharCode(97 + (n % 26));
  for (let i = 0; i < 2000; i++) {
    // Same length as the kept ones, letters never seen together before: always a full read.
    const key = `k${letter(i)}${letter(i / 26)}${letter(i / 676)}`;
    assert.equal(offer(memo, `{"${key}":${i % 10}}`), false, `frame ${i}`);
  }
});
