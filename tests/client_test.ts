/**
 * Scenario tests of the client as a demanding user drives it (issue 10): an
 * honest benchmark, a `--rate` that keeps its promises, input that one mode
 * would ignore. Real processes on port 0, stopped in `finally`.
 */
import assert from "node:assert/strict";
import { distCommand, lines, runDist } from "./helpers/dist.ts";
import { assertUserError, withServer } from "./helpers/cli.ts";

Deno.test("a bench whose server dies stops, counting only successes as throughput", async () => {
  await withServer(async (server) => {
    const { exe, args } = distCommand([
      "client",
      "--connect",
      server.address,
      "--bench",
      "--duration",
      "4s",
      // A fixed rate: the test need not take every core of the machine.
      "--rate",
      "3000",
      "--concurrency",
      "8",
      "--json",
    ]);
    const bench = new Deno.Command(exe, { args, stdout: "piped", stderr: "piped" }).spawn();
    const output = bench.output();
    // Kill the server once the bench is under way (start-up is slow on a loaded machine).
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const stats = await runDist(["client", "--connect", server.address, "--json", "sys.stats"]);
      if (stats.code === 0 && JSON.parse(stats.stdout).result.requests > 1000) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await server.stop("SIGKILL");
    const out = await output;
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 1, stderr);
    const summary = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.match(summary.stopped, /^connection to server-\d+ lost after [\d.]+ s$/);
    assert.ok(summary.duration_s < 3.5, `ran ${summary.duration_s} s after the server died`);
    // Only the requests in flight when it died failed, not thousands in a loop.
    const failed = summary.requests - summary.ok;
    assert.ok(failed >= 1 && failed <= 8, `failed ${failed}`);
    assert.ok(summary.ok > 0);
    // Throughput counts successes only (duration_s is rounded to the ms).
    const rps = summary.ok / summary.duration_s;
    assert.ok(Math.abs(summary.rps - rps) <= rps * 0.01 + 1, `rps ${summary.rps}, ok/s ${rps}`);
  });
});

Deno.test("a bench whose first request fails says so and does not run", async () => {
  await withServer(async (server) => {
    const c = ["client", "--connect", server.address, "--bench"];
    const [unknown, bad] = await Promise.all([
      runDist([...c, "--op", "foo"]),
      runDist([...c, "--op", "div 1 0"]),
    ]);
    assert.equal(
      assertUserError(unknown, 1, "--op foo"),
      "dist: UNKNOWN_METHOD: The first request failed, so the benchmark did not run: " +
        "Unknown method: foo",
    );
    assert.equal(unknown.stdout, "");
    assert.match(assertUserError(bad, 1, "--op div 1 0"), /^dist: BAD_REQUEST: .*zero/i);
  });
});

Deno.test("--rate ends at its duration and says when the rate was not reached", async () => {
  await withServer(async (server) => {
    const c = ["client", "--connect", server.address, "--bench", "--duration", "0.6s"];
    const [short, json] = await Promise.all([
      runDist([...c, "--rate", "50000", "--concurrency", "1"]),
      runDist([...c, "--rate", "50000", "--concurrency", "1", "--json"]),
    ]);
    assert.equal(short.code, 0, short.stderr);
    assert.match(
      short.stdout,
      /^rate: target 50,000\/s, achieved [\d,]+\/s: --concurrency 1 was the limit: raise --concurrency; start lag ms: p50 [\d.]+ +p99 [\d.]+ +max [\d.]+$/m,
    );
    const summary = JSON.parse(json.stdout);
    // 0.6 s of schedule, then only what was in flight: one request.
    assert.ok(summary.duration_s < 1.2, `ran ${summary.duration_s} s`);
    assert.equal(summary.rate, 50000);
    assert.ok(summary.achieved_rate < 50000 * 0.95, `achieved ${summary.achieved_rate}`);
    assert.match(summary.advice, /raise --concurrency/);
    // Latency counts from the schedule: requests that waited for the slot waited.
    assert.ok(summary.latency_ms.max > 100, `max ${summary.latency_ms.max} ms`);
  });
});

Deno.test("--rate keeps its schedule and reports how late requests started", async () => {
  await withServer(async (server) => {
    const r = await runDist([
      "client",
      "--connect",
      server.address,
      "--bench",
      "--rate",
      "1000",
      "--duration",
      "1s",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.rate, 1000);
    assert.equal(s.advice, undefined);
    assert.ok(s.requests >= 950 && s.requests <= 1001, `${s.requests} requests`);
    assert.ok(s.achieved_rate >= 950, `achieved ${s.achieved_rate}`);
    const lag = s.start_lag_ms;
    assert.ok(0 <= lag.p50 && lag.p50 <= lag.p99 && lag.p99 <= lag.max, JSON.stringify(lag));
  });
});

Deno.test("input one mode would ignore is a one-line error, exit 2", async () => {
  const c = ["client", "--connect", "127.0.0.1:1"];
  const cases: [string[], string][] = [
    [["--bench", "--random", "5"], "--bench and --random are two modes: give one"],
    [
      ["--random", "3", "add", "1", "2"],
      '--random sends random operations, not "add 1 2": give one or the other',
    ],
    [
      ["--bench", "--requests", "3", "add", "1", "2"],
      '--bench sends its --op, not "add 1 2": write --op "add 1 2"',
    ],
    [["--requests", "5"], "--requests is a --bench flag: add --bench"],
    [
      ["--concurrency", "4", "--rate", "10", "add", "1", "2"],
      "--concurrency, --rate are --bench flags: add --bench",
    ],
    [
      ["--bench", "--op", "add 1 2", "--payload", "5"],
      '--payload sizes an echo: it does not apply to --op "add 1 2"',
    ],
    [["ad", "1", "2"], 'Unknown operation "ad" (did you mean "add"?)'],
    [["ADD", "1", "2"], 'Unknown operation "ADD" (did you mean "add"?)'],
    [["--bench", "--op", "mull 2 3"], 'Unknown operation "mull" (did you mean "mul"?)'],
  ];
  const results = await Promise.all(cases.map(([args]) => runDist([...c, ...args])));
  results.forEach((r, i) => {
    const what = `dist client ${cases[i][0].join(" ")}`;
    assert.equal(assertUserError(r, 2, what), `dist: ${cases[i][1]}`, what);
    assert.equal(r.stdout, "", what);
  });
});

Deno.test("a mistyped operation from a pipe is reported and the next line still runs", async () => {
  await withServer(async (server) => {
    const r = await runDist(["client", "--connect", server.address], {
      stdin: "ad 1 2\nadd 1 2\n",
    });
    assert.equal(r.code, 1, r.stderr);
    assert.deepEqual(lines(r.stdout), [
      'error BAD_REQUEST: Unknown operation "ad" (did you mean "add"?)',
      "3",
    ]);
  });
});
