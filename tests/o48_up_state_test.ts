/**
 * Review R12: `dist up` run as a systemd service placed `data_dir = "auto"` under `$TMPDIR` (the
 * state directory; with `PrivateTmp=yes` wiped at every restart), not `$STATE_DIRECTORY`, which
 * `dist --config FILE --name NAME` reads: now one function places both, `$STATE_DIRECTORY/NAME`.
 *
 * Review R13: where the state directory is not the user's (another user made `dist-<uid>` first,
 * writable by all), `dist up` kept no state, which is right, and took no lock, so two launchers of
 * one file ran side by side: now the lock is taken in `$XDG_RUNTIME_DIR/dist` (else
 * `~/.cache/dist`), a folder of the user's own, and with neither `dist up` refuses to start.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runDist } from "./helpers/dist.ts";
import { homeEnv } from "./helpers/home.ts";
import { startUp, topologyFile } from "./helpers/up.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name:
    'R12: dist up under systemd keeps data_dir = "auto" in $STATE_DIRECTORY/NAME, as dist --config does',
  ...opts,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "dist-o48-r12-" });
    const service = join(root, "service-state");
    await Deno.mkdir(service, { mode: 0o700 });
    const file = await topologyFile(`[[binder]]\nname = "b1"\nport = 0\ndata_dir = "auto"\n`);
    // Its own TMPDIR: what dist used before (PrivateTmp's, gone at the next restart).
    const env = { STATE_DIRECTORY: service, TMPDIR: join(root, "tmp") };
    await Deno.mkdir(env.TMPDIR, { mode: 0o700 });
    try {
      const dry = await runDist(["up", file, "--dry-run"], { env });
      assert.equal(dry.code, 0, dry.stderr);
      assert.ok(dry.stdout.includes(`--data-dir=${service}/b1`), dry.stdout);
      const up = startUp([file, "--no-dashboard"], { env });
      try {
        await up.waitFor(/All 1 ready/);
        assert.ok([...Deno.readDirSync(join(service, "b1"))].length > 0, "the binder's data");
        const made = [...Deno.readDirSync(env.TMPDIR)].map((e) => e.name);
        const data = made.length === 0 ? [] : [...Deno.readDirSync(join(env.TMPDIR, made[0]))];
        assert.ok(!data.some((e) => e.name === "data"), `no data under TMPDIR: ${made}`);
      } finally {
        await up.stop();
      }
    } finally {
      await Deno.remove(file);
      await Deno.remove(root, { recursive: true });
    }
  },
});

/** A TMPDIR whose `dist-<uid>` another user made first, writable by all (as attack_launch_test). */
async function squatted(root: string): Promise<string> {
  const tmp = join(root, "tmp");
  await Deno.mkdir(`${tmp}/dist-${Deno.uid()}`, { recursive: true });
  await Deno.chmod(`${tmp}/dist-${Deno.uid()}`, 0o777);
  return tmp;
}

Deno.test({
  name: "R13: with a squatted state directory, a second dist up of one file is still refused",
  ...opts,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "dist-o48-r13-" });
    const runtime = join(root, "run");
    await Deno.mkdir(runtime, { mode: 0o700 });
    const env = { TMPDIR: await squatted(root), XDG_RUNTIME_DIR: runtime };
    const file = await topologyFile(`[[server]]\nname = "srv"\nport = 0\n`);
    const first = startUp([file, "--no-dashboard"], { env });
    try {
      await first.waitFor(/All 1 ready/);
      assert.match(first.stdout(), /Not keeping state: .* may be written by others/);
      const second = await runDist(["up", file, "--no-dashboard", "--duration", "2s"], {
        env,
        timeoutMs: 30_000,
      });
      assert.equal(second.code, 2, second.stdout + second.stderr);
      assert.match(second.stderr, /already runs here/);
      // The lock is in ~/.cache/dist of the password database's home (h48b V3), nothing in the
      // runtime folder (the environment's) nor in the squatted one.
      assert.throws(() => Deno.statSync(join(runtime, "dist")), Deno.errors.NotFound);
      assert.deepEqual([...Deno.readDirSync(`${env.TMPDIR}/dist-${Deno.uid()}`)], []);
    } finally {
      await first.stop();
      await Deno.remove(file);
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("R13, h48b V3: the lock's place is not the environment's: an unusable $HOME does not stop dist up", async () => {
  const root = await Deno.makeTempDir({ prefix: "dist-o48-r13b-" });
  const file = await topologyFile(`[[server]]\nname = "srv"\nport = 0\n`);
  try {
    // HOME in a folder others may write: ~/.cache/dist of the environment is not ours. The lock
    // goes to the password database's home (before: this HOME was refused, so a launcher's place
    // depended on its environment, and two launchers of one file could miss each other).
    const home = join(root, "home");
    await Deno.mkdir(join(home, ".cache", "dist"), { recursive: true });
    await Deno.chmod(join(home, ".cache", "dist"), 0o777);
    const env = { TMPDIR: await squatted(root), XDG_RUNTIME_DIR: "", ...await homeEnv(home) };
    const r = await runDist(["up", file, "--no-dashboard", "--duration", "2s"], { env });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual([...Deno.readDirSync(join(home, ".cache", "dist"))], []);
  } finally {
    await Deno.remove(file);
    await Deno.remove(root, { recursive: true });
  }
});
