/**
 * h48 P15: `--heartbeat` under 100 ms is refused (a listener's heartbeat is
 * every client's: `--heartbeat 1`, meant as a second, gave them 30 ms to
 * live); a bare number is said to be milliseconds.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { topologyFile } from "./helpers/up.ts";

Deno.test("--heartbeat under 100 ms is refused, a bare number said to be ms (h48 P15)", async () => {
  const one = await runDist(["server", "--port", "0", "--heartbeat", "1"]);
  assert.equal(one.code, 2, one.stderr);
  assert.match(
    one.stderr,
    /^dist: --heartbeat: must be at least 100ms, got "1" \(a bare number is milliseconds: write 1s for seconds\)$/m,
  );
  const ms = await runDist(["client", "--heartbeat", "50ms", "add", "1", "2"]);
  assert.equal(ms.code, 2, ms.stderr);
  assert.match(ms.stderr, /^dist: --heartbeat: must be at least 100ms, got "50ms"$/m);
  const file = await topologyFile('[[server]]\nname = "s"\nheartbeat = 5\n');
  try {
    const up = await runDist(["up", "--dry-run", file]);
    assert.equal(up.code, 2, up.stderr);
    assert.match(up.stderr, /line 3: server\.heartbeat: must be at least 100ms, got 5 /);
  } finally {
    await Deno.remove(file);
  }
});
