/**
 * Hostile review h47 Q15 (medium): a topology with `metrics` on an instance
 * (`--metrics HOST:PORT`, the Prometheus endpoint every role serves; `dist
 * up` runs it) cannot be exported to compose or k8s. The export takes the
 * listen address for a reference to another instance and refuses the file:
 * `broker.metrics: broker is given 0.0.0.0:44703, which is no instance of
 * FILE: in k8s the loopback is the instance's own container, so it would
 * reach nothing; name an instance of the file instead` (even for 0.0.0.0,
 * which is no loopback; and no instance can be named there). Prometheus
 * exporters run in every orchestrator: a containerPort (and compose port)
 * for the metrics listener, bound to 0.0.0.0 in the container.
 *
 * Expected: the export succeeds (the metrics listener bound in the
 * container and its port published, as the instance's own port is).
 */
import assert from "node:assert/strict";
import { freePort, runDist } from "./helpers/dist.ts";

Deno.test("h47 Q15: a topology with metrics exports to compose and k8s", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-h47-q15-" });
  try {
    const file = `${dir}/metrics.toml`;
    await Deno.writeTextFile(
      file,
      `[[server]]\nname = "s"\nport = ${freePort()}\nmetrics = "127.0.0.1:${freePort()}"\n`,
    );
    const plan = await runDist(["up", file, "--dry-run"]);
    assert.equal(plan.code, 0, plan.stderr);
    for (const target of ["compose", "k8s"]) {
      const r = await runDist(["export", target, file]);
      assert.equal(r.code, 0, `${target}: ${r.stderr.trim()}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
