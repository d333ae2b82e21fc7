/**
 * Review r48 R3 (launch/state.ts keptDir), beside r48's test: the earlier `STATE/data/<hash>/NAME`
 * is kept only while the new `$STATE_DIRECTORY/NAME` does not exist (once moved, the new place is
 * used), and the move is said once per process however many times the place is asked for.
 * In-process: placeDataDirs as dist up calls it, console.error caught.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { placeDataDirs, topologyKey } from "../launch/state.ts";

Deno.test("r48 R3: the old data_dir is kept until moved, and the move is said once", async () => {
  const unit = await Deno.makeTempDir({ prefix: "dist_u48_unit_" });
  const saved = { state: Deno.env.get("DIST_STATE_DIR"), unit: Deno.env.get("STATE_DIRECTORY") };
  const restore = (name: string, value: string | undefined) =>
    value === undefined ? Deno.env.delete(name) : Deno.env.set(name, value);
  const said: string[] = [];
  const error = console.error;
  console.error = (...args: unknown[]) => said.push(args.join(" "));
  const place = async () => {
    const one = [{ name: "binder", options: { dataDir: "auto" } as Record<string, unknown> }];
    await placeDataDirs(one, topologyKey(join(unit, "t.toml")));
    return one[0].options.dataDir as string;
  };
  try {
    Deno.env.set("DIST_STATE_DIR", unit);
    Deno.env.delete("STATE_DIRECTORY");
    const old = await place();
    Deno.env.set("STATE_DIRECTORY", unit);
    assert.equal(await place(), join(unit, "binder"), "no old directory: the new place");
    await Deno.mkdir(old, { recursive: true, mode: 0o700 });
    assert.equal(await place(), old);
    assert.equal(await place(), old);
    assert.equal(said.length, 1, said.join("\n"));
    assert.ok(said[0].includes(`mv ${old} ${join(unit, "binder")}`), said[0]);
    await Deno.rename(old, join(unit, "binder"));
    assert.equal(await place(), join(unit, "binder"), "moved: the new place");
  } finally {
    console.error = error;
    restore("DIST_STATE_DIR", saved.state);
    restore("STATE_DIRECTORY", saved.unit);
    await Deno.remove(unit, { recursive: true });
  }
});
