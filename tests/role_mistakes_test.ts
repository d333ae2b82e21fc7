/**
 * Mistakes a user makes in the first ten minutes (issue 13), each met as a
 * user would meet it: one clear line naming the cause and what to give.
 */
import assert from "node:assert/strict";
import { freePort, lines, runDist, startDist } from "./helpers/dist.ts";
import { assertUserError } from "./helpers/cli.ts";
import { startBalancer } from "./helpers/balancer.ts";
import { startBinder } from "./helpers/binder.ts";
import { waitFor } from "./helpers/raw.ts";

Deno.test("a worker given a balancer's client port, or a server's port, says so and exits 1", async () => {
  const server = await startDist(["server", "--port", "0", "--name", "srv"]);
  const balancer = await startBalancer([server], ["--name", "bal"]);
  try {
    const t0 = performance.now();
    const [toClientPort, toServer] = await Promise.all([
      runDist(["worker", "--balancer", balancer.address]),
      runDist(["worker", "--balancer", server.address]),
    ]);
    assert.ok(performance.now() - t0 < 10_000, "at once, not after retries");
    const line = lines(toClientPort.stderr).find((l) => l.startsWith("dist: "));
    assert.equal(toClientPort.code, 1, toClientPort.stderr);
    assert.equal(
      line,
      `dist: UNKNOWN_METHOD: ${balancer.address} is not a balancer's worker port: bal (balancer) ` +
        `answered worker.register with: This is the client port of bal: workers dial its worker ` +
        `port, ${balancer.workerAddress} (--worker-port): give the worker --balancer ` +
        balancer.workerAddress,
    );
    assert.equal(toServer.code, 1, toServer.stderr);
    assert.match(
      toServer.stderr,
      new RegExp(
        `dist: UNKNOWN_METHOD: ${server.address} is not a balancer's worker port: srv \\(server\\)`,
      ),
    );
    // The reverse mistake keeps its message: a client on the worker port.
    const client = await runDist(["client", "-c", balancer.workerAddress, "add", "1", "2"]);
    assert.match(
      assertUserError(client, 1, "client on the worker port"),
      /Unknown method on the worker port: add \(workers call worker.register\)/,
    );
  } finally {
    await balancer.stop();
    await server.stop();
  }
});

Deno.test("a mistyped --service is told at once which services exist; --connect beside --service is refused", async () => {
  const binder = await startBinder();
  const server = await startDist([
    "server",
    "--port",
    "0",
    "--service",
    "compute",
    "--binders",
    binder.address,
  ]);
  try {
    await waitFor(() => /Registered as compute@/.test(server.stderr()), 10_000, "registration");
    const t0 = performance.now();
    const typo = runDist([
      "client",
      "--service",
      "compte",
      "--binders",
      binder.address,
      "--wait",
      "3s",
      "add",
      "1",
      "2",
    ]);
    const r = await typo;
    assert.equal(r.code, 1, r.stderr);
    const [warning, ...rest] = lines(r.stderr);
    assert.match(
      warning,
      /\[WRN\] .*No instance of service "compte" yet \(did you mean "compute"\?\); services registered: compute; waiting up to 3s for one$/,
    );
    assert.equal(
      rest.at(-1),
      `dist: NOT_FOUND: No instance of service "compte" (asked ${binder.address}) ` +
        '(did you mean "compute"?); services registered: compute',
    );
    assert.ok(performance.now() - t0 < 10_000);
    // The right name works, and --connect beside --service is a mistake said before anything.
    const right = await runDist([
      "client",
      "--service",
      "compute",
      "--binders",
      binder.address,
      "add",
      "1",
      "2",
    ]);
    assert.equal(right.stdout, "3\n", right.stderr);
    const both = await runDist([
      "client",
      "--service",
      "compute",
      "--connect",
      server.address,
      "add",
      "1",
      "2",
    ]);
    assert.equal(
      assertUserError(both, 2, "--connect with --service"),
      "dist: --connect and --service both say where requests go: give one " +
        "(--service finds an instance through --binders)",
    );
  } finally {
    await server.stop();
    await binder.stop();
  }
});

Deno.test("--random N with no healthy backend stops at the first UNAVAILABLE, saying why", async () => {
  // A balancer whose only backend is a port where nothing listens.
  const balancer = await startBalancer([], [
    "--backends",
    `127.0.0.1:${freePort()}`,
    "--queue-timeout",
    "1s",
  ]);
  try {
    const r = await runDist(["client", "-c", balancer.address, "--random", "5"]);
    assert.equal(r.code, 1, r.stderr);
    const out = lines(r.stdout);
    assert.equal(out.length, 2, r.stdout);
    assert.match(out[0], /-> UNAVAILABLE: No healthy backend within 1000 ms$/);
    assert.equal(
      out[1],
      "1 request: 0 ok, 1 error; by: none (stopped at the first UNAVAILABLE: 4 not sent)",
    );
    const json = await runDist(["client", "-c", balancer.address, "--random", "3", "--json"]);
    const summary = JSON.parse(lines(json.stdout).at(-1)!).summary;
    assert.equal(summary.not_sent, 2);
    assert.match(summary.stopped, /^UNAVAILABLE: No healthy backend/);
  } finally {
    await balancer.stop();
  }
});
