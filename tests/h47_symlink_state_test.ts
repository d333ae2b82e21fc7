/**
 * Hostile review h47 Q5 (medium): one topology file reached by two paths (a symlinked project or
 * home directory) ran twice: the "one launcher per file" guard keyed by the path as named did not
 * see the other launcher. The key of data and CA stays the path as named (review r47 R4: a
 * re-pointed deploy link must keep its data); the guard takes the real path too.
 *
 * Expected: a second `dist up` of the same file through a symlinked directory is refused while
 * the first runs.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { startUp } from "./helpers/up.ts";

Deno.test("h47 Q5: one topology file reached through a symlink cannot be launched twice", async () => {
  const root = await Deno.makeTempDir({ prefix: "dist-h47-q5-" });
  const state = await Deno.makeTempDir({ prefix: "dist-h47-q5-state-" });
  await Deno.chmod(state, 0o700);
  const env = { DIST_STATE_DIR: state };
  await Deno.mkdir(`${root}/real`);
  await Deno.symlink(`${root}/real`, `${root}/link`);
  await Deno.writeTextFile(`${root}/real/cluster.toml`, `[[server]]\nname = "srv"\nport = 0\n`);
  const first = startUp([`${root}/real/cluster.toml`, "--no-dashboard"], { env });
  try {
    await first.waitFor(/All 1 ready/);
    const second = await runDist(
      ["up", `${root}/link/cluster.toml`, "--no-dashboard", "--duration", "2s"],
      { env, timeoutMs: 30_000 },
    );
    assert.match(
      second.stderr + second.stdout,
      /already runs here/,
      `the same file through a symlinked directory ran beside the first (exit ${second.code})`,
    );
  } finally {
    await first.stop();
    await Deno.remove(root, { recursive: true });
    await Deno.remove(state, { recursive: true });
  }
});
