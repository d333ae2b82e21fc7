/**
 * A balancer in `--mode tcp` in a topology file: the file takes `mode`,
 * two such balancers share no worker port (they bind none), `dist up` finds
 * one ready by its `Listening on` line (a `sys.ping` would go through to a
 * backend), and what dials it waits for it; `dist --config` runs one.
 */
import assert from "node:assert/strict";
import { freePort, runDist, startDist } from "./helpers/dist.ts";
import { endsWith, linesOf, topologyFile, withUp } from "./helpers/up.ts";
import { exportsOf, k8sObjects } from "./helpers/export.ts";

Deno.test("dist up: balancers in --mode tcp are ready once listening, share no worker port, and carry a dist client to the servers", async () => {
  // Both balancers keep the built-in worker_port (8889): neither binds it, so no clash.
  const topology = [
    "[[server]]",
    'name = "s"',
    "replicas = 2",
    "port = 0",
    "[[balancer]]",
    'name = "l4"',
    'mode = "tcp"',
    `port = ${freePort()}`,
    'backends = ["s"]',
    "[[balancer]]",
    'name = "l4b"',
    'mode = "tcp"',
    "port = 0",
    'backends = ["s"]',
    "[[client]]",
    'connect = "l4"',
    "random = 6",
    "json = true",
  ].join("\n");
  await withUp(topology, ["--duration", "5s"], async (up) => {
    const { stdout: out } = await endsWith(up, 0);
    assert.match(out, /^dist up: l4 ready at 127\.0\.0\.1:\d+ \(/m, out);
    assert.match(out, /^dist up: l4b ready/m, out);
    assert.match(out, /^dist up: All 5 ready in/m, out);
    // dist's own protocol through an L4 balancer: bytes untouched, so it just works.
    const summary = JSON.parse(linesOf(out, "client").at(-1)!).summary;
    assert.equal(summary.ok, 6, out);
    assert.ok(Object.keys(summary.by).every((s) => /^s-[12]$/.test(s)), out);
  });
});

Deno.test("dist --config runs a balancer in --mode tcp; a worker_port given to one is refused", async () => {
  const backend = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const file = await topologyFile([
    "[[balancer]]",
    'name = "edge"',
    'mode = "tcp"',
    "port = 0",
    `backends = ["127.0.0.1:${(backend.addr as Deno.NetAddr).port}"]`,
    'idle_timeout = "30s"',
  ].join("\n"));
  try {
    const lb = await startDist(["--config", file, "--name", "edge"]);
    const stopped = await lb.stop();
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.match(stopped.stderr, /edge: Passing TCP connections to 1 backend\(s\)/);
    const wrong = await startDist(["--config", file, "--name", "edge", "--worker-port", "0"])
      .then(async (p) => (await p.stop()).stderr, (err: Error) => err.message);
    assert.match(wrong, /dist: --worker-port applies only with --mode rpc/);
  } finally {
    backend.close();
    await Deno.remove(file);
  }
});

Deno.test("dist export of examples/l4.toml: the TCP balancer is probed by a TCP connect, never asked sys.ping, and has no worker port", async () => {
  const source = {
    file: "examples/l4.toml",
    text: await Deno.readTextFile(new URL("../examples/l4.toml", import.meta.url)),
  };
  const text = async (target: string) =>
    (await exportsOf(target, source))[0].files.map((f) => f.text).join("\n");
  const k8s = await text("k8s");
  const l4 = k8sObjects(k8s).find((o) =>
    o.kind === "Deployment" && (o.metadata as { name: string }).name === "l4"
  );
  const container = JSON.stringify(l4);
  assert.match(container, /"readinessProbe":\{"tcpSocket":\{"port":6556\}/);
  // Its own probes connect; only its wait for the servers (which speak dist) asks sys.ping.
  assert.doesNotMatch(container, /Probe":\{"exec"|8889|worker-port/);
  const compose = await text("compose");
  const service = compose.slice(
    compose.indexOf("\n  l4:"),
    compose.indexOf("\n  # client client-1"),
  );
  assert.doesNotMatch(service, /healthcheck|8889/);
  assert.match(compose, /client-1:[\s\S]*?l4:\n\s+condition: service_started/);
  const systemd = await text("systemd");
  const unit = systemd.slice(systemd.indexOf("dist balancer l4"));
  assert.match(unit, /answers no sys.ping|nothing to ask sys.ping/);
});

Deno.test("dist status shows a --mode tcp balancer's figures, read from its --metrics", async () => {
  const l4 = freePort(), metrics = freePort();
  const topology = [
    "[[server]]",
    'name = "s"',
    "replicas = 2",
    "port = 0",
    "[[balancer]]",
    'name = "l4"',
    'mode = "tcp"',
    `port = ${l4}`,
    `metrics = "127.0.0.1:${metrics}"`,
    'backends = ["s"]',
  ].join("\n");
  await withUp(topology, [], async (up, file) => {
    await up.waitFor(/All 3 ready/);
    const calls = await runDist(["client", "--connect", `127.0.0.1:${l4}`, "--random", "3"]);
    assert.equal(calls.code, 0, calls.stderr);
    const status = await runDist(["status", file, "--json"]);
    assert.equal(status.code, 0, status.stderr);
    const rows = status.stdout.trim().split("\n").map((l) => JSON.parse(l));
    const row = rows.find((r) => r.instance === "l4");
    assert.equal(row.state, "up", status.stdout);
    // Both servers, both healthy, and the client's connection passed to one of them.
    assert.equal(row.figures.backends, 2, status.stdout);
    assert.equal(row.figures.healthy, 2, status.stdout);
    assert.ok(row.figures.backend_connections >= 1, status.stdout);
    const table = await runDist(["status", file]);
    assert.match(table.stdout, /^l4 +balancer .*healthy=2 backends=2/m, table.stdout);
  });
});
