/**
 * Review r47 R4: the Q5 fix keys a topology by its file's real path. A topology reached through a
 * symlink that is re-pointed between runs — a deploy's `current -> releases/N` link, a Kubernetes
 * ConfigMap volume (every file a link through `..data`, swapped at each update), a dotfiles
 * manager — now gets a new key at every re-point: `data_dir = "auto"` a new, empty directory
 * (a durable broker's retained values and sessions, a binder's registry "lost"), `tls = "auto"` a
 * new CA (clients holding the old one refused), and a launcher started before the re-point is
 * invisible to `dist status` and to the one-launcher guard of a `dist up` after it (two launchers
 * fight over the ports). Before the fix the key was the path the user named, stable across
 * re-points; an upgrade from that version also moves every such topology's data and CA once.
 *
 * Expected: the same path naming the same topology keeps its data directory.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";

Deno.test('r47 R4: re-pointing a deploy symlink keeps a topology\'s data_dir = "auto"', async () => {
  const root = await Deno.makeTempDir({ prefix: "dist-r47-r4-" });
  const state = `${root}/state`;
  await Deno.mkdir(state, { mode: 0o700 });
  await Deno.chmod(state, 0o700);
  const topology = `[[broker]]\nname = "b"\nport = 45511\ndata_dir = "auto"\n`;
  for (const release of ["rel1", "rel2"]) {
    await Deno.mkdir(`${root}/${release}`);
    await Deno.writeTextFile(`${root}/${release}/topology.toml`, topology);
  }
  const env = { DIST_STATE_DIR: state };
  const dataDir = async () => {
    const r = await runDist(["up", `${root}/current/topology.toml`, "--dry-run"], {
      env,
      timeoutMs: 30_000,
    });
    const dir = /--data-dir=(\S+)/.exec(r.stdout)?.[1];
    assert.ok(dir !== undefined, r.stdout + r.stderr);
    return dir;
  };
  try {
    await Deno.symlink("rel1", `${root}/current`);
    const before = await dataDir();
    // The next release: the same file, the link re-pointed (as `ln -sfn rel2 current`).
    await Deno.symlink("rel2", `${root}/next`);
    await Deno.rename(`${root}/next`, `${root}/current`);
    const after = await dataDir();
    assert.equal(
      after,
      before,
      `${root}/current/topology.toml got another data directory once its link was re-pointed`,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
