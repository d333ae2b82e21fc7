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
import { distCommand, runDist, spawnDist } from "./helpers/dist.ts";
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

Deno.test("client --bench --connections above the requests in flight, or past the caps, is refused (h48 P10)", async () => {
  for (
    const [flags, message] of [
      [
        ["--connections", "20", "--concurrency", "10"],
        /^dist: --connections 20 is more than the 10 /m,
      ],
      [["--connections", "8", "--requests", "4"], /^dist: --connections 8 is more than the 4 /m],
      [["--concurrency", "1000000"], /^dist: --concurrency: must be between 1 and 100000/m],
    ] as const
  ) {
    // Nothing listens at port 9 (discard): refused before any dial, so this is no network wait.
    const r = await runDist(["client", "-c", "127.0.0.1:9", "--bench", ...flags]);
    assert.equal(r.code, 2, `${flags.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
});

Deno.test("client --bench: SIGTERM stops dials that hang (h48 P10)", async () => {
  // Takes connections and never answers the hello: every dial waits for its --timeout (60 s).
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of silent) held.push(conn);
  })().catch(() => {});
  const run = spawnDist([
    "client",
    "-c",
    `127.0.0.1:${silent.addr.port}`,
    "--bench",
    "--connections",
    "100",
    "--concurrency",
    "100",
    "--timeout",
    "60s",
  ]);
  try {
    // Wait for the first group of dials to be made (each accepted by the listener).
    const deadline = Date.now() + 15_000;
    while (held.length < 64 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(held.length >= 64, `${held.length} dials accepted`);
    const t0 = performance.now();
    run.child.kill("SIGTERM");
    const timer = setTimeout(() => run.child.kill("SIGKILL"), 20_000);
    const status = await run.child.status;
    clearTimeout(timer);
    await run.read;
    const ms = performance.now() - t0;
    // Before: it waited for the 60 s timeout of every dial; 20 s is a third of that.
    assert.equal(status.signal, null, `killed after ${ms.toFixed(0)} ms: ${run.stderr()}`);
    assert.equal(status.code, 130, run.stderr());
    assert.match(run.stderr(), /^dist: Interrupted while opening 100 connections/m);
    // Only the first group was dialed: the second never started.
    assert.ok(held.length <= 64, `${held.length} dials made`);
  } finally {
    silent.close();
    await accepting;
    for (const conn of held) conn.close();
  }
});
