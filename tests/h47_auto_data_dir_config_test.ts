/**
 * Hostile review h47 Q7 (high): `data_dir = "auto"` is honoured by `dist up`
 * only (launch/state.ts placeDataDirs). `dist --config FILE --name NAME`,
 * which is what every export runs (systemd `ExecStart=… --config
 * /etc/dist/topology.toml --name NAME`, the compose service's and the k8s
 * pod's command), takes "auto" as a relative path: a directory literally
 * named `auto` in its working directory. So under systemd every instance
 * with "auto" on one host shares /var/log/dist/auto (WorkingDirectory), the
 * second broker or binder is refused (`Cannot use data directory auto:
 * another process holds it`, exit 2) and restarts every second for ever;
 * under compose the data is in the container's writable layer and under k8s
 * in the pod's emptyDir, both gone when the container or pod is recreated:
 * a durable broker's retained values and MQTT sessions, a binder's
 * registry, lost at every redeploy. Nothing says so (the exports' notes
 * speak of tls = "auto", not of data_dir).
 *
 * Expected: two instances of one file whose data_dir is "auto", started as
 * the exports start them (`dist --config FILE --name NAME`, one working
 * directory), both run, each on a directory of its own.
 */
import assert from "node:assert/strict";
import { type DistProcess, freePort, runDist, startDist } from "./helpers/dist.ts";

Deno.test('h47 Q7: dist --config runs two data_dir = "auto" instances side by side, as the exports start them', async () => {
  const cwd = await Deno.makeTempDir({ prefix: "dist-h47-q7-" });
  const port = freePort();
  const file = `${cwd}/cluster.toml`;
  await Deno.writeTextFile(
    file,
    `[[broker]]\nname = "b1"\nport = ${port}\ndata_dir = "auto"\n` +
      `[[broker]]\nname = "b2"\nport = 0\ndata_dir = "auto"\n`,
  );
  let first: DistProcess | undefined;
  try {
    first = await startDist(["--config", file, "--name", "b1"], { cwd });
    const second = await startDist(["--config", file, "--name", "b2"], { cwd, timeoutMs: 20_000 })
      .then((p) => p.stop().then(() => "listening"), (e) => String(e).slice(0, 400));
    const made = [...Deno.readDirSync(cwd)].map((e) => e.name);
    assert.equal(
      second,
      "listening",
      `the second "auto" instance did not run beside the first ` +
        `(working directory now holds ${JSON.stringify(made)})`,
    );
  } finally {
    await first?.stop();
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("h47 Q7: a systemd unit can write its instance's data_dir (ProtectSystem=strict makes / read-only)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-h47-q7b-" });
  try {
    const file = `${dir}/cluster.toml`;
    await Deno.writeTextFile(
      file,
      `[[broker]]\nname = "b"\nport = ${freePort()}\ndata_dir = "/var/lib/dist-data/b"\n`,
    );
    const r = await runDist(["export", "systemd", file]);
    assert.equal(r.code, 0, r.stderr);
    const unit = r.stdout.slice(r.stdout.indexOf("==> dist-b.service <=="));
    assert.match(unit, /ProtectSystem=strict/);
    assert.match(
      unit,
      /^(ReadWritePaths=-?\/var\/lib\/dist-data|StateDirectory=dist-data)/m,
      "the unit makes the whole file system read-only but the data directory is not made " +
        "writable (ReadWritePaths=/StateDirectory=): the broker cannot open it and restarts for ever",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
