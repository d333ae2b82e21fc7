/**
 * h48 P9: a benchmark's and `--random`'s tally of `by` is bounded: the
 * first 100 names, each cut to 64 characters (a surrogate pair never split),
 * the rest as `others ×N` (`by_others` in `--json`).
 */
import assert from "node:assert/strict";
import { BY_CHARS, BY_NAMES, ByCount, cutBy, formatBy } from "../roles/client/_common.ts";

Deno.test("ByCount keeps 100 names, cut to 64 characters, and counts the rest as others (h48 P9)", () => {
  const tally = new ByCount();
  for (let i = 0; i < 250; i++) tally.add(`worker-${i}`);
  for (let i = 0; i < 3; i++) tally.add("worker-0"); // A kept name still counts.
  assert.equal(tally.names.size, BY_NAMES);
  assert.equal(tally.names.get("worker-0"), 4);
  assert.equal(tally.others, 150);
  assert.deepEqual(tally.toJson().by_others, 150);
  const line = formatBy(tally.names, tally.others);
  assert.match(line, /^worker-0 ×4, worker-1 ×1, /);
  assert.match(line, /, others ×150$/);
  assert.equal(formatBy(new Map(), 0), "none");
  assert.equal(new ByCount().toJson().by_others, undefined);

  // Two long names that share their first 64 characters count as one.
  const long = new ByCount();
  long.add("a".repeat(200) + "-1");
  long.add("a".repeat(200) + "-2");
  assert.deepEqual([...long.names], [["a".repeat(BY_CHARS) + "…", 2]]);
  // A pair (an emoji) across the cut is dropped whole, not split into a lone surrogate.
  const cut = cutBy("b".repeat(BY_CHARS - 1) + "😀" + "c");
  assert.equal(cut, "b".repeat(BY_CHARS - 1) + "…");
  assert.equal(cutBy("short"), "short");
});
