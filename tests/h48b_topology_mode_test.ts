/**
 * h48b V-topology: N9 (config/owner.ts) refuses a users, token or password file others may write
 * ("whoever could write it chose the passwords") and a token file others may read. The topology
 * file is not checked at all, yet it holds secrets inline (`token = "…"`, `password = "…"`) and
 * names every file N9 checks: a topology writable by all (0666, or in a folder others may write)
 * lets anyone choose the token `dist up` starts its instances with, and one readable by all
 * (0644, the usual mode) gives the token to every local user. Both are taken without a word.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { topologyFile } from "./helpers/up.ts";

Deno.test("h48b: dist up refuses a topology others may write that holds a token", async () => {
  const file = await topologyFile(
    `[[server]]\nname = "srv"\nport = 0\ntoken = "chosen-by-anyone"\n`,
  );
  try {
    await Deno.chmod(file, 0o666);
    const r = await runDist(["up", file, "--no-dashboard", "--duration", "1s"], {
      timeoutMs: 30_000,
    });
    assert.equal(r.code, 2, `a 0666 topology with a token was run:\n${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /may be written by others/);
  } finally {
    await Deno.remove(file);
  }
});
