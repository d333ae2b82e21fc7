/**
 * hostile32 X2, bounded: one polite client (it reads every answer, and has
 * 16 requests outstanding, within its share by count) whose requests are
 * large echoes of 256 KiB (bench/large_client.ts, in its own process). Every
 * client's requests to a backend share one connection, so before the fix a
 * small request waited behind up to 16 large ones on the way out and their
 * answers on the way back: a legitimate client's p99 was 530–640 ms here.
 * Now bytes count in the shares (shares.ts): the large client has one
 * request on the backends at a time, at the pace the others' requests earn
 * it, and small requests go to a backend with no large one on it. The
 * bounds are about the product, not the machine (a loaded 2-core machine
 * stalls for tens of ms at times).
 */
import assert from "node:assert/strict";
import { DistError } from "../wire/mod.ts";
import { fileURLToPath } from "node:url";
import {
  Backend,
  createPolicy,
  Dispatcher,
  type Job,
  Pool,
  RetryBudget,
} from "../roles/balancer/mod.ts";
import { connectTo, newJob, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";

const LARGE = fileURLToPath(new URL("../bench/large_client.ts", import.meta.url));

interface SizedJob extends Job {
  id: number;
  size: number;
}

Deno.test("Dispatcher: bytes count in the shares; small requests keep off large ones", () => {
  const pool = new Pool();
  for (const name of ["b1", "b2"]) {
    const b = new Backend("server", name, { capacity: 128, rules: { rise: 2, fall: 3 } });
    b.onConnected();
    pool.add(b);
  }
  const sent: [number, string][] = [];
  const dispatcher = new Dispatcher<SizedJob>(pool, createPolicy("round-robin"), {
    send(job, backend) {
      sent.push([job.id, backend.name]);
      return true;
    },
    reject() {},
    sizeOf: (job) => job.size,
  }, {
    queueLimit: 1000,
    queueBytes: Infinity,
    queueTimeoutMs: 10_000,
    retries: 0,
    budget: new RetryBudget({ minPerSecond: 100 }),
  });
  let next = 1;
  const jobs = new Map<number, SizedJob>();
  const job = (flow: object, size: number): SizedJob => {
    const j = newJob({ id: next++, size, flow });
    jobs.set(j.id, j);
    return j;
  };
  const small = {}, large = {};
  dispatcher.submit(job(small, 60));
  for (let i = 0; i < 16; i++) dispatcher.submit(job(large, 256 * 1024));
  // One large request on the backends, not 16: the rest wait in its line.
  const onBackends = () => sent.filter(([id]) => jobs.get(id)!.size > 1000);
  assert.equal(onBackends().length, 1);
  assert.equal(dispatcher.queued, 15);
  const busy = onBackends()[0][1];
  // The small client's requests go to the other backend, none behind the large one.
  for (let i = 0; i < 10; i++) dispatcher.submit(job(small, 60));
  const smalls = sent.filter(([id]) => jobs.get(id)!.size < 1000).slice(1);
  assert.equal(smalls.length, 10);
  assert.ok(smalls.every(([, b]) => b !== busy), JSON.stringify(smalls));
  // The large one answered: the next goes, in order, once others' requests
  // earned its bytes (4 KiB each; 256 KiB less the 11 sent).
  const [firstId] = onBackends()[0];
  dispatcher.finish(jobs.get(firstId)!, "answered");
  assert.equal(onBackends().length, 1);
  // Each small request answered at once (the small client has 16 on the backends at most).
  const answered = new Set<number>();
  const ask = () => {
    dispatcher.submit(job(small, 60));
    for (const [id] of sent) {
      if (jobs.get(id)!.size < 1000 && !answered.has(id)) {
        answered.add(id);
        dispatcher.finish(jobs.get(id)!, "answered");
      }
    }
  };
  for (let i = 0; i < 52; i++) ask();
  assert.equal(onBackends().length, 1);
  ask();
  assert.equal(onBackends().length, 2);
  assert.equal(onBackends()[1][0], firstId + 1);
  dispatcher.close(new DistError("UNAVAILABLE", "done"));
});

Deno.test("a client of large requests that reads its answers slows only itself", async () => {
  const servers = await startServers(2);
  const balancer = await startBalancer(servers);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", LARGE, balancer.address, "16", String(256 * 1024)],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    assert.match((await lines.read()).value ?? "", /ready/);
    // Its requests flowing before the legitimate client starts.
    await new Promise((r) => setTimeout(r, 500));
    const peer = await connectTo(balancer.address);
    const times: number[] = [];
    try {
      for (let i = 0; i < 300; i++) {
        const t = performance.now();
        assert.equal(await peer.call("add", { a: i, b: 1 }, { timeout: 10_000 }), i + 1);
        times.push(performance.now() - t);
      }
    } finally {
      peer.close();
    }
    await child.stdin.close();
    let out = "";
    for (let r = await lines.read(); !r.done; r = await lines.read()) out += r.value;
    const answered = Number(/answered (\d+)/.exec(out)?.[1] ?? 0);
    times.sort((a, b) => a - b);
    const p50 = times[Math.floor(times.length / 2)];
    const p99 = times[Math.floor(times.length * 0.99)];
    const spread = `p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${
      times.at(-1)!.toFixed(1)
    } ms, ${times.filter((t) => t > 50).length} over 50 ms, total ${
      Math.round(times.reduce((a, b) => a + b, 0))
    } ms; the large client got ${answered} answers`;
    // Before the fix: p99 530-640 ms here (load 15), and 16-50 over 50 ms;
    // after, p99 17-36 ms. The first call may wait behind the large
    // requests the client sent while it was alone (it may use every slot).
    assert.ok(p50 < 20 && p99 < 150, `legitimate calls: ${spread}`);
    assert.ok(answered > 0, `the large client was served too: ${spread}`);
  } finally {
    await child.stdin.close().catch(() => {});
    await lines.cancel().catch(() => {});
    await child.status;
    await stopAll([balancer, ...servers]);
  }
});
