/**
 * Issue 16's attack on the balancer, bounded: clients that pipeline
 * 100,000 small `add` requests on one connection and never read an answer
 * (bench/pipeline_client.ts, each in its own process). A legitimate client
 * beside them, on fresh connections, must be served as if they were not
 * there: connected at once, every request answered, none waiting seconds.
 * The bounds are about the product (before the fix: handshakes timed out
 * after 5 s, requests waited 3.7–5.5 s or were refused OVERLOADED), not the
 * machine; the figures are in `deno task bench balancer-hostile`.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  dial,
  DistError,
  type ErrorBody,
  type ErrorCode,
  jsonCodec,
  listen,
  msgpackCodec,
  type Peer,
} from "../wire/mod.ts";
import {
  backendsOf,
  connectTo,
  eventually,
  startBalancer,
  startServers,
  stopAll,
} from "./helpers/balancer.ts";
import {
  closeQuietly,
  jsonFrame,
  rawHandshake,
  RawReader,
  sleep,
  writeAll,
} from "./helpers/raw.ts";

const ATTACKER = fileURLToPath(new URL("../bench/pipeline_client.ts", import.meta.url));
const SPREAD = fileURLToPath(new URL("../bench/spread_client.ts", import.meta.url));

/** `n` attackers on `port`, sending once this resolves. */
async function attack(port: number, n: number, requests: number) {
  const procs = await Promise.all(Array.from({ length: n }, async () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ATTACKER, String(port), String(requests)],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    assert.match((await reader.read()).value ?? "", /ready/);
    return { child, reader };
  }));
  return async () => {
    for (const { child, reader } of procs) {
      await child.stdin.close();
      await reader.cancel().catch(() => {});
      await child.status;
    }
  };
}

/** `count` sequential `add` calls on a fresh connection: each call's latency (ms). */
async function legitimate(address: string, count: number): Promise<number[]> {
  const t0 = performance.now();
  const peer: Peer = await connectTo(address, 5000);
  const connectMs = performance.now() - t0;
  const times = [connectMs];
  try {
    for (let i = 0; i < count; i++) {
      const t = performance.now();
      assert.equal(await peer.call("add", { a: i, b: 1 }, { timeout: 5000 }), i + 1);
      times.push(performance.now() - t);
    }
  } finally {
    peer.close();
  }
  return times;
}

/**
 * `count` calls at once on one connection (a deep pipeline that reads its
 * answers): when each was answered, and how (`ok` or the error's code).
 */
async function pipelined(address: string, count: number) {
  const peer = await connectTo(address);
  try {
    return await Promise.all(
      Array.from(
        { length: count },
        (_, i) =>
          peer.call("add", { a: i, b: 1 }, { timeout: 15_000 }).then(
            (r) => ({ at: performance.now(), how: r === i + 1 ? "ok" : `wrong ${r}` }),
            (e) => ({ at: performance.now(), how: (e as DistError).code as string }),
          ),
      ),
    );
  } finally {
    peer.close();
  }
}

for (const attackers of [2, 4]) {
  Deno.test(`${attackers} clients pipelining without reading slow only themselves`, async () => {
    const servers = await startServers(2);
    const balancer = await startBalancer(servers);
    let stopAttack: (() => Promise<void>) | undefined;
    try {
      stopAttack = await attack(balancer.port, attackers, 100_000 / attackers);
      // A client that pipelines 500 calls on one connection but reads its
      // answers: a bulk flow too, slowed beside the legitimate client, not starved.
      const deep = pipelined(balancer.address, 500);
      // While they send, three fresh connections in turn, 100 requests each.
      const times: number[] = [];
      for (let round = 0; round < 3; round++) {
        times.push(...await legitimate(balancer.address, 100));
      }
      const legitEnd = performance.now();
      times.sort((a, b) => a - b);
      const p50 = times[Math.floor(times.length / 2)];
      const p99 = times[Math.floor(times.length * 0.99)];
      // Generous: a loaded 2-core machine stalls for tens of ms at times
      // (before the fix: p50 of 10 to 40 ms, requests waiting seconds).
      const spread = `p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${
        times.at(-1)!.toFixed(1)
      } ms`;
      assert.ok(p50 < 50 && p99 < 1000, `legitimate calls: ${spread}`);
      const answers = await deep;
      const how = Object.groupBy(answers, (a) => a.how);
      assert.deepEqual(
        Object.keys(how).filter((k) => k !== "ok" && k !== "OVERLOADED"),
        [],
        "every call of the deep pipeline answered, or refused OVERLOADED",
      );
      // Served first, the legitimate client's 300 calls: the deep pipeline got
      // about one for eight of them meanwhile (all 500 before the fix).
      const during = answers.filter((a) => a.how === "ok" && a.at < legitEnd).length;
      assert.ok(during > 0, "the deep pipeline got answers while the legitimate client was busy");
      assert.ok(during < 300, `the deep pipeline got ${during} answers meanwhile`);
      assert.ok((how.ok?.length ?? 0) >= 250, `${how.ok?.length ?? 0} of 500 answered`);
      const watcher = await connectTo(balancer.address);
      const stats = await watcher.call("sys.stats") as Record<string, number>;
      watcher.close();
      assert.equal(stats.healthy, 2, "the backends stayed in rotation");
    } finally {
      await stopAttack?.();
      await stopAll([balancer, ...servers]);
    }
  });
}

Deno.test("a client spread over many connections from one address slows only itself", async () => {
  const servers = await startServers(2);
  const balancer = await startBalancer(servers);
  // Sixteen connections from 127.0.0.2, each keeping 48 requests out (within
  // four shares each: 768 in all); the legitimate client is on 127.0.0.1.
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SPREAD, String(balancer.port), "16", "48", "127.0.0.2"],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stdin = child.stdin.getWriter();
  const answered = async () => {
    await stdin.write(new TextEncoder().encode("\n"));
    return Number((await lines.read()).value);
  };
  try {
    assert.match((await lines.read()).value ?? "", /ready/);
    await eventually(async () => await answered() > 2000, 10_000, "the spread client to run");
    const before = await answered();
    const times: number[] = [];
    for (let round = 0; round < 3; round++) times.push(...await legitimate(balancer.address, 100));
    const during = await answered() - before;
    times.sort((a, b) => a - b);
    const p50 = times[Math.floor(times.length / 2)];
    const p99 = times[Math.floor(times.length * 0.99)];
    assert.ok(p50 < 50 && p99 < 1000, `legitimate calls: p50 ${p50} ms, p99 ${p99} ms`);
    // What was answered or on the backends when the legitimate client came (up
    // to its 768 out: it counts what it has read), then about one for eight of
    // the legitimate client's 300. Before: a share on each connection, 256 on
    // the backends, and about 200,000 answers meanwhile in a run here.
    assert.ok(during < 3000, `the spread client got ${during} answers meanwhile`);
    const after = await answered();
    await eventually(async () => await answered() > after + 1000, 10_000, "it to go on after");
  } finally {
    await stdin.close().catch(() => {});
    await lines.cancel().catch(() => {});
    await child.status;
    await stopAll([balancer, ...servers]);
  }
});

/** A backend that answers health checks and fails everything else with the code NOPE and `text`. */
function rogueBackend(text: string) {
  return listen({
    host: "127.0.0.1",
    port: 0,
    role: "server",
    name: "rogue",
    onRequest: (method) => {
      if (method === "sys.ping") return { pong: true };
      throw new DistError("NOPE" as ErrorCode, text);
    },
  });
}

Deno.test("an error with a code outside the protocol's list reaches the client as INTERNAL, its text cut", async () => {
  // A backend that answers health checks and fails everything else with a
  // code of its own and 5,000 characters.
  const rogue = rogueBackend("N".repeat(5000));
  const backend = ["--backends", `127.0.0.1:${rogue.addr.port}`];
  const lbs = await Promise.all([
    startBalancer([], backend),
    startBalancer([], [...backend, "--no-passthrough"]),
  ]);
  try {
    for (const lb of lbs) {
      const [host, port] = lb.address.split(":");
      // JSON (passed through as bytes unless --no-passthrough) and MessagePack (decoded).
      for (const codec of [jsonCodec, msgpackCodec]) {
        const peer = await dial({ host, port: Number(port) }, { role: "client", name: "t", codec });
        try {
          await eventually(
            async () => {
              try {
                await peer.call("add", { a: 1, b: 2 });
              } catch (err) {
                return (err as DistError).code !== "UNAVAILABLE"; // the backend is up
              }
              return false;
            },
            5000,
            "the backend up",
          );
          const err = await peer.call("add", { a: 1, b: 2 }).catch((e) => e as DistError);
          assert.ok(err instanceof DistError, `${err}`);
          assert.equal(err.code, "INTERNAL", `${codec.name}: ${err.code}`);
          assert.match(err.message, /unknown code NOPE: NNN/);
          assert.ok(err.message.length < 300, `${codec.name}: ${err.message.length} chars`);
        } finally {
          peer.close();
        }
      }
      // On the wire itself (the client library above would mend it): a JSON
      // request goes through as bytes, and its answer is checked on the way.
      const conn = await Deno.connect({ hostname: host, port: Number(port) });
      try {
        const reader = new RawReader(conn);
        await rawHandshake(conn, reader);
        await writeAll(conn, jsonFrame({ id: 7, method: "add", params: { a: 1, b: 2 } }));
        const answer = await reader.json(5000) as { id: number; error: ErrorBody };
        assert.equal(answer.id, 7);
        assert.equal(answer.error.code, "INTERNAL");
        assert.ok(answer.error.message.length < 300, `${answer.error.message.length} chars`);
      } finally {
        closeQuietly(conn);
      }
    }
  } finally {
    await stopAll(lbs);
    await rogue.close(0);
  }
});

for (
  const [how, codec, flags] of [
    ["passed through", jsonCodec, []],
    ["decoded (MessagePack)", msgpackCodec, []],
    ["decoded (--no-passthrough)", jsonCodec, ["--no-passthrough"]],
  ] as const
) {
  Deno.test(`errors with codes outside the protocol are logged at most 20 times a second: ${how}`, async () => {
    // hostile32 X8: each one made an `[ERR] Request N failed` line (1,210 in 3 s);
    // decoded, each still did (wire/answers.ts) until hostile33's review.
    const rogue = rogueBackend("nope");
    const lb = await startBalancer([], ["--backends", `127.0.0.1:${rogue.addr.port}`, ...flags]);
    const [host, port] = lb.address.split(":");
    const peer = await dial({ host, port: Number(port) }, { role: "client", name: "t", codec });
    try {
      await eventually(
        async () =>
          await peer.call("add", { a: 1, b: 2 }).then(() => false, (e) => e.code === "INTERNAL"),
        5000,
        "the backend up",
      );
      const start = performance.now();
      const codes = await Promise.all(
        Array.from({ length: 500 }, () => peer.call("add", { a: 1, b: 2 }).catch((e) => e.code)),
      );
      // Seconds the lines could be spread over (a loaded machine answers some OVERLOADED).
      const seconds = Math.ceil((performance.now() - start) / 1000) + 1;
      const internal = codes.filter((c) => c === "INTERNAL").length;
      assert.ok(codes.every((c) => c === "INTERNAL" || c === "OVERLOADED"), `${new Set(codes)}`);
      assert.ok(internal >= 100, `${internal} INTERNAL answers`);
      await sleep(1100); // the line that says how many went to debug
      const lines = lb.stderr().split("\n");
      const told = lines.filter((l) => /unknown code NOPE/.test(l));
      assert.ok(
        told.length >= 1 && told.length <= 20 * seconds,
        `${told.length} lines about ${internal} answers in ${seconds} s`,
      );
      if (internal > 20 * seconds) {
        assert.ok(
          lines.some((l) => /more lines about .* in the last second went to debug/.test(l)),
        );
      }
      if (flags.length === 0 && codec === jsonCodec) {
        assert.ok(lines.some((l) => /Backend .* answered Error with an unknown code NOPE/.test(l)));
        assert.deepEqual(lines.filter((l) => /\[ERR\]/.test(l)), [], "no error line per request");
      }
    } finally {
      peer.close();
      await stopAll([lb]);
      await rogue.close(0);
    }
  });
}

Deno.test("a worker that answers checks but never tasks fails its trial and waits; capacities and registrations are capped", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, [
    "--timeout",
    "300ms",
    "--fall",
    "2",
    "--max-inflight",
    "8",
    "--max-workers",
    "2",
  ]);
  const [whost, wport] = lb.workerAddress.split(":");
  const workers: Peer[] = [];
  const fakeWorker = async (name: string) => {
    const peer = await dial({ host: whost, port: Number(wport) }, {
      role: "worker",
      name,
      // Health checks answered; tasks never.
      onRequest: (method) => method === "sys.ping" ? { pong: true } : new Promise(() => {}),
    });
    workers.push(peer);
    return peer;
  };
  const client = await connectTo(lb.address);
  try {
    const mute = await fakeWorker("mute");
    const reg = await mute.call("worker.register", { name: "mute", capacity: 10_000 }) as {
      capacity: number;
    };
    assert.equal(reg.capacity, 8, "a worker's capacity is capped by --max-inflight");
    await (await fakeWorker("w2")).call("worker.register", { name: "w2", capacity: 1 });
    const extra = await fakeWorker("w3");
    const refused = await extra.call("worker.register", { name: "w3" }).catch((e) => e);
    assert.equal((refused as DistError).code, "OVERLOADED");
    assert.match((refused as DistError).message, /at most 2 workers \(--max-workers\)/);
    workers.pop()?.close();
    workers.pop()?.close(); // w2 leaves: only the mute worker and the server are left
    // A worker starts with one request at a time (slow start), a trial: the one that lands on the
    // mute worker is held past its bound (the 300 ms timeout), then answered by the server, and
    // the mute worker gets no trial for 10 s (trials.ts; before, the client got TIMEOUT).
    const outcomes = await Promise.all(
      Array.from(
        { length: 20 },
        (_, i) => client.call("add", { a: i, b: 1 }).then(() => "ok", (e) => (e as DistError).code),
      ),
    );
    assert.deepEqual(new Set(outcomes), new Set(["ok"]), outcomes.join(","));
    await eventually(
      () => Promise.resolve(/Backend mute \(mute\) held a trial request add/.test(lb.stderr())),
      3000,
      "the mute worker's failed trial",
    );
    assert.match(lb.stderr(), /past 300 ms, which .* answered in \d+ ms: no trial for 10 s/);
    // In its trial backoff, it takes nothing: every request now goes to the server.
    for (let i = 0; i < 10; i++) assert.equal(await client.call("add", { a: i, b: 1 }), i + 1);
    assert.equal((await backendsOf(client)).find((x) => x.name === "mute")?.inflight, 0);
  } finally {
    client.close();
    for (const w of workers) w.close();
    await stopAll([lb, ...servers]);
  }
});
