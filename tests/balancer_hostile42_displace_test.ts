/**
 * hostile42a Y2: once `--max-workers` are all registered, a newcomer of a
 * source holding under a quarter of them takes the place of the oldest
 * worker that has answered nothing of the source holding the most such
 * (worker_sources.ts `displaced`, hostile40c V3). Workers that have answered
 * nothing are also real ones in a pool with no traffic yet, or just
 * restarted (every worker registers again, untried): fakes that answer only
 * their hello, one from each of three other addresses, closed three of four
 * real workers of one address, and these were then refused OVERLOADED for
 * as long as the fakes stayed (before r41, febb941: the fakes were refused).
 */
import assert from "node:assert/strict";
import type net from "node:net";
import type { DistError, Peer } from "../wire/mod.ts";
import { backendsOf, connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { fakeWorker, realWorker } from "./helpers/source_workers.ts";

/**
 * One server proven by a call, a balancer before it with `--max-workers 4`,
 * 4 idle real workers from 127.0.0.1; then `before` (given the client), and
 * 3 fakes from 127.0.0.2-4 that answer only their hello: their
 * registrations' answers, the real and fake workers registered then, and
 * whether every real worker's connection is still open.
 */
async function fleetThenFakes(
  before: (client: Peer) => Promise<void> = () => Promise.resolve(),
): Promise<{ answers: string[]; names: string[]; realsOpen: boolean; summary: string }> {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--max-workers", "4"]);
  const client = await connectTo(lb.address, 10_000);
  const reals: Peer[] = [];
  const fakes: net.Socket[] = [];
  try {
    assert.equal(await client.call("add", { a: 1, b: 1 }), 2);
    for (let i = 1; i <= 4; i++) reals.push(await realWorker(lb.workerAddress, `real${i}`));
    await before(client);
    const answers: string[] = [];
    for (let i = 2; i <= 4; i++) {
      answers.push(await fakeWorker(lb.workerAddress, `127.0.0.${i}`, `fake${i}`, fakes));
    }
    await sleep(200);
    const names = (await backendsOf(client)).map((b) => b.name).filter((n) =>
      /^(real|fake)/.test(n)
    ).sort();
    const summary = `fakes: ${answers.join(", ")}; registered: ${names.join(", ")}`;
    console.log(summary);
    return { answers, names, realsOpen: reals.every((r) => r.canCall), summary };
  } finally {
    client.close();
    for (const r of reals) r.close();
    for (const f of fakes) f.destroy();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
}

Deno.test("idle real workers of one address are not closed for fakes of other addresses once --max-workers is full (hostile42a Y2)", async () => {
  const { names, realsOpen, summary } = await fleetThenFakes();
  // main: "registered, registered, registered; registered: fake2, fake3, fake4, real4".
  assert.deepEqual(names.filter((n) => n.startsWith("real")), [
    "real1",
    "real2",
    "real3",
    "real4",
  ], summary);
  assert.ok(realsOpen, `every real worker's connection is open (${summary})`);
});

Deno.test("a client's slow and unknown requests give idle real workers no verdict: fakes of other addresses still find no slot (hostile42a Y2)", async () => {
  const { answers, realsOpen, summary } = await fleetThenFakes(async (client) => {
    // Trials the reals hold past their bound, as the server does (no verdict), and errors
    // every backend answers alike: nothing a real worker is to blame for.
    const slow = Array.from({ length: 4 }, () => client.call("sleep", { ms: 1_500 }));
    const unknown = Array.from(
      { length: 8 },
      () => client.call("nosuch", {}).then(() => "ok", (e) => (e as DistError).code),
    );
    assert.deepEqual(await Promise.all(slow), [1_500, 1_500, 1_500, 1_500]);
    assert.deepEqual(new Set(await Promise.all(unknown)), new Set(["UNKNOWN_METHOD"]));
  });
  assert.deepEqual(answers, ["OVERLOADED", "OVERLOADED", "OVERLOADED"], summary);
  assert.ok(realsOpen, `every real worker's connection is open (${summary})`);
});

Deno.test("with no backend proven, fakes of one address filling --max-workers keep their slots until their tasks time out: then a real worker of another address takes one (hostile40c V3, hostile42a Y2)", async () => {
  const lb = await startBalancer([], ["--max-workers", "4", "--timeout", "400ms"]);
  const client = await connectTo(lb.address, 10_000);
  const fakes: net.Socket[] = [];
  let real: Peer | undefined;
  try {
    for (let i = 1; i <= 4; i++) {
      assert.equal(
        await fakeWorker(lb.workerAddress, "127.0.0.2", `fake${i}`, fakes, true),
        "registered",
      );
    }
    const early = await realWorker(lb.workerAddress, "real").catch((e) => e as DistError);
    assert.equal((early as DistError).code, "OVERLOADED", String(early));
    // Each fake holds the one task it gets as an untried worker, past --timeout.
    const codes = await Promise.all(
      Array.from(
        { length: 4 },
        (_, i) => client.call("add", { a: i, b: 1 }).then(() => "ok", (e) => (e as DistError).code),
      ),
    );
    assert.ok(!codes.includes("ok"), codes.join(","));
    real = await realWorker(lb.workerAddress, "real");
    assert.match(lb.stderr(), /Worker fake\d closed: the slots are full/);
    const names = (await backendsOf(client)).map((b) => b.name).sort();
    assert.equal(names.filter((n) => n.startsWith("fake")).length, 3, names.join(","));
    assert.ok(names.includes("real"), names.join(","));
  } finally {
    client.close();
    real?.close();
    for (const f of fakes) f.destroy();
    await sleep(10);
    await stopAll([lb]);
  }
});
