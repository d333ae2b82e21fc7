/**
 * hostile h48 P7: in the client's line mode (`dist client < ops.txt`) one
 * long line stalls the client for seconds, and the line after it fails.
 * An 8 MiB word that is no operation goes to parseOperation's did-you-mean
 * (config/_suggest.ts levenshtein: a row array per character of the word,
 * times each of the 12 names): 8.1 s of CPU with the event loop blocked.
 * The server, hearing no heartbeat for its 3 s, closes the connection, and
 * the next line, `add 3 4`, is answered
 * `error UNAVAILABLE: Connection closed by peer`. A word longer than any
 * name by more than the allowed distance cannot be within it: the distance
 * need not be computed. (Without any line break, `dist client < /dev/zero`
 * grows one line to V8's longest string, over a GB, and ends with
 * `Uncaught (in promise) RangeError: Invalid string length`.)
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { startServerRole } from "./helpers/server_role.ts";

Deno.test("client line mode: a long line does not cost the lines after it (h48 P7)", async () => {
  const server = await startServerRole();
  try {
    const input = `add 1 2\n${"a".repeat(8 << 20)}\nadd 3 4\n`;
    const run = await runDist(["client", "-c", `127.0.0.1:${server.port}`], {
      stdin: input,
      timeoutMs: 60_000,
    });
    assert.equal(run.timedOut, false, "still running after 60 s");
    const lines = run.stdout.split("\n").filter((l) => l !== "").map((l) => l.slice(0, 120));
    // The long line may be reported on stdout (`error …`) or on stderr: either way, once.
    assert.ok(lines.length === 2 || lines.length === 3, lines.join("\n"));
    assert.equal(lines[0], "3");
    if (lines.length === 3) assert.match(lines[1], /^error /);
    assert.equal(lines.at(-1), "7", `the line after the long one: ${lines.at(-1)}`);
  } finally {
    await server.stop();
  }
});
