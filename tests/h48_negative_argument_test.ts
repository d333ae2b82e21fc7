/**
 * h48 P11: after an operation, an argument that starts as a negative
 * expression (`eval -1+2`, `sum -1,2`) is an argument, as `add -3 4` was;
 * an unknown flag there says that `--` ends the flags.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { startServerRole } from "./helpers/server_role.ts";

Deno.test("client: a negative expression after an operation is its argument (h48 P11)", async () => {
  const server = await startServerRole();
  try {
    const c = `127.0.0.1:${server.port}`;
    for (
      const [words, answer] of [
        [["eval", "-1+2"], "1"],
        [["sum", "-1,2"], "1"],
        [["add", "-3", "4"], "1"],
        [["eval", "-(2*3)"], "-6"],
      ] as const
    ) {
      const r = await runDist(["client", "-c", c, ...words]);
      assert.equal(r.code, 0, `${words.join(" ")}: ${r.stderr}`);
      assert.equal(r.stdout.trim(), answer, words.join(" "));
    }
    const flag = await runDist(["client", "-c", c, "echo", "-x"]);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /Unknown flag -x for client \(after an operation, write -- before /);
  } finally {
    await server.stop();
  }
});
