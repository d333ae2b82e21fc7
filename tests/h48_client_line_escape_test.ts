/**
 * hostile h48 P4: the client's line mode (`dist client < ops.txt`, and the
 * shell) prints the error of a line it cannot parse with that line's text
 * raw: `add 1 ESC[2J` prints `error BAD_REQUEST: Not a number: ESC[2J`,
 * which clears the terminal, and a bidi control or U+2028 there reorders or
 * splits what is shown. README (client): "What a server or worker answers
 * reaches the terminal escaped … and so does an error's message, in the
 * shell (`error INTERNAL: …`)"; `--json` output "escapes them too
 * (`\u2028`, `\u001b`)". The server's errors are escaped
 * (interactive.ts runLine's outcome), the client's own are not (its `fail`
 * prints `message` as it is, and `--json` through JSON.stringify, which
 * leaves U+2028 and the bidi controls). An ops file from elsewhere drives
 * the terminal of whoever runs it.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { startServerRole } from "./helpers/server_role.ts";

/** What no line of the client's output may hold raw. */
const UNPRINTABLE =
  // deno-lint-ignore no-control-regex
  /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

const LINES = [
  "add 1 \u001b[2J", // Not a number
  "a.b \u001b[31mred", // Parameters of a.b must be JSON
  "add 1 \u0085x", // a C1 control (NEL; readline would split a line at U+2028)
  "sleep \u202eevil", // a bidi override
];

for (const json of [false, true]) {
  Deno.test(`client line mode${json ? " --json" : ""}: its own errors reach the terminal escaped (h48 P4)`, async () => {
    const server = await startServerRole();
    try {
      const run = await runDist(
        ["client", "-c", `127.0.0.1:${server.port}`, ...(json ? ["--json"] : [])],
        { stdin: LINES.join("\n") + "\n", timeoutMs: 15_000 },
      );
      assert.equal(run.code, 1, run.stderr); // every line failed
      const lines = run.stdout.split("\n").filter((l) => l !== "");
      const raw = lines.filter((l) => UNPRINTABLE.test(l)).map((l) => JSON.stringify(l));
      assert.deepEqual(raw, [], "lines printed with control characters raw");
      assert.equal(lines.length, LINES.length, run.stdout);
    } finally {
      await server.stop();
    }
  });
}
