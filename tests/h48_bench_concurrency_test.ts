/**
 * hostile h48 P10: `dist client --bench --concurrency 10000000 --requests 10`
 * (a few zeros too many) starts ten million request loops for ten
 * requests (roles/client/bench.ts closedLoop: `Array.from({ length:
 * concurrency }, async …)`): RSS 288 MB at 2 s, 667 MB at 10 s, 1 GB at
 * 15 s, and still running 5 s after SIGTERM (the loops are made in one
 * go; the signal waits its turn). `--concurrency 1000000` took 1.6 s and
 * 300 MB. hey refuses `-c` above `-n`; wrk's connections are what it opens.
 * Loops beyond the requests to send carry nothing: the answer is to refuse
 * (exit 2, `dist: --concurrency …`) or to run no more loops than requests.
 * Run under `ulimit -d` 2 GiB as a safety net, 20 s at most.
 */
import assert from "node:assert/strict";
import { distCommand } from "./helpers/dist.ts";
import { startServerRole } from "./helpers/server_role.ts";

const RUN_MS = 20_000;

Deno.test("client --bench --concurrency far above --requests is refused or costs nothing (h48 P10)", async () => {
  const server = await startServerRole();
  try {
    const { exe, args } = distCommand([
      "client",
      "-c",
      `127.0.0.1:${server.port}`,
      "--bench",
      "--concurrency",
      "10000000",
      "--requests",
      "10",
    ]);
    const child = new Deno.Command("sh", {
      args: ["-c", `ulimit -d ${2 << 20} && exec "$0" "$@"`, exe, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited just now.
      }
    }, RUN_MS);
    const out = await child.output();
    clearTimeout(timer);
    const stderr = new TextDecoder().decode(out.stderr).slice(-500);
    assert.equal(timedOut, false, `still running after ${RUN_MS} ms for 10 requests`);
    if (out.code === 2) {
      assert.match(stderr, /^dist: .*--concurrency/m);
      return;
    }
    assert.equal(out.code, 0, stderr);
    assert.match(new TextDecoder().decode(out.stdout), /10 ok/);
  } finally {
    await server.stop();
  }
});
