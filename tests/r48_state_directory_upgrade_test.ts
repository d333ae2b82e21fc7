/**
 * Review r48 R3 (R12: launch/state.ts placeDataDirs): `dist up` run as a systemd service with
 * `StateDirectory=` now puts `data_dir = "auto"` in `$STATE_DIRECTORY/NAME`. Before this stop it
 * was `STATE/data/<hash>/NAME` in dist's state directory, which a unit that wanted its data kept
 * set to a persistent folder (`DIST_STATE_DIR` — naturally `$STATE_DIRECTORY` itself). After the
 * upgrade such a unit's broker and binder start from an empty directory, silently: their
 * retained values, sessions and registrations are still on disk, where nothing reads them.
 *
 * Outcome asserted: where the directory the earlier rule gave an instance exists and holds its
 * data, and the new one does not exist yet, the instance keeps the one it had. No process is
 * started: placeDataDirs is called as dist up calls it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { placeDataDirs, topologyKey } from "../launch/state.ts";

Deno.test('r48: dist up under StateDirectory= keeps the data_dir = "auto" a unit had before R12', async () => {
  const unitState = await Deno.makeTempDir({ prefix: "dist_r48_unit_" });
  const saved = {
    state: Deno.env.get("DIST_STATE_DIR"),
    unit: Deno.env.get("STATE_DIRECTORY"),
  };
  const restore = (name: string, value: string | undefined) =>
    value === undefined ? Deno.env.delete(name) : Deno.env.set(name, value);
  try {
    const file = join(unitState, "topology.toml");
    // The unit as it ran before R12: a persistent state directory, no STATE_DIRECTORY read.
    Deno.env.set("DIST_STATE_DIR", unitState);
    Deno.env.delete("STATE_DIRECTORY");
    const before = [{ name: "broker", options: { dataDir: "auto" } as Record<string, unknown> }];
    await placeDataDirs(before, topologyKey(file));
    const had = before[0].options.dataDir as string;
    await Deno.mkdir(had, { recursive: true, mode: 0o700 });
    await Deno.writeTextFile(join(had, "retained.db"), "the broker's data");
    // The same unit after the upgrade: systemd sets STATE_DIRECTORY for StateDirectory=.
    Deno.env.set("STATE_DIRECTORY", unitState);
    const after = [{ name: "broker", options: { dataDir: "auto" } as Record<string, unknown> }];
    await placeDataDirs(after, topologyKey(file));
    assert.equal(after[0].options.dataDir, had, "the broker's data_dir moved away from its data");
  } finally {
    restore("DIST_STATE_DIR", saved.state);
    restore("STATE_DIRECTORY", saved.unit);
    await Deno.remove(unitState, { recursive: true });
  }
});
