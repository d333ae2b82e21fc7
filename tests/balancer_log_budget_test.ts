/**
 * The balancer's lines about backends it cannot reach are budgeted as its
 * other lines a peer can cause are (wire/_log.ts LogBudget): at most 20 a
 * second, the rest at debug level and counted in one line.
 */
import assert from "node:assert/strict";
import { startBalancer } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";

/** `n` loopback ports nothing listens on (each was free a moment ago). */
function deadAddresses(n: number): string[] {
  const listeners = Array.from(
    { length: n },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const addresses = listeners.map((l) => `127.0.0.1:${(l.addr as Deno.NetAddr).port}`);
  for (const l of listeners) l.close();
  return addresses;
}

Deno.test("100 unreachable backends: at most 20 'unreachable' lines a second, and a count of the rest", async () => {
  const lb = await startBalancer([], ["--backends", deadAddresses(100).join(",")]);
  try {
    // Each is dialed at once, then every 200 ms: a first line for each before.
    await sleep(1500);
  } finally {
    await lb.stop();
  }
  const lines = lb.stderr().split("\n");
  const unreachable = lines.filter((l) => /\[WRN\].*unreachable: /.test(l));
  // Before: one line per backend at its first failed dial (100 in the first second).
  assert.ok(unreachable.length >= 1, lines.slice(0, 5).join("\n"));
  assert.ok(unreachable.length <= 40, `${unreachable.length} lines in 1.5 s`);
  const counted = lines.filter((l) =>
    /more lines about backends that cannot be reached in the last second went to debug level/.test(
      l,
    )
  );
  assert.ok(counted.length >= 1, "the rest are counted");
  const left = counted.map((l) => Number(l.match(/(\d+) more lines/)![1])).reduce((a, b) => a + b);
  assert.ok(left >= 100 - unreachable.length - 20, `${left} counted, ${unreachable.length} logged`);
});
