/**
 * Review r47 R6: the Q7 fix opens an absolute `data_dir` outside /var/lib to writes
 * (`ReadWritePaths=-PATH`, "must exist, writable by the unit's user"), but every exported unit has
 * `DynamicUser=yes`: its user exists only while the unit runs, with a UID systemd picks then, so
 * nothing can make a directory "writable by the unit's user" beforehand short of making it
 * writable by everyone (systemd.exec: with DynamicUser, persistent data belongs in
 * StateDirectory=). The broker cannot create or open its directory (`-` also hides a missing one
 * under ProtectSystem=strict), exits 2, and `Restart=on-failure` loops every second: Q7's second
 * half (an absolute data_dir) is still open for every path not under /var/lib (a data disk at
 * /srv, /data, /mnt …).
 *
 * Expected: a unit whose data_dir is outside /var/lib either runs as a user that can own it
 * (no DynamicUser: `User=`), or keeps the data in a StateDirectory= (e.g. bound there with
 * `BindPaths=`), or the export refuses the path with a reason.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";

Deno.test("r47 R6: a systemd unit with an absolute data_dir outside /var/lib can own it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-r47-r6-" });
  try {
    const file = `${dir}/cluster.toml`;
    await Deno.writeTextFile(
      file,
      `[[broker]]\nname = "b"\nport = 45514\ndata_dir = "/srv/dist-data/b"\n`,
    );
    const r = await runDist(["export", "systemd", file]);
    if (r.code !== 0) return; // Refused, with a reason: fine.
    const unit = r.stdout.slice(r.stdout.indexOf("==> dist-b.service <=="));
    const dynamic = /^DynamicUser=yes$/m.test(unit);
    const kept = /^(StateDirectory=\S+|BindPaths=\S*\/srv\/dist-data\/b\S*)$/m.test(unit);
    assert.ok(
      !dynamic || kept,
      "DynamicUser=yes with the data directory only in ReadWritePaths=: no user can own " +
        `/srv/dist-data/b before the unit runs; the broker cannot write it:\n${
          unit.split("\n").filter((l) => /User|ReadWrite|StateDirectory|data_dir/.test(l))
            .join("\n")
        }`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
