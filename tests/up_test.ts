/**
 * Scenario tests of `dist up`: real launchers running real copies of dist,
 * on port 0 (the launcher learns each port from the `Listening on` line and
 * hands it to whoever references that instance). Every launcher is stopped
 * in `finally`, and every child it reported is checked gone.
 */
import assert from "node:assert/strict";
import { DEFAULT_TOPOLOGY, DEFAULT_TOPOLOGY_FILE, parseTopology } from "../config/mod.ts";
import { ROLES } from "../roles/mod.ts";
import { probe } from "../launch/probe.ts";
import { sleep } from "./helpers/raw.ts";
import { freePort, runDist } from "./helpers/dist.ts";
import { endsWith, linesOf, stopCleanly, withUp } from "./helpers/up.ts";

/** What a random operation of the client should come to, computed here independently. */
function expected(op: string): number {
  const [method, ...args] = op.split(" ");
  const n = args.join(" ").split(/[ ,]/).map(Number);
  switch (method) {
    case "add":
      return n[0] + n[1];
    case "sub":
      return n[0] - n[1];
    case "mul":
      return n[0] * n[1];
    case "div":
      return n[0] / n[1];
    case "sum":
      return n.reduce((a, b) => a + b, 0);
  }
  throw new Error(`Unexpected operation ${op}`);
}

Deno.test("dist up --dry-run lists every instance of the default topology in a valid order", async () => {
  const [text, json] = await Promise.all([
    runDist(["up", "--dry-run"]),
    runDist(["up", "--dry-run", "--json"]),
  ]);
  assert.equal(text.code, 0, text.stderr);
  assert.equal(json.code, 0, json.stderr);
  const names = parseTopology(DEFAULT_TOPOLOGY, { file: DEFAULT_TOPOLOGY_FILE, roles: ROLES })
    .instances.map((i) => i.name);
  const plan = json.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(plan.map((p) => p.name).toSorted(), names.toSorted());
  const seen = new Set<string>();
  let step = 1;
  for (const p of plan) {
    for (const dep of p.after) assert.ok(seen.has(dep), `${p.name} starts before ${dep}`);
    assert.ok(p.step >= step, `steps go up: ${p.name}`);
    assert.equal(p.argv[0], p.role);
    step = p.step;
    seen.add(p.name);
  }
  // The text form: one row per instance, then each command line.
  for (const name of names) {
    assert.match(text.stdout, new RegExp(`^\\d+ +${name} `, "m"));
    assert.match(text.stdout, new RegExp(`^  ${name} +dist \\w+ --name=${name}`, "m"));
  }
});

Deno.test("dist up --duration runs a small topology: all ready, right results, exit 0, nothing left", async () => {
  const topology = [
    "[[server]]",
    'name = "server"',
    "replicas = 2",
    "port = 0",
    "",
    "[[client]]",
    'name = "client"',
    'connect = "server-2"',
    "random = 20",
    "json = true",
  ].join("\n");
  await withUp(topology, ["--duration", "6s"], async (up) => {
    const { stdout: out } = await endsWith(up, 0);
    assert.match(out, /^dist up: server-1 ready at 127\.0\.0\.1:\d+/m);
    assert.match(out, /^dist up: server-2 ready at 127\.0\.0\.1:\d+/m);
    assert.match(out, /^dist up: All 3 ready in/m);
    assert.match(out, /^dist up: Stopping \(--duration 6s is over\)/m);
    // Every child line carries its name, padded to the longest ("server-1").
    assert.match(out, /^client {3}\| \{/m);
    const answers = linesOf(out, "client").map((l) => JSON.parse(l));
    assert.equal(answers.length, 21, out);
    for (const a of answers.slice(0, 20)) {
      assert.equal(a.ok, true, JSON.stringify(a));
      assert.equal(a.by, "server-2");
      assert.ok(Math.abs(a.result - expected(a.op)) < 1e-9, `${a.op} = ${a.result}`);
    }
    assert.deepEqual(answers[20], { summary: { ok: 20, errors: 0, by: { "server-2": 20 } } });
    assert.equal(up.pids().length, 3);
  });
});

Deno.test("dist up stops dependents before what they depend on, exits 0 on SIGTERM", async () => {
  const topology = [
    "[[server]]",
    "port = 0",
    "[[client]]",
    'connect = "server"',
    "bench = true",
    'duration = "60s"',
    "concurrency = 1",
    "rate = 50",
  ].join("\n");
  await withUp(topology, [], async (up) => {
    const [, address] = await up.waitFor(/server ready at (\S+)/);
    await up.waitFor(/All 2 ready/);
    // Stop once the client is busy (its SIGTERM handler set): the server has
    // answered more requests than these probes.
    for (let probes = 1;; probes++) {
      const stats = await probe(address, "sys.stats", { timeoutMs: 1000 });
      const requests = stats.ok ? (stats.result as { requests: number }).requests : 0;
      if (requests > probes + 1) break;
      assert.ok(probes < 200, "the client sends nothing");
      await sleep(50);
    }
    const { stdout: out } = await stopCleanly(up, "SIGTERM");
    const client = out.indexOf("dist up: client stopped");
    const server = out.indexOf("dist up: server stopped");
    assert.ok(client > 0 && server > client, `client stops first:\n${out}`);
    assert.match(out, /Stopping \(SIGTERM\)/);
    // The bench reports what it did before it exits.
    assert.ok(linesOf(out, "client").some((l) => /requests? in/.test(l)), out);
  });
});

Deno.test("children of a launcher killed with SIGKILL stop by themselves", async () => {
  await withUp("[[server]]\nreplicas = 2\nport = 0\n", [], async (up) => {
    await up.waitFor(/All 2 ready/);
    assert.equal(up.pids().length, 2);
    up.child.kill("SIGKILL");
    // Each child notices its parent is gone within half a second, then stops.
    await endsWith(up, 137);
  });
});

Deno.test("dist up exits 1 naming an instance with restart = no that failed", async () => {
  const lonely = `[[client]]\nname = "lonely"\nconnect = "127.0.0.1:${freePort()}"\nrandom = 3\n`;
  await withUp(lonely, [], async (up) => {
    const result = await endsWith(up, 1);
    assert.match(result.stdout, /lonely failed \(exit code 1\)/);
    assert.equal(result.stderr.trim(), "dist: lonely failed (exit code 1)");
  });
});

Deno.test("dist up gives up on an instance that is not ready in time, naming it", async () => {
  // The worker dials something that accepts and never answers: it never
  // registers, so it is never ready, and what waits for it never starts.
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of silent) held.push(conn);
  })().catch(() => {});
  const topology = `[[worker]]\nname = "stuck"\nbalancer = "127.0.0.1:${silent.addr.port}"\n` +
    '[[balancer]]\nport = 0\nworker_port = 0\n[[client]]\nconnect = "balancer"\nrandom = 1\n';
  try {
    await withUp(topology, ["--ready-timeout", "3s"], async (up) => {
      const result = await endsWith(up, 1);
      assert.match(result.stderr, /^dist: stuck was not ready within 3s/);
      assert.match(result.stdout, /stuck started/);
    });
  } finally {
    silent.close();
    for (const conn of held) conn.close();
    await accepting;
  }
});
