/**
 * The original lab's test table, with real `dist binder`, `dist server
 * --service` and `dist client --service` processes. Rows 5, 9 and 10 are
 * about one binder's answers and run in-process in binder_role_test.ts; row 2
 * waits on the launcher for the "is restarted" half (see the test).
 */
import assert from "node:assert/strict";
import { connectTo, ids, startBinderProcs, startService, waitUntil } from "./helpers/binder.ts";
import { type DistProcess, freePort, lines, runDist, startDist } from "./helpers/dist.ts";

/** `dist client --service … --json OP…`: the outcome object. */
async function callService(service: string, binders: string, op: string[], extra: string[] = []) {
  const r = await runDist([
    "client",
    "--service",
    service,
    "--binders",
    binders,
    "--json",
    ...extra,
    ...op,
  ]);
  assert.equal(r.code, 0, `client ${op.join(" ")}: stderr:\n${r.stderr}`);
  return { ...JSON.parse(lines(r.stdout).at(-1)!), stderr: r.stderr };
}

Deno.test("lab rows 1 and 8: a client takes a binder at random, survives one being down, and servers are handed out cyclically", async () => {
  const cluster = await startBinderProcs(1);
  const servers: DistProcess[] = [];
  try {
    for (let i = 0; i < 3; i++) servers.push(await startService("compute", cluster.list));
    const down = `127.0.0.1:${freePort()}`;
    const by: string[] = [];
    // The dead binder first, then last, then alone with the live one: the client gets through.
    for (const binders of [`${down},${cluster.list}`, `${cluster.list},${down}`, cluster.list]) {
      const out = await callService("compute", binders, ["add", "3", "4"]);
      assert.equal(out.result, 7);
      by.push(out.by);
    }
    // Three lookups on the binder: each server once.
    assert.equal(new Set(by).size, 3, `served by ${by}`);
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await cluster.stop();
  }
});

Deno.test("lab rows 2 and 3: a binder started after a server registered knows it before answering, and so does a restarted one", async () => {
  const cluster = await startBinderProcs(1);
  const ports = [freePort()];
  const peers = [...cluster.addresses, `127.0.0.1:${ports[0]}`].join(",");
  let second: DistProcess | undefined;
  let server: DistProcess | undefined;
  try {
    server = await startService("compute", cluster.list, ["--ttl", "30s"]);
    const start = () => startDist(["binder", "--port", String(ports[0]), "--peers", peers]);
    second = await start();
    // The first request, sent as soon as the new binder listens, finds the server.
    const out = await callService("compute", second.address, ["echo", "hi"]);
    assert.equal(out.result, "hi");
    // Killed and restarted (as the launcher will do), it catches up again before answering.
    await second.stop("SIGKILL");
    second = await start();
    assert.equal((await ids(second.address, "compute")).length, 1);
    assert.match(second.stderr(), /Ready to answer \(caught up from /);
  } finally {
    await server?.stop();
    await second?.stop();
    await cluster.stop();
  }
});

Deno.test("lab row 2: a server that dies and is restarted on its port is back in the registry", async () => {
  const cluster = await startBinderProcs(2);
  const port = freePort();
  const args = ["--service", "compute", "--binders", cluster.list, "--port", String(port)];
  const start = () => startDist(["server", ...args, "--ttl", "30s"]);
  let server: DistProcess | undefined;
  try {
    server = await start();
    const id = `compute@127.0.0.1:${port}`;
    await waitUntil(async () => (await ids(cluster.addresses[1])).includes(id), "registration");
    await server.stop("SIGKILL");
    // Found dead on a report, removed everywhere…
    const peer = await connectTo(cluster.addresses[0]);
    assert.deepEqual(await peer.call("binder.report_down", { id }), {
      id,
      alive: false,
      removed: true,
    });
    peer.close();
    await waitUntil(async () => (await ids(cluster.addresses[1])).length === 0, "removal");
    // …restarted, it registers again and is handed out by every binder.
    server = await start();
    for (const address of cluster.addresses) {
      await waitUntil(async () => (await ids(address)).includes(id), `${address} to know it`);
    }
  } finally {
    await server?.stop();
    await cluster.stop();
  }
});

Deno.test("lab row 4: a client asking for an unknown service waits, then stops with a clear message", async () => {
  const cluster = await startBinderProcs(1);
  let server: DistProcess | undefined;
  try {
    const t0 = performance.now();
    const r = await runDist([
      "client",
      "--service",
      "nope",
      "--binders",
      cluster.list,
      "--wait",
      "1s",
      "add",
      "1",
      "2",
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(performance.now() - t0 >= 1000);
    assert.match(
      r.stderr,
      /No instance of service "nope" yet; no service is registered with the binders; waiting up to 1s for one/,
    );
    assert.equal(
      lines(r.stderr).at(-1),
      `dist: NOT_FOUND: No instance of service "nope" (asked ${cluster.addresses[0]}); ` +
        "no service is registered with the binders",
    );
    assert.equal(r.stdout, "");
    // A service that appears during the wait is used.
    const waiting = runDist([
      "client",
      "--service",
      "late",
      "--binders",
      cluster.list,
      "add",
      "1",
      "2",
    ]);
    server = await startService("late", cluster.list);
    const late = await waiting;
    assert.equal(late.code, 0, late.stderr);
    assert.equal(late.stdout, "3\n");
  } finally {
    await server?.stop();
    await cluster.stop();
  }
});

Deno.test("lab rows 6 and 7: a client reports an unavailable server; the binders drop it everywhere", async () => {
  const cluster = await startBinderProcs(2);
  const servers: DistProcess[] = [];
  try {
    // A long lease: only the report can remove the dead server this quickly.
    for (let i = 0; i < 2; i++) {
      servers.push(await startService("compute", cluster.addresses[0], ["--ttl", "60s"]));
    }
    for (const address of cluster.addresses) {
      await waitUntil(async () => (await ids(address)).length === 2, "both servers everywhere");
    }
    await servers[0].stop("SIGKILL");
    const deadId = `compute@127.0.0.1:${servers[0].port}`;
    // Binder 1 hands out both in turn: one of two clients gets the dead one.
    const outs = [];
    for (let i = 0; i < 2; i++) {
      outs.push(await callService("compute", cluster.addresses[0], ["echo", "x"]));
    }
    for (const out of outs) assert.equal(out.by, `server-${servers[1].port}`);
    const reporter = outs.find((o) => /Reported .* down: removed/.test(o.stderr));
    assert.ok(reporter, `no client reported:\n${outs.map((o) => o.stderr).join("\n")}`);
    assert.match(reporter.stderr, /Cannot reach compute@127\.0\.0\.1:\d+ /);
    for (const address of cluster.addresses) {
      await waitUntil(
        async () => !(await ids(address)).includes(deadId),
        `${address} to drop it`,
      );
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await cluster.stop();
  }
});
