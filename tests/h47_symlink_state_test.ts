/**
 * Hostile review h47 Q5 (medium): `dist up` names a topology by
 * `path.resolve(file)` (launch/state.ts `topologyKey`), not by the file
 * itself, so one file reached by two paths (a symlinked project or home
 * directory, `cd` into a symlink and a relative path, where `getcwd` gives
 * the physical path while the user typed the logical one) is two
 * topologies: `data_dir = "auto"` gives the broker or binder another, empty
 * directory (a restarted cluster does not find its retained values or its
 * registry, and says nothing), `tls = "auto"` makes a second CA, the "one
 * launcher per file" guard and `dist status` do not see the other launcher.
 *
 * Expected: the same file gives the same data directory whichever path
 * names it (key by `Deno.realPath`, or by device and inode).
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";

function dataDir(stdout: string): string | undefined {
  const plan = JSON.parse(stdout.trim().split("\n")[0]) as { argv: string[] };
  return plan.argv.find((a) => a.startsWith("--data-dir="));
}

Deno.test('h47 Q5: one topology file reached through a symlink keeps its data_dir = "auto" directory', async () => {
  const root = await Deno.makeTempDir({ prefix: "dist-h47-q5-" });
  const state = await Deno.makeTempDir({ prefix: "dist-h47-q5-state-" });
  await Deno.chmod(state, 0o700);
  try {
    await Deno.mkdir(`${root}/real`);
    await Deno.symlink(`${root}/real`, `${root}/link`);
    await Deno.writeTextFile(
      `${root}/real/cluster.toml`,
      `[[broker]]\nname = "broker"\nport = 0\ndata_dir = "auto"\n`,
    );
    const env = { DIST_STATE_DIR: state };
    const viaReal = await runDist(["up", `${root}/real/cluster.toml`, "--dry-run", "--json"], {
      env,
    });
    const viaLink = await runDist(["up", `${root}/link/cluster.toml`, "--dry-run", "--json"], {
      env,
    });
    assert.equal(viaReal.code, 0, viaReal.stderr);
    assert.equal(viaLink.code, 0, viaLink.stderr);
    assert.equal(
      dataDir(viaLink.stdout),
      dataDir(viaReal.stdout),
      "the same file through a symlinked directory gets another data directory",
    );
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(state, { recursive: true });
  }
});
