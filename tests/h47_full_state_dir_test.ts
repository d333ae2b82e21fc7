/**
 * Hostile review h47 Q4 (medium): on a full state directory (`$TMPDIR` or
 * `DIST_STATE_DIR` on a full disk) `dist up` cannot write its state file and
 * says nothing (launch/state.ts `StateWriter.#write` swallows every error),
 * so what README promises of that file silently stops holding: a second
 * `dist up` of the same file on this machine is not refused ("it refuses to
 * start rather than fight over ports"), `dist status` says
 * `No dist up of FILE runs on this machine: restarts not known` while one
 * does, and each launcher leaves a `up-….json.PID.tmp` behind (0 bytes) that
 * nothing removes. dist's own `--data-dir` is guarded by an flock, which
 * needs no room on the disk.
 *
 * Expected: a second launcher of the file is refused while the first runs,
 * full disk or not (or, at the least, the first says it cannot keep its
 * state).
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { fill, run, smallDisk } from "./helpers/small_disk.ts";
import { startUp, topologyFile } from "./helpers/up.ts";

const disk = smallDisk("dist-h47-q4-");

Deno.test({
  name:
    "h47 Q4: a second dist up of one file is refused while the first runs, on a full state disk",
  ignore: disk === undefined,
  async fn() {
    const state = disk!;
    await Deno.chmod(state, 0o700);
    await fill(state);
    const file = await topologyFile(`[[server]]\nname = "srv"\nport = 0\n`);
    const env = { DIST_STATE_DIR: state };
    const first = startUp([file, "--no-dashboard"], { env });
    try {
      await first.waitFor(/All 1 ready/);
      const second = await runDist(["up", file, "--no-dashboard", "--duration", "2s"], {
        env,
        timeoutMs: 30_000,
      });
      const leftovers = [...Deno.readDirSync(state)].map((e) => e.name).filter((n) =>
        n.endsWith(".tmp")
      );
      assert.match(
        second.stderr + second.stdout,
        /already runs here/,
        `a second dist up of the file ran beside the first (exit ${second.code}); ` +
          `first said: ${JSON.stringify(first.stdout().slice(0, 300))}; ` +
          `left in the state directory: ${JSON.stringify(leftovers)}`,
      );
    } finally {
      await first.stop();
      await Deno.remove(file);
      run("umount", "-l", state);
      await Deno.remove(state, { recursive: true }).catch(() => {});
    }
  },
});
