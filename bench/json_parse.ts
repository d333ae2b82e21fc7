/**
 * The json-parse suite: what wire/json_parse.ts's parseJson (JSON.parse
 * worked around V8's escaped-key bug) costs beside JSON.parse, in-process.
 *
 * For each shape of text, each round times both sides back to back, in
 * alternating order, over a batch of ~25 ms each, and prints ns per parse;
 * figures are medians over the rounds, and `ratio_*` is parseJson's median
 * over JSON.parse's. Shapes: texts without a backslash (the common case:
 * one indexOf), texts with escapes in values only (the key scan), and texts
 * with an escaped key (the careful parser; JSON.parse's figure there is what
 * the bug would have cost, not a correct answer). `check_*` is the scan
 * parseJson adds before JSON.parse, timed alone: on this shared machine two
 * runs of JSON.parse itself differ by 5-15 % (A/A), more than the scan
 * costs, so the ratio alone cannot show it.
 */
import { hasEscapedKey, parseJson } from "../wire/json_parse.ts";
import { type BenchFlags, Rounds } from "./_common.ts";

function sample(escapes: boolean, n: number): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    o[`field_${i}`] = i % 3 === 0
      ? i * 1.5
      : i % 3 === 1
      ? (escapes ? `line ${i}\n"quoted" caf\u00e9 \\ ` : `text ${i} of a value, plain`)
      : { a: i, b: [true, null, `s${i}`] };
  }
  return o;
}

const rpc = (value: unknown) =>
  JSON.stringify({ id: 17, method: "publish", params: { topic: "/sensors/a/temp", value } });

/** name → text; the "key_" ones have an escaped key (the careful path). */
export const SHAPES: Record<string, string> = {
  small: rpc({ t: 21.5, unit: "C", ok: true }),
  obj_4k: rpc(sample(false, 80)),
  esc_values_4k: rpc(sample(true, 80)),
  mib_1: JSON.stringify(Array.from({ length: 9000 }, (_, i) => sample(false, 3 + (i % 4)))),
  esc_values_mib_1: JSON.stringify(['a\n"b'.repeat(200_000)]),
  key_small: rpc({ x: 1, "\n": 0 }),
  key_4k: rpc({ ...sample(true, 80), "tab\there": 1 }),
};

// One loop per side (not one loop calling either): a call site that sees both
// functions is slower for both, which is not what a decoder's call site sees.
function nsPerJsonParse(text: string): number {
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < 25) {
    for (let i = 0; i < 4; i++) JSON.parse(text);
    n += 4;
    now = performance.now();
  }
  return ((now - start) * 1e6) / n;
}

/** The check parseJson adds before JSON.parse, alone: what the common case costs. */
function nsPerCheck(text: string): number {
  let n = 0;
  let found = 0;
  const start = performance.now();
  let now = start;
  while (now - start < 25) {
    for (let i = 0; i < 64; i++) found += hasEscapedKey(text) ? 1 : 0;
    n += 64;
    now = performance.now();
  }
  if (found !== 0 && found !== n) throw new Error("hasEscapedKey changed its mind");
  return ((now - start) * 1e6) / n;
}

function nsPerParseJson(text: string): number {
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < 25) {
    for (let i = 0; i < 4; i++) parseJson(text);
    n += 4;
    now = performance.now();
  }
  return ((now - start) * 1e6) / n;
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const rounds = new Rounds();
  const count = flags.quick ? 2 : Math.max(9, flags.runs * 2);
  for (const text of Object.values(SHAPES)) {
    if (JSON.stringify(parseJson(text)) !== JSON.stringify(JSON.parse(text))) {
      throw new Error("parseJson differs from JSON.parse on a bench text");
    }
  }
  for (let r = 1; r <= count; r++) {
    for (const [name, text] of Object.entries(SHAPES)) {
      const sides: [string, (t: string) => number][] = [
        [`json_parse_${name}`, nsPerJsonParse],
        [`parse_json_${name}`, nsPerParseJson],
      ];
      if (r % 2 === 0) sides.reverse();
      for (const [key, time] of sides) rounds.add(key, time(text));
      rounds.add(`check_${name}`, nsPerCheck(text));
      await Promise.resolve();
    }
    rounds.printRound("json-parse (ns)", r);
  }
  const medians = rounds.medians();
  for (const name of Object.keys(SHAPES)) {
    medians[`ratio_${name}`] = medians[`parse_json_${name}`] / medians[`json_parse_${name}`];
    console.log(
      `json-parse ${name} (${SHAPES[name].length} chars): JSON.parse ` +
        `${medians[`json_parse_${name}`].toFixed(0)} ns, parseJson ` +
        `${medians[`parse_json_${name}`].toFixed(0)} ns, ratio ` +
        `${medians[`ratio_${name}`].toFixed(3)}; the check alone ` +
        `${medians[`check_${name}`].toFixed(1)} ns`,
    );
  }
  return medians;
}
