/**
 * Review r47 R7: the Q4 fix's one-launcher flock (`launch/state.ts` `lockLauncher`) opens its lock
 * file in the state directory but does not make that directory: when it does not exist yet — the
 * first `dist up` after a boot with a tmpfs /tmp, after a tmp cleaner, a new DIST_STATE_DIR —
 * `Deno.open` fails and the launcher runs holding no lock (the catch returns "taken"). The guard
 * is then the state file alone, as before the fix: once that file is gone or was never written
 * (the full disk of Q4: the directory cannot be made there either; a cleaner removing a file
 * untouched for days), a second launcher of the same topology starts beside the first.
 *
 * Here the first launcher starts with no state directory; its state file is then made unwritable
 * (a directory in its place, so each rewrite fails, as on Q4's full disk); a second `dist up` of
 * the file must be refused.
 *
 * Expected: the first launcher holds its lock whatever existed before it (make the directory
 * first, 0700, checked as `ownStateDir` does).
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { startUp, topologyFile } from "./helpers/up.ts";

Deno.test("r47 R7: a dist up started before its state directory existed still holds the one-launcher lock", async () => {
  const root = await Deno.makeTempDir({ prefix: "dist-r47-r7-" });
  await Deno.chmod(root, 0o700);
  const state = `${root}/state`; // Not there yet.
  const file = await topologyFile(`[[server]]\nname = "srv"\nport = 0\n`);
  const env = { DIST_STATE_DIR: state };
  const first = startUp([file, "--no-dashboard"], { env });
  try {
    await first.waitFor(/All 1 ready/);
    const names = [...Deno.readDirSync(state)].map((e) => e.name);
    // Its state can no longer be written (a directory where the file goes: the rename fails,
    // as on the full disk of Q4).
    for (const name of names) {
      if (!name.endsWith(".json")) continue;
      // The launcher may rewrite it between the two steps: a few tries.
      for (let i = 0; i < 50; i++) {
        await Deno.remove(`${state}/${name}`).catch(() => {});
        try {
          await Deno.mkdir(`${state}/${name}`);
          break;
        } catch (err) {
          if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
        }
      }
    }
    const second = await runDist(["up", file, "--no-dashboard", "--duration", "2s"], {
      env,
      timeoutMs: 30_000,
    });
    assert.match(
      second.stderr + second.stdout,
      /already runs here/,
      `a second dist up ran beside the first (exit ${second.code}); the state directory held ` +
        `${JSON.stringify(names)} (no lock file: the first launcher took none)`,
    );
  } finally {
    await first.stop();
    await Deno.remove(file);
    await Deno.remove(root, { recursive: true });
  }
});
