/**
 * What the logs show (issue 13 items 12 and 14): at debug, a server and a
 * worker log each request with its params and its result or error code
 * (cut to 200 characters), and the balancer where it sent each; a clean
 * stop of a balancer logs no warning; counts of one are singular.
 */
import assert from "node:assert/strict";
import { runDist, startDist } from "./helpers/dist.ts";
import { startBalancer, startWorker } from "./helpers/balancer.ts";

Deno.test("at debug, server, worker and balancer log each request and where it went; a clean stop warns of nothing", async () => {
  const server = await startDist([
    "server",
    "--port",
    "0",
    "--name",
    "srv",
    "--log-level",
    "debug",
  ]);
  const balancer = await startBalancer([server], ["--name", "bal", "--log-level", "debug"]);
  const worker = await startWorker(balancer.workerAddress, [
    "--name",
    "w1",
    "--log-level",
    "debug",
  ]);
  let workerLog = "";
  try {
    const c = ["client", "-c", balancer.address, "--name", "cli"];
    // Round-robin over srv and w1: two of each kind reach each backend.
    const long = "x".repeat(300);
    for (const op of [["add", "3", "4"], ["div", "1", "0"], ["echo", long], ["eval", "2*pi"]]) {
      await runDist([...c, ...op]);
    }
    const one = await runDist([...c, "--random", "1"]);
    assert.match(one.stdout, /^1 request: 1 ok, 0 errors; by: \w+ ×1$/m, "one request, singular");
  } finally {
    await balancer.stop();
    const workerStopped = worker.stop();
    workerLog = worker.stderr();
    await workerStopped;
    workerLog = worker.stderr();
    await server.stop();
  }
  const both = server.stderr() + workerLog;
  assert.match(both, /\[DBG\] (srv|w1): bal: add \{"a":3,"b":4\} -> 7\n/);
  assert.match(
    both,
    /\[DBG\] (srv|w1): bal: div \{"a":1,"b":0\} -> BAD_REQUEST: Division by zero\n/,
  );
  assert.match(both, /\[DBG\] (srv|w1): bal: eval \{"expr":"2\*pi"\} -> 6\.283185307179586\n/);
  // Long params and results are cut, saying how long they were.
  assert.match(both, /echo \{"text":"x{191}… \(311 chars\) -> "x{199}… \(302 chars\)\n/);
  // Each of the two reached both kinds of backend: srv's and w1's lines both exist.
  assert.match(server.stderr(), /srv: bal: \w+ /);
  assert.match(workerLog, /w1: bal: \w+ /);
  assert.doesNotMatch(server.stderr() + workerLog, /sys\.ping/, "health checks are not logged");
  const bal = balancer.stderr();
  assert.match(bal, /\[DBG\] bal: cli add -> 127\.0\.0\.1:\d+ \(srv\): ok in [\d.]+ ms/);
  assert.match(bal, /\[DBG\] bal: cli eval -> (w1|127\.0\.0\.1:\d+ \(srv\)): ok in/);
  // A clean stop: no warning, one singular-or-plural summary.
  assert.doesNotMatch(bal, /\[(WRN|ERR)\]/, bal);
  assert.match(bal, /Stopped after 5 requests \(0 retried\)/);
});
