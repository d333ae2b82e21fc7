/**
 * The balancer against hostile or broken peers: backends that hang up as
 * soon as they connect or send huge error texts, workers sharing a name,
 * connection floods on both ports. Each test is a bounded reproduction of
 * an attack, asserting that the balancer stays calm and its log short.
 */
import assert from "node:assert/strict";
import { DistError, jsonCodec, listen, type Peer } from "../wire/mod.ts";
import { Backend } from "../roles/balancer/backends.ts";
import { ServerLink } from "../roles/balancer/links.ts";
import {
  backendsOf,
  connectTo,
  eventually,
  startBalancer,
  startServers,
  startWorker,
  stopAll,
} from "./helpers/balancer.ts";
import {
  closeQuietly,
  concat,
  frame,
  HELLO,
  jsonFrame,
  RawReader,
  sleep,
  writeAll,
} from "./helpers/raw.ts";
import { lines } from "./helpers/dist.ts";

const RULES = { rise: 2, fall: 3 };

Deno.test("ServerLink dials a server whose connections drop as they open with backoff, not at once", async () => {
  let accepted = 0;
  const flapping = listen({
    host: "127.0.0.1",
    port: 0,
    role: "server",
    name: "flap",
    onPeer: (peer) => {
      accepted++;
      peer.close();
    },
  });
  const backend = new Backend("server", "flap", { capacity: 1, rules: RULES });
  const link = new ServerLink(backend, { host: "127.0.0.1", port: flapping.addr.port }, {
    checkIntervalMs: 100,
    report: () => {},
    dial: { role: "balancer", name: "test", codec: jsonCodec },
  });
  try {
    link.start();
    await sleep(1500);
  } finally {
    await link.stop();
    await flapping.close(0);
  }
  // One dial per check interval (100 ms): about 15, not thousands.
  assert.ok(accepted >= 3 && accepted <= 40, `${accepted} connections in 1.5 s`);
  assert.equal(backend.state, "down");
});

Deno.test("balancer: a second worker under a live worker's name is refused, and takes over once the first is gone", async () => {
  const lb = await startBalancer([]);
  const first = await startWorker(lb.workerAddress, ["--name", "w"]);
  const second = await startWorker(lb.workerAddress, ["--name", "w"], { registered: false });
  const peer = await connectTo(lb.address);
  try {
    await eventually(
      () => Promise.resolve(second.stderr().includes("taken by a live worker")),
      5000,
      "the second worker refused",
    );
    await sleep(1500);
    // No eviction loop: the first stays registered, the log stays short.
    assert.equal(lines(first.stderr()).filter((l) => l.includes("Registered with")).length, 1);
    assert.ok(!second.stderr().includes("Registered with"), second.stderr());
    const workerLines = lines(lb.stderr()).filter((l) => l.includes("Worker w"));
    assert.ok(workerLines.length <= 12, `${workerLines.length} lines:\n${lb.stderr()}`);
    const [only, ...rest] = (await backendsOf(peer)).filter((b) => b.kind === "worker");
    assert.equal(rest.length, 0);
    assert.equal(only.state, "up");
    assert.equal(await peer.call("add", { a: 1, b: 2 }), 3);

    await first.stop("SIGKILL");
    await eventually(
      () => Promise.resolve(second.stderr().includes("Registered with")),
      10_000,
      "the second worker registered",
    );
    assert.equal(await peer.call("add", { a: 2, b: 2 }), 4);
  } finally {
    peer.close();
    await stopAll([lb, first, second]);
  }
});

Deno.test("balancer: connection floods on both ports leave a short, rate-limited log", async () => {
  const lb = await startBalancer([]);
  try {
    const before = lb.stderr().length;
    for (let i = 0; i < 100; i++) (await connectTo(lb.address)).close();
    for (let i = 0; i < 60; i++) {
      const w = await connectTo(lb.workerAddress);
      await w.call("worker.register", { name: `n${i}`, capacity: 1 });
      w.close();
    }
    await sleep(1200);
    const logged = lines(lb.stderr().slice(before));
    assert.ok(!logged.some((l) => /client-\d+|Client/.test(l)), logged.join("\n"));
    // At most 20 lines about workers a second, and a line saying how many went to debug.
    assert.ok(logged.length <= 45, `${logged.length} lines:\n${logged.join("\n")}`);
    assert.ok(logged.some((l) => /more lines about workers in the last second/.test(l)));
  } finally {
    await stopAll([lb]);
  }
});

Deno.test("balancer: a backend's huge error texts are cut in its log and in balancer.backends", async () => {
  const huge = (c: string) => c.repeat(500_000);
  // One backend answers every health check with a 500 KB error…
  const pinged = listen({
    host: "127.0.0.1",
    port: 0,
    role: "server",
    name: "pinged",
    onRequest: () => {
      throw new DistError("INTERNAL", huge("P"));
    },
  });
  // …and one refuses every handshake with a 15 KB error (a handshake frame is at most 16 KiB).
  const refusing = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serve = (async () => {
    for await (const conn of refusing) {
      (async () => {
        try {
          await new RawReader(conn).frame(3000);
          await writeAll(
            conn,
            jsonFrame({ op: "error", error: { code: "BAD_REQUEST", message: "H".repeat(15_000) } }),
          );
        } catch {
          // The balancer hung up first.
        } finally {
          try {
            conn.close();
          } catch {
            // Closed already.
          }
        }
      })();
    }
  })();
  const lb = await startBalancer([], [
    "--backends",
    `127.0.0.1:${pinged.addr.port},127.0.0.1:${refusing.addr.port}`,
    "--fall",
    "1",
  ]);
  const peer = await connectTo(lb.address);
  try {
    await eventually(
      async () => (await backendsOf(peer)).every((b) => b.state === "down" && b.reason !== ""),
      5000,
      "both backends down",
    );
    await sleep(500);
    for (const b of await backendsOf(peer)) {
      assert.ok(
        b.reason.length < 400,
        `reason of ${b.reason.length} chars: ${b.reason.slice(0, 300)}`,
      );
    }
    const longest = Math.max(...lines(lb.stderr()).map((l) => l.length));
    assert.ok(longest < 1000, `a log line of ${longest} chars`);
    assert.match(lb.stderr(), /is down: 1 health checks missed \(INTERNAL: PPPP/);
    assert.match(lb.stderr(), /unreachable: .*HHHH/);
  } finally {
    peer.close();
    await stopAll([lb]);
    await pinged.close(0);
    refusing.close();
    await serve.catch(() => {});
  }
});

Deno.test("balancer: one client's lone surrogates never close a backend's connection (JSON or MessagePack) that carries another client's requests", async () => {
  // A JSON server (requests pass through as bytes) and a MessagePack worker
  // (requests are decoded and encoded again).
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--retries", "0"]);
  const worker = await startWorker(lb.workerAddress, ["--name", "mw", "--codec", "msgpack"]);
  const watcher = await connectTo(lb.address);
  const bystander = await connectTo(lb.address);
  const [hostname, port] = lb.address.split(":");
  /** Sends `bad` on a connection of its own; the codes it gets back. */
  const attack = async (bad: string[]) => {
    const conn = await Deno.connect({ hostname, port: Number(port) });
    const reader = new RawReader(conn);
    try {
      await writeAll(conn, jsonFrame(HELLO));
      await reader.json();
      await writeAll(conn, concat(bad.map((text) => frame(text))));
      const codes: string[] = [];
      while (codes.length < bad.length) {
        const m = await reader.json(5000);
        if (m === null) break;
        if (m.id !== undefined) {
          codes.push((m.error as { code?: string } | undefined)?.code ?? "ok");
        }
      }
      return codes;
    } finally {
      closeQuietly(conn);
    }
  };
  try {
    await eventually(
      async () => (await backendsOf(watcher)).filter((b) => b.state === "up").length === 2,
      5000,
      "the server and the worker up",
    );
    const sleeps = Array.from(
      { length: 40 },
      () => bystander.call("sleep", { ms: 800 }).then(() => "ok", (e: DistError) => e.code),
    );
    await sleep(100);
    // 24 requests (10 would close a backend's connection) over 3 connections
    // (each would be closed by the balancer after 10): in the canonical form
    // (the byte pass-through), and with a string id that has an escape (left
    // to the decoder).
    for (let round = 0; round < 3; round++) {
      const bad = Array.from(
        { length: 8 },
        (_, i) =>
          i % 2 === 0
            ? `{"id":${i},"method":"echo","params":{"text":"\\ud800${i}"}}`
            : `{"id":"\\u0069${i}","method":"echo","params":["\\udc00"]}`,
      );
      assert.deepEqual(await attack(bad), Array(8).fill("BAD_REQUEST"));
    }
    assert.deepEqual(await Promise.all(sleeps), Array(40).fill("ok"));
    const stats = await watcher.call("sys.stats") as Record<string, number>;
    assert.equal(stats.lost, 0);
    for (const b of await backendsOf(watcher)) {
      assert.equal(b.state, "up", `${b.name}: ${b.reason}`);
      assert.equal(b.failures, 0, b.name);
    }
    for (const p of [lb, servers[0]]) {
      assert.doesNotMatch(p.stderr(), /malformed|protocol_error/, p.stderr());
    }
    assert.doesNotMatch(worker.stderr(), /malformed|protocol_error|lost/, worker.stderr());
  } finally {
    watcher.close();
    bystander.close();
    await stopAll([lb, worker, ...servers]);
  }
});

Deno.test("balancer: sys.stats still answers with more workers than a frame could list", async () => {
  const lb = await startBalancer([], ["--max-frame", "65536"]);
  const workers: Peer[] = [];
  const watcher = await connectTo(lb.address);
  try {
    for (let i = 0; i < 250; i++) {
      const w = await connectTo(lb.workerAddress);
      workers.push(w);
      await w.call("worker.register", { name: `worker-number-${i}`, capacity: 1 });
    }
    const stats = await watcher.call("sys.stats") as Record<string, number>;
    assert.equal(stats.workers, 250);
    assert.equal(stats.backends, 250);
    // The full list is too large for this frame limit: an error that says so, not silence.
    await assert.rejects(watcher.call("balancer.backends"), /FRAME_TOO_LARGE|too large/);
  } finally {
    for (const w of workers) w.close();
    watcher.close();
    await stopAll([lb]);
  }
});
