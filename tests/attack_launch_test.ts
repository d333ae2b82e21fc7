/**
 * `dist up`'s state directory (`$TMPDIR/dist-<uid>`) against another local
 * user who made it first, writable by all: dist used it as its own, so the
 * squatter could plant a state file that keeps the victim's `dist up` from
 * starting, read or replace `data_dir = "auto"` databases and `tls = "auto"`
 * keys, or link our file names to the victim's files. A directory that is
 * not the user's alone is now refused for what must stay private and
 * ignored for state files.
 */
import assert from "node:assert/strict";
import { startUp, stopCleanly, topologyFile } from "./helpers/up.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** A TMPDIR whose `dist-<uid>` someone else made first: mode 0777. */
async function squatted(): Promise<{ tmp: string; dir: string }> {
  const tmp = await Deno.makeTempDir({ prefix: "dist-attack-" });
  const dir = `${tmp}/dist-${Deno.uid()}`;
  await Deno.mkdir(dir);
  await Deno.chmod(dir, 0o777);
  return { tmp, dir };
}

/** The state file name launch/state.ts gives a topology (its first 8 SHA-256 bytes). */
async function stateName(file: string): Promise<string> {
  const bytes = new TextEncoder().encode(JSON.stringify([file, ""]));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return `up-${[...digest.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("")}.json`;
}

Deno.test({
  name: "attack: a state file planted in a squatted state directory does not stop dist up",
  ...opts,
  async fn() {
    const { tmp, dir } = await squatted();
    const file = await topologyFile(`[[server]]\nname = "s1"\nport = 0\n`);
    try {
      // "This topology already runs", says a live pid (this test's).
      const planted = {
        version: 1,
        file,
        pid: Deno.pid,
        started_ms: Date.now(),
        instances: {},
      };
      await Deno.writeTextFile(`${dir}/${await stateName(file)}`, JSON.stringify(planted));
      // Up to "All N ready", then stopped: a fixed --duration flaked when the
      // server took longer than it to start on a loaded machine.
      const up = startUp([file, "--no-dashboard"], { env: { TMPDIR: tmp } });
      await up.waitFor(/All \d+ ready/);
      const result = await stopCleanly(up);
      assert.match(result.stdout, /Not keeping state: .* may be written by others \(mode 777\)/);
      // Nothing of ours was written there.
      const names = [...Deno.readDirSync(dir)].map((e) => e.name);
      assert.deepEqual(names, [await stateName(file)]);
    } finally {
      await Deno.remove(tmp, { recursive: true });
      await Deno.remove(file);
    }
  },
});

Deno.test({
  name: 'attack: data_dir = "auto" is refused in a squatted state directory, not put there',
  ...opts,
  async fn() {
    const { tmp, dir } = await squatted();
    const file = await topologyFile(`[[binder]]\nname = "b1"\nport = 0\ndata_dir = "auto"\n`);
    try {
      const up = startUp([file, "--no-dashboard", "--duration", "1s"], { env: { TMPDIR: tmp } });
      const result = await up.exited();
      assert.equal(result.code, 2, result.stdout + result.stderr);
      assert.match(
        result.stderr,
        /dist: Cannot keep files in .*dist-\d+ may be written by others \(mode 777\): remove it, or set DIST_STATE_DIR/,
      );
      assert.deepEqual([...Deno.readDirSync(dir)], []);
    } finally {
      await Deno.remove(tmp, { recursive: true });
      await Deno.remove(file);
    }
  },
});
