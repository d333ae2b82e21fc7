/**
 * Binders and servers as processes, beyond the lab's table: a killed server's
 * lease runs out on every binder, a stopped server leaves at once, a server
 * moves to another binder when its binder dies, and `--advertise`.
 */
import assert from "node:assert/strict";
import { ids, startBinderProcs, startService, waitUntil } from "./helpers/binder.ts";
import { type DistProcess, lines, runDist } from "./helpers/dist.ts";

const everywhere = (addresses: string[], check: (ids: string[]) => boolean) => async () =>
  (await Promise.all(addresses.map((a) => ids(a)))).every(check);

Deno.test("the lease of a SIGKILLed server runs out on every binder within TTL + one round", async () => {
  const cluster = await startBinderProcs(3);
  let server: DistProcess | undefined;
  try {
    server = await startService("compute", cluster.addresses[0], ["--ttl", "1s"]);
    const id = `compute@127.0.0.1:${server.port}`;
    await waitUntil(
      everywhere(cluster.addresses, (l) => l.includes(id)),
      "every binder to know it",
    );
    await server.stop("SIGKILL");
    const t0 = performance.now();
    await waitUntil(everywhere(cluster.addresses, (l) => l.length === 0), "the lease to run out");
    const ms = performance.now() - t0;
    // TTL (1 s) + one anti-entropy round (1 s), with room for a loaded machine.
    assert.ok(ms < 3000, `gone from every binder ${Math.round(ms)} ms after the kill`);
  } finally {
    await server?.stop();
    await cluster.stop();
  }
});

Deno.test("a server stopped cleanly deregisters at once; one whose binder dies moves to another", async () => {
  const cluster = await startBinderProcs(2);
  const servers: DistProcess[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      servers.push(await startService("compute", cluster.list, ["--ttl", i === 0 ? "30s" : "1s"]));
    }
    await waitUntil(everywhere(cluster.addresses, (l) => l.length === 2), "both everywhere");
    // SIGTERM: deregistered on every binder long before its 30 s lease.
    const { code } = await servers[0].stop();
    assert.equal(code, 0);
    assert.match(servers[0].stderr(), /Deregistered compute@/);
    await waitUntil(everywhere(cluster.addresses, (l) => l.length === 1), "the deregistration");
    // Kill the binder the other server renews with: it renews with the other binder.
    const used = /Registered as \S+ with binder (\S+)/.exec(servers[1].stderr())![1];
    const dead = cluster.addresses.indexOf(used);
    const other = cluster.addresses[1 - dead];
    await cluster.procs[dead].stop("SIGKILL");
    await new Promise((r) => setTimeout(r, 2500)); // 2.5 TTLs
    assert.deepEqual(await ids(other), [`compute@127.0.0.1:${servers[1].port}`]);
    assert.match(
      servers[1].stderr(),
      new RegExp(`Now using binder ${other.replaceAll(".", "\\.")}`),
    );
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await cluster.stop();
  }
});

Deno.test("server --service on a wildcard host needs --advertise; --advertise is what clients get", async () => {
  const cluster = await startBinderProcs(1);
  let server: DistProcess | undefined;
  try {
    const r = await runDist([
      "server",
      "--host",
      "0.0.0.0",
      "--port",
      "0",
      "--service",
      "compute",
      "--binders",
      cluster.list,
    ]);
    assert.equal(r.code, 2);
    assert.match(
      lines(r.stderr).at(-1)!,
      /^dist: --host 0\.0\.0\.0 listens on every interface: give --advertise/,
    );
    server = await startService("compute", cluster.list, [
      "--host",
      "0.0.0.0",
      "--advertise",
      "127.0.0.1:0",
    ]);
    assert.deepEqual(await ids(cluster.addresses[0]), [`compute@127.0.0.1:${server.port}`]);
    // hostile47 Q20: an --advertise no client could dial is refused too.
    for (const host of ["0.0.0.0", "[::]", "255.255.255.255", "224.0.0.1"]) {
      const r = await runDist([
        "server",
        "--port",
        "0",
        "--service",
        "compute",
        "--binders",
        cluster.list,
        "--advertise",
        `${host}:44821`,
      ]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(lines(r.stderr).at(-1)!, /^dist: --advertise .*which no client could dial/);
    }
    const bad = await runDist(["server", "--port", "0", "--service", "no spaces"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--service: "no spaces" is not a service name/);
  } finally {
    await server?.stop();
    await cluster.stop();
  }
});
