/**
 * hostile45c K-C8: "two instances on one host:port" are refused with the
 * file's line, but an instance on 0.0.0.0 (every address) and one on
 * 127.0.0.1 (the default host) with the same port are not: the plan shows
 * both at 127.0.0.1:PORT and `dist up` fails at run time, after starting
 * the first (`dist: c cannot listen on 0.0.0.0:PORT: in use by another
 * process`).
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { freeRange, topologyFile } from "./helpers/up.ts";

Deno.test("hostile45c K-C8: a port on 0.0.0.0 and the same port on 127.0.0.1 are refused as one port used twice", async () => {
  const port = freeRange(1);
  const file = await topologyFile(`
[[server]]
name = "c"
host = "0.0.0.0"
port = ${port}

[[server]]
name = "d"
port = ${port}
`);
  try {
    const r = await runDist(["up", file, "--dry-run"]);
    assert.equal(r.code, 2, `exit ${r.code}:\n${r.stdout}${r.stderr}`);
    // Named with its line, as "two instances on one host:port" are (the wording is the fixer's).
    assert.match(r.stderr, new RegExp(`line \\d+: .*${port}`));
  } finally {
    await Deno.remove(file);
  }
});
