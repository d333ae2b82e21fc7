/**
 * Scenario tests of `dist balancer`: real server and balancer processes on
 * port 0, a client speaking to the balancer as to a server.
 */
import assert from "node:assert/strict";
import { DistError } from "../wire/mod.ts";
import { type DistProcess, lines, runDist, startDist } from "./helpers/dist.ts";
import {
  allUp,
  backendsOf,
  type BackendView,
  connectTo,
  eventually,
  startBalancer,
  startServers,
  stopAll,
} from "./helpers/balancer.ts";
import { closeQuietly, frame, HELLO, jsonFrame, RawReader, writeAll } from "./helpers/raw.ts";
import { isCode } from "./helpers/rpc.ts";
import { parseTopology } from "../config/mod.ts";
import { ROLES } from "../roles/mod.ts";

Deno.test("balancer serves 30 requests over 3 servers in strict rotation, 10 each", async () => {
  const servers = await startServers(3);
  const lb = await startBalancer(servers);
  const peer = await connectTo(lb.address);
  try {
    await allUp(peer);
    const by: string[] = [];
    for (let i = 0; i < 30; i++) {
      const res = await peer.request("add", { a: i, b: 1 });
      assert.equal(res.result, i + 1);
      by.push(res.by!);
    }
    assert.deepEqual(by.slice(0, 3).toSorted(), ["s1", "s2", "s3"]);
    for (let i = 3; i < 30; i++) assert.equal(by[i], by[i - 3], `request ${i} keeps the rotation`);
    for (const s of ["s1", "s2", "s3"]) assert.equal(by.filter((b) => b === s).length, 10);
  } finally {
    peer.close();
    await stopAll([lb, ...servers]);
  }
});

Deno.test("balancer skips a server that is down and takes it back when it returns", async () => {
  const servers = await startServers(3);
  const lb = await startBalancer(servers);
  const peer = await connectTo(lb.address);
  try {
    await allUp(peer);
    await servers[1].stop("SIGKILL");
    await eventually(
      async () => (await backendsOf(peer)).filter((b) => b.state === "up").length === 2,
      5000,
      "s2 out",
    );
    const by = new Set<string>();
    for (let i = 0; i < 12; i++) by.add((await peer.request("echo", { text: "x" })).by!);
    assert.deepEqual([...by].toSorted(), ["s1", "s3"]);
    const down = (await backendsOf(peer)).find((b) => b.peer === "s2")!;
    assert.equal(down.state, "down");
    assert.match(down.reason, /closed|connect/);
  } finally {
    peer.close();
    await stopAll([lb, ...servers]);
  }
});

Deno.test("balancer with no backend fails a request with UNAVAILABLE after the queue timeout", async () => {
  const lb = await startBalancer([], ["--queue-timeout", "300ms"]);
  const peer = await connectTo(lb.address);
  try {
    const t0 = performance.now();
    await assert.rejects(peer.call("echo", { text: "x" }), isCode("UNAVAILABLE"));
    const waited = performance.now() - t0;
    assert.ok(waited >= 250 && waited < 3000, `waited ${waited} ms`);
    // The balancer's own methods still answer.
    assert.equal(((await peer.call("sys.ping")) as { role: string }).role, "balancer");
  } finally {
    peer.close();
    await stopAll([lb]);
  }
});

Deno.test("balancer answers OVERLOADED at once when its queue is full", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--max-inflight", "2", "--queue", "3"]);
  const peer = await connectTo(lb.address);
  try {
    await allUp(peer);
    // 2 run, 3 wait, the rest are refused at once.
    const calls = Array.from(
      { length: 8 },
      () => peer.call("sleep", { ms: 400 }).then(() => "ok", (e: DistError) => e.code),
    );
    const t0 = performance.now();
    const first = await Promise.race(calls);
    assert.equal(first, "OVERLOADED");
    assert.ok(performance.now() - t0 < 300, "refused without waiting");
    const outcomes = await Promise.all(calls);
    assert.deepEqual(outcomes.filter((o) => o === "ok").length, 5);
    assert.deepEqual(outcomes.filter((o) => o === "OVERLOADED").length, 3);
    const stats = await peer.call("sys.stats") as Record<string, number>;
    assert.equal(stats.overloaded, 3);
  } finally {
    peer.close();
    await stopAll([lb, ...servers]);
  }
});

Deno.test("balancer answers OVERLOADED at once beyond --queue-bytes of waiting requests", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--max-inflight", "1", "--queue-bytes", "100000"]);
  const peer = await connectTo(lb.address);
  try {
    await allUp(peer);
    const busy = peer.call("sleep", { ms: 600 });
    await eventually(
      async () => (await backendsOf(peer))[0].inflight === 1,
      3000,
      "the sleep on the server",
    );
    // 30 KB each: three fit in 100,000 bytes, the fourth does not.
    const text = "x".repeat(30_000);
    const calls = Array.from(
      { length: 5 },
      () => peer.call("echo", { text }).then(() => "ok", (e: DistError) => e.code),
    );
    const t0 = performance.now();
    assert.equal(await Promise.race(calls), "OVERLOADED");
    assert.ok(performance.now() - t0 < 400, "refused without waiting");
    const stats = await peer.call("sys.stats") as Record<string, number>;
    assert.ok(
      stats.queued_bytes > 90_000 && stats.queued_bytes <= 100_000,
      `${stats.queued_bytes}`,
    );
    await busy;
    assert.deepEqual(await Promise.all(calls), ["ok", "ok", "ok", "OVERLOADED", "OVERLOADED"]);
    assert.equal((await peer.call("sys.stats") as Record<string, number>).queued_bytes, 0);
  } finally {
    peer.close();
    await stopAll([lb, ...servers]);
  }
});

Deno.test("balancer never replays a non-idempotent request whose server died", async () => {
  const servers = await startServers(2);
  const lb = await startBalancer(servers);
  const peer = await connectTo(lb.address);
  try {
    await allUp(peer);
    // Round-robin: the first call goes to the first server, which is killed
    // while the sleep runs.
    const settle = (p: Promise<unknown>) =>
      p.then(() => "ok", (e: DistError) => `${e.code}: ${e.message}`);
    const once = settle(peer.call("sleep", { ms: 1500 }, { idempotent: false }));
    const again = settle(peer.call("sleep", { ms: 1500 }));
    await new Promise((r) => setTimeout(r, 300));
    const busy = (await backendsOf(peer)).map((b) => b.inflight);
    assert.deepEqual(busy, [1, 1], "one sleep on each server");
    await servers[0].stop("SIGKILL");
    const [first, second] = await Promise.all([once, again]);
    assert.match(first, /^UNAVAILABLE: .*may have run/, "the non-idempotent call is not replayed");
    assert.equal(second, "ok", "the idempotent one completed on the other server");
    const stats = await peer.call("sys.stats") as Record<string, number>;
    assert.equal(stats.lost, 1);
  } finally {
    peer.close();
    await stopAll([lb, ...servers]);
  }
});

Deno.test("balancer drops a connection that sends garbage or an oversized frame, and serves everyone else", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--max-frame", "4096"]);
  const peer = await connectTo(lb.address);
  try {
    await allUp(peer);
    for (const address of [lb.address, lb.workerAddress]) {
      const [hostname, port] = address.split(":");
      const attacks = [
        // Not a frame at all: a length prefix far beyond the limit.
        new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        // A valid handshake, then an oversized frame.
        new Uint8Array([...jsonFrame(HELLO), ...frame(new Uint8Array(8192))]),
        // Garbage inside a well-formed frame instead of a hello.
        frame(new Uint8Array([0xff, 0x00, 0x13, 0x37])),
      ];
      for (const bytes of attacks) {
        const conn = await Deno.connect({ hostname, port: Number(port) });
        try {
          await writeAll(conn, bytes).catch(() => {});
          await new RawReader(conn).untilClosed(3000);
        } finally {
          closeQuietly(conn);
        }
        assert.equal(await peer.call("echo", { text: "still here" }), "still here");
      }
    }
  } finally {
    peer.close();
    await stopAll([lb, ...servers]);
  }
});

Deno.test("balancer on SIGTERM finishes requests in flight, then exits 0", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--grace", "3s"]);
  const peer = await connectTo(lb.address);
  try {
    await allUp(peer);
    const slow = peer.call("sleep", { ms: 500 });
    await new Promise((r) => setTimeout(r, 100));
    const stopped = lb.stop("SIGTERM");
    assert.equal(await slow, 500);
    const { code, killed } = await stopped;
    assert.equal(code, 0);
    assert.equal(killed, false);
  } finally {
    peer.close();
    await stopAll([lb, ...servers]);
  }
});

Deno.test("balancer --log-file records backends going up and down and, at debug, connections and requests", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/loadbalancer.log`;
  const servers = await startServers(2);
  const lb = await startBalancer(servers, ["--log-file", file, "--log-level", "debug"]);
  try {
    const r = await runDist(["client", "--connect", lb.address, "add", "3", "4"]);
    assert.equal(r.stdout, "7\n", r.stderr);
    await servers[0].stop("SIGKILL");
    const peer = await connectTo(lb.address);
    await eventually(
      async () => (await backendsOf(peer)).some((b) => b.state === "down"),
      5000,
      "s1 out",
    );
    peer.close();
    await lb.stop("SIGTERM");
    const log = await Deno.readTextFile(file);
    assert.match(log, /Backend 127\.0\.0\.1:\d+ \(s1\) is up/);
    assert.match(log, /Backend 127\.0\.0\.1:\d+ \(s1\) is down: connection closed/);
    assert.match(log, /\[DBG\] .*Connection from 127\.0\.0\.1:\d+: client-\d+ \(client, json\)/);
    assert.match(log, /client-\d+ add -> 127\.0\.0\.1:\d+ \(s\d\): ok in [\d.]+ ms/);
  } finally {
    await stopAll([lb, ...servers]);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("balancer flags: a bad policy or backend is one `dist:` line and exit 2", async () => {
  const bad = await Promise.all([
    runDist(["balancer", "--policy", "fastest"]),
    runDist(["balancer", "--backends", "nowhere"]),
  ]);
  for (const r of bad) {
    assert.equal(r.code, 2, r.stderr);
    assert.equal(lines(r.stderr).length, 1);
    assert.match(r.stderr, /^dist: /);
  }
  assert.match(bad[0].stderr, /--policy: "fastest" is not one of round-robin/);
});

Deno.test("dist client talks to a balancer as to a server", async () => {
  const servers = await startServers(2);
  const lb = await startBalancer(servers);
  const peer = await connectTo(lb.address);
  try {
    await allUp(peer);
    const r = await runDist(["client", "--connect", lb.address, "--random", "8"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /8 requests: 8 ok, 0 errors; by: s\d ×4, s\d ×4/);
  } finally {
    peer.close();
    await stopAll([lb, ...servers]);
  }
});

Deno.test('topology: backends = ["server"] and a worker\'s balancer = "balancer" resolve', () => {
  const topology = parseTopology(
    `
[[server]]
name = "server"
replicas = 3
port = 5557

[[balancer]]
name = "balancer"
port = 5556
backends = ["server"]
worker_port = 8889

[[worker]]
name = "worker"
replicas = 2
balancer = "balancer"
`,
    { file: "cluster.toml", roles: ROLES },
  );
  const lb = topology.instances.find((i) => i.name === "balancer")!;
  assert.deepEqual(lb.options.backends, ["127.0.0.1:5557", "127.0.0.1:5558", "127.0.0.1:5559"]);
  const workers = topology.instances.filter((i) => i.role === "worker");
  assert.deepEqual(workers.map((w) => w.options.balancer), ["127.0.0.1:8889", "127.0.0.1:8889"]);
});

Deno.test("balancer relays between codecs: JSON and MessagePack clients, MessagePack backends, pass-through on or off", async () => {
  const servers = await startServers(1);
  const lbs = await Promise.all([
    startBalancer(servers, ["--codec", "msgpack"]),
    startBalancer(servers, ["--no-passthrough"]),
  ]);
  try {
    for (const lb of lbs) {
      for (const codec of ["json", "msgpack"]) {
        const r = await runDist([
          "client",
          "--connect",
          lb.address,
          "--codec",
          codec,
          "--json",
          "sum",
          "1,2,3,4,5",
        ]);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(
          { ...JSON.parse(r.stdout), ms: 0 },
          { ok: true, result: 15, by: "s1", ms: 0 },
        );
        const bad = await runDist([
          "client",
          "--connect",
          lb.address,
          "--codec",
          codec,
          "div",
          "1",
          "0",
        ]);
        assert.equal(bad.code, 1);
        assert.match(bad.stderr, /dist: BAD_REQUEST: Division by zero/);
      }
    }
  } finally {
    await stopAll([...lbs, ...servers]);
  }
});

Deno.test("balancer answers a malformed request as a server does, never with silence", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers);
  const peer = await connectTo(lb.address);
  try {
    await allUp(peer);
    const malformed = [
      '{"id":1,"method":"echo","params":[1,,2]}',
      '{"id":2,"method":"echo","params":{"a":tru}}',
      '{"id":3,"method":"echo","params":"\\x"}',
      `{"id":4,"method":"echo","params":${"[".repeat(70)}${"]".repeat(70)}}`,
    ];
    const answers = async (address: string) => {
      const [hostname, port] = address.split(":");
      const conn = await Deno.connect({ hostname, port: Number(port) });
      const reader = new RawReader(conn);
      try {
        await writeAll(conn, jsonFrame(HELLO));
        await reader.json();
        const got: unknown[] = [];
        for (const text of malformed) {
          await writeAll(conn, frame(text));
          let m;
          do m = await reader.json(3000); while (m?.method === "ping");
          got.push({ id: m?.id, code: (m?.error as { code?: string } | undefined)?.code });
        }
        return got;
      } finally {
        closeQuietly(conn);
      }
    };
    const direct = await answers(servers[0].address);
    assert.deepEqual(direct.map((a) => (a as { code: string }).code), Array(4).fill("BAD_REQUEST"));
    assert.deepEqual(await answers(lb.address), direct);
  } finally {
    peer.close();
    await stopAll([lb, ...servers]);
  }
});

Deno.test("balancer --service spreads over every live instance found through binders, kept current", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  const register = ["--service", "compute", "--binders", binder.address, "--ttl", "1s"];
  const start = (name: string) => startDist(["server", "--port", "0", "--name", name, ...register]);
  const servers = await Promise.all([start("c1"), start("c2")]);
  let third: DistProcess | undefined;
  const lb = await startBalancer([], ["--service", "compute", "--binders", binder.address]);
  const peer = await connectTo(lb.address);
  const upPeers = async () =>
    (await backendsOf(peer)).filter((b) => b.state === "up").map((b) => b.peer).toSorted();
  try {
    await eventually(async () => (await upPeers()).join() === "c1,c2", 10_000, "c1 and c2");
    const by = new Set<string>();
    for (let i = 0; i < 6; i++) by.add((await peer.request("echo", { text: "x" })).by!);
    assert.deepEqual([...by].toSorted(), ["c1", "c2"]);
    const [view] = await backendsOf(peer) as (BackendView & { source: string })[];
    assert.equal(view.source, "service compute");

    third = await start("c3");
    await eventually(async () => (await upPeers()).join() === "c1,c2,c3", 10_000, "c3 joins");
    // A server that deregisters (SIGTERM) leaves the pool; requests keep flowing.
    await servers[0].stop("SIGTERM");
    await eventually(
      async () => (await backendsOf(peer)).every((b) => b.peer !== "c1"),
      10_000,
      "c1 removed",
    );
    for (let i = 0; i < 6; i++) assert.notEqual((await peer.request("add", [1, 2])).by, "c1");
  } finally {
    peer.close();
    await stopAll([lb, third, ...servers, binder]);
  }
});

Deno.test("balancer --binders without --service is one `dist:` line and exit 2", async () => {
  const r = await runDist(["balancer", "--binders", "127.0.0.1:7000"]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim(), "dist: --binders applies only with --service NAME");
});
