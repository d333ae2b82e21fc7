/**
 * hostile46c F7: `tls = "auto"` with an explicit `dir` takes the folder as it
 * finds it. A folder others may write (made first by another user on a
 * shared machine, or left 0777) can hold a CA of theirs, which `dist up` signs
 * with, and symbolic links where it writes the instances' keys: `dist up`
 * followed `instances/server.key` to a file of root's and wrote a private key
 * over it (then made it 0600). The state directory refuses to be used when
 * others may write it (README, dist status); the TLS folder must be held to
 * the same rule (or at least never write through a link).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runDist } from "./helpers/dist.ts";

Deno.test("hostile46c F7: dist up never writes a key through a link in a TLS folder others may write", async () => {
  const dir = await Deno.makeTempDir({ prefix: "h46c-tls-" });
  const victim = await Deno.makeTempFile({ prefix: "h46c-victim-" });
  try {
    await Deno.writeTextFile(victim, "precious\n", { mode: 0o600 });
    const made = await runDist(["cert", "ca", "--dir", dir], { timeoutMs: 30_000 });
    assert.equal(made.code, 0, made.stderr);
    await Deno.mkdir(join(dir, "instances"));
    // What another user could have left there: a folder all may write, a link to our file.
    await Deno.chmod(dir, 0o777);
    await Deno.chmod(join(dir, "instances"), 0o777);
    await Deno.symlink(victim, join(dir, "instances", "server.key"));
    const file = join(dir, "cluster.toml");
    await Deno.writeTextFile(
      file,
      `[security]\ntls = "auto"\ndir = "${dir}"\n\n[[server]]\nname = "server"\nport = 0\n`,
      { mode: 0o600 },
    );
    const up = await runDist(["up", file, "--duration", "1s", "--no-dashboard"], {
      timeoutMs: 40_000,
    });
    const after = await Deno.readTextFile(victim).catch((err) => `(unreadable: ${err})`);
    assert.equal(
      after,
      "precious\n",
      `dist up (exit ${up.code}) wrote through ${join(dir, "instances", "server.key")}: ` +
        JSON.stringify(after.slice(0, 60)),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(victim).catch(() => {});
  }
});
