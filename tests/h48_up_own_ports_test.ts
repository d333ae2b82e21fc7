/**
 * hostile h48 P8: `dist up --dashboard ADDR` (or `--metrics ADDR`) on an
 * address the topology gives one of its instances is not checked. The
 * launcher binds it first, then:
 * - at an instance's `metrics` address, the instance exits 2
 *   (`dist: --metrics 127.0.0.1:24111: port 24111 is in use: …`) and is
 *   restarted in a crash loop (`crash loop (5 quick exits in a row);
 *   restarting it in 8s`) until `--ready-timeout`: the launcher holds the
 *   port its own instance needs, and restarts a usage error;
 * - at an instance's main port, `server cannot listen on 127.0.0.1:24110:
 *   in use by another process; not starting it`, exit 1: the "other
 *   process" is the launcher itself.
 * The file's own clashes are refused before anything starts (README: two
 * instances on one host:port, a metrics address another listener of the
 * file uses, "are all errors"); the launcher's two flags should be too:
 * `dist: --dashboard 127.0.0.1:P is server's metrics address in FILE`,
 * exit 2, nothing started.
 */
import assert from "node:assert/strict";
import { freePort } from "./helpers/dist.ts";
import { startUp, topologyFile } from "./helpers/up.ts";

for (const which of ["metrics", "port"] as const) {
  Deno.test(`dist up --dashboard on an instance's ${which} address is refused before anything starts (h48 P8)`, async () => {
    const port = freePort();
    const metrics = freePort();
    const file = await topologyFile(
      `[[server]]\nname = "server"\nport = ${port}\nmetrics = "127.0.0.1:${metrics}"\n`,
    );
    const taken = which === "metrics" ? metrics : port;
    const up = startUp([file, "--dashboard", `127.0.0.1:${taken}`, "--ready-timeout", "5s"]);
    try {
      const result = await up.exited(30_000);
      const started = up.pids().length;
      assert.equal(
        result.code,
        2,
        `exit ${result.code}, ${started} instance start(s):\n${
          result.stdout.slice(-1500)
        }${result.stderr}`,
      );
      assert.match(result.stderr, /^dist: .*--dashboard/m);
      assert.equal(started, 0, "an instance was started");
    } finally {
      await up.stop();
      await Deno.remove(file);
    }
  });
}

Deno.test("dist up --metrics on an instance's port, and an instance's metrics port held by another process, are refused without a start (h48 P8)", async () => {
  const port = freePort();
  const metrics = freePort();
  const file = await topologyFile(
    `[[server]]\nname = "server"\nport = ${port}\nmetrics = "127.0.0.1:${metrics}"\n`,
  );
  try {
    const up = startUp([file, "--metrics", `127.0.0.1:${port}`, "--ready-timeout", "5s"]);
    try {
      const result = await up.exited(30_000);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /^dist: --metrics 127\.0\.0\.1:\d+ is server's port in /m);
      assert.equal(up.pids().length, 0, "an instance was started");
    } finally {
      await up.stop();
    }
    // Another process holds the metrics port: said once by name, not a crash loop of exit 2.
    const holder = Deno.listen({ hostname: "127.0.0.1", port: metrics });
    const held = startUp([file, "--no-dashboard", "--ready-timeout", "5s"]);
    try {
      const result = await held.exited(30_000);
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(
        result.stdout + result.stderr,
        /server cannot listen on 127\.0\.0\.1:\d+ \(its metrics\): in use by another process/,
      );
      assert.equal(held.pids().length, 0, "the instance was started");
    } finally {
      await held.stop();
      holder.close();
    }
  } finally {
    await Deno.remove(file);
  }
});
