/**
 * `dist up` with the roles that depend on each other in the default
 * topology: workers that register with a balancer, servers that register
 * with binders, a client that resolves a service through them.
 */
import assert from "node:assert/strict";
import { freePort } from "./helpers/dist.ts";
import { endsWith, linesOf, withUp } from "./helpers/up.ts";

Deno.test("dist up waits for workers to register, and the balancer spreads over them", async () => {
  const topology = [
    "[[balancer]]",
    "port = 0",
    `worker_port = ${freePort()}`,
    "[[worker]]",
    'name = "worker"',
    "replicas = 2",
    'balancer = "balancer"',
    "[[client]]",
    'connect = "balancer"',
    "random = 10",
    "json = true",
  ].join("\n");
  await withUp(topology, ["--duration", "5s"], async (up) => {
    const { stdout: out } = await endsWith(up, 0);
    assert.match(out, /^dist up: worker-1 ready \(/m);
    assert.match(out, /^dist up: worker-2 ready \(/m);
    assert.match(out, /^dist up: All 4 ready in/m);
    const summary = JSON.parse(linesOf(out, "client").at(-1)!).summary;
    assert.equal(summary.ok, 10, out);
    // No servers: every answer came from a worker.
    assert.ok(Object.keys(summary.by).every((w) => /^worker-[12]$/.test(w)), out);
  });
});

Deno.test("dist up runs servers registered with binders, and a client that finds them", async () => {
  // Binders name each other as peers: they start together, on fixed ports.
  const [b1, b2] = [freePort(), freePort()];
  const topology = [
    "[[binder]]",
    'name = "b1"',
    `port = ${b1}`,
    'peers = ["b1", "b2"]',
    "[[binder]]",
    'name = "b2"',
    `port = ${b2}`,
    'peers = ["b1", "b2"]',
    "[[server]]",
    'name = "compute"',
    "replicas = 2",
    "port = 0",
    'service = "compute"',
    'binders = ["b1", "b2"]',
    "[[client]]",
    'name = "resolver"',
    'service = "compute"',
    'binders = ["b2"]',
    "random = 5",
    "json = true",
  ].join("\n");
  await withUp(topology, ["--duration", "5s"], async (up) => {
    const { stdout: out } = await endsWith(up, 0);
    // The servers wait for the binders, the binders for nothing.
    assert.ok(out.indexOf("b2 ready") < out.indexOf("compute-1 started"), out);
    const summary = JSON.parse(linesOf(out, "resolver").at(-1)!).summary;
    assert.equal(summary.ok, 5, out);
    assert.ok(Object.keys(summary.by).every((s) => /^compute-[12]$/.test(s)), out);
  });
});
