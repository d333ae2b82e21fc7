/**
 * review45 R3: in a `--service` pool (no `--backends`), no instance may
 * lift the half-pool cap of the success-rate rule (success_rate.ts: only a
 * server the operator named is a witness, review45 R10, since anyone may
 * register at an open binder, and a liar answering every task at once was
 * a witness against real servers whose requests a client made outlast
 * `--timeout`, hostile45a K-A2). So fakes registered at the binder that
 * answered once and then hold every task keep up to half of the pool, in
 * rotation, and the clients' calls there fail TIMEOUT for as long as the
 * fakes stay (hostile43a A4 in a pure `--service` pool).
 *
 * A witness now is also an instance that runs `sleep` as asked: the
 * balancer's own short sleeps (and the clients') were answered no sooner
 * than asked, and none ever sooner (sleep_check.ts). A liar answering at
 * once is caught by the first; a fake that holds its tasks is not sound.
 *
 * A user checks that once the fakes have held requests for a while, their
 * client's calls stop failing: the two real servers could answer them all.
 */
import assert from "node:assert/strict";
import type { DistError, Listener } from "../wire/mod.ts";
import { listen } from "../wire/mod.ts";
import { backendsOf, connectTo, startBalancer, stopAll } from "./helpers/balancer.ts";
import { startDist } from "./helpers/dist.ts";
import { connectTo as binderConn, startService } from "./helpers/binder.ts";
import { sleep } from "./helpers/raw.ts";
import { type Judged, mayEject, Outcomes } from "../roles/balancer/success_rate.ts";
import { SleepCheck } from "../roles/balancer/sleep_check.ts";

/** A fake server: answers its first `add`, then holds every request for as long as it stays. */
function holdingFake(name: string): Listener {
  let served = 0;
  return listen({
    port: 0,
    role: "server",
    name,
    onRequest: (method, params) => {
      if (method === "sys.ping") return { pong: true };
      if (method === "add" && served++ === 0) {
        const { a, b } = params as { a: number; b: number };
        return a + b;
      }
      return new Promise(() => {}); // held
    },
  });
}

Deno.test("fakes registered at a binder that answered once and then hold every task stop failing the calls of a --service balancer's client (review45 R3)", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  const s1 = await startService("compute", binder.address, ["--name", "s1"]);
  const s2 = await startService("compute", binder.address, ["--name", "s2"]);
  const lb = await startBalancer([], [
    "--service",
    "compute",
    "--binders",
    binder.address,
    "--timeout",
    "1s",
  ]);
  const fakes = Array.from({ length: 4 }, (_, i) => holdingFake(`fake${i + 1}`));
  const client = await connectTo(lb.address, 10_000);
  try {
    const mallory = await binderConn(binder.address);
    try {
      for (const f of fakes) {
        await mallory.call("binder.register", {
          service: "compute",
          host: "127.0.0.1",
          port: f.addr.port,
          ttl_ms: 600_000,
        });
      }
    } finally {
      mallory.close();
    }
    // Until every fake is dialed and up.
    const end = performance.now() + 10_000;
    while (performance.now() < end) {
      const view = await backendsOf(client);
      if (view.filter((b) => b.peer.startsWith("fake") && b.state === "up").length === 4) break;
      await sleep(100);
    }
    let stop = false;
    const failedAt: number[] = [];
    let ok = 0;
    const t0 = performance.now();
    const codes = new Map<string, number>();
    const loops = Array.from({ length: 8 }, async (_, i) => {
      while (!stop) {
        try {
          await client.call("add", { a: i, b: 1 }, { timeout: 10_000 });
          ok++;
        } catch (err) {
          failedAt.push(performance.now() - t0);
          const code = String((err as DistError).code);
          codes.set(code, (codes.get(code) ?? 0) + 1);
        }
      }
    });
    // 8 s for every fake to be found out (each held requests for 1 s several times), then 6 s.
    await sleep(14_000);
    stop = true;
    await Promise.all(loops);
    const view = await backendsOf(client);
    const late = failedAt.filter((t) => t >= 8_000).length;
    const summary =
      `${ok} ok, ${failedAt.length} failed (${JSON.stringify([...codes])}), ${late} ` +
      `of them in the last 6 s; backends ${
        view.map((b) => `${b.peer}:${b.state}:${b.served}`).join(", ")
      }; load ${Deno.loadavg()[0]}`;
    console.log(summary);
    // A fake whose backoff (10 s) ends in that window gets one request again and holds it: one
    // failure each, two at most.
    assert.ok(late <= 8, `the client's calls stop failing (${summary})`);
  } finally {
    client.close();
    for (const f of fakes) f.close();
    await stopAll([lb, s1, s2, binder]);
  }
});

/** A binder's instance with `failed` and `ok` outcomes at 1000 ms, `witness` as told. */
function instance(failed: number, ok: number, options: { ejected?: boolean; witness?: boolean }) {
  const outcomes = new Outcomes();
  for (let i = 0; i < failed; i++) outcomes.add(1000, true);
  for (let i = 0; i < ok; i++) outcomes.add(1000, false);
  const ejected = options.ejected ?? false;
  return {
    kind: "server",
    source: "service compute",
    outcomes,
    state: ejected ? "down" : "up",
    ejected,
    witness: options.witness ?? false,
  } as Judged;
}

Deno.test("mayEject: in a --service pool, a fake past the cap goes out beside an instance that runs sleep as asked, not beside one that does not show it", () => {
  for (const witness of [true, false]) {
    const real = instance(0, 40, { witness });
    const out = [1, 2, 3].map(() => instance(20, 0, { ejected: true }));
    const b = instance(20, 0, {});
    const pool = [real, instance(0, 40, { witness }), ...out, b, instance(20, 0, {})];
    const why = mayEject(b, pool, 1000);
    if (witness) assert.equal(why, undefined, `kept in: ${why}`);
    else assert.match(why ?? "", /already out/);
  }
});

Deno.test("SleepCheck: a sleep answered no sooner than asked proves; one answered sooner disproves for good", () => {
  const check = new SleepCheck();
  check.answered(10, 0, 0); // too short to say anything
  assert.equal(check.proven, false);
  check.answered(30, 0, 31);
  assert.equal(check.proven, true);
  check.answered(1500, 0, 3); // a liar's answer at once
  check.answered(30, 0, 40);
  assert.equal(check.proven, false);
  assert.equal(check.early, true);
});
