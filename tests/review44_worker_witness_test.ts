/**
 * review44 R6: since 6730512 (hostile44a H-A2) only a server is the sound
 * witness that lifts the ejection cap (success_rate.ts mayEject). In a pool
 * of dial-in workers only (no --backend, no binder servers) nothing can
 * lift it: hostile43a A4's case with a real worker in place of the server —
 * four fakes that answered once and then hold every task — leaves the fakes
 * past the cap in rotation for good, each of its picks a client's TIMEOUT.
 */
import assert from "node:assert/strict";
import { type Judged, mayEject, Outcomes } from "../roles/balancer/success_rate.ts";

function judged(kind: "server" | "worker", failed: number, ok: number, ejected = false): Judged {
  const outcomes = new Outcomes();
  for (let i = 0; i < failed; i++) outcomes.add(1000, true);
  for (let i = 0; i < ok; i++) outcomes.add(1000, false);
  return { kind, outcomes, state: ejected ? "down" : "up", ejected } as Judged;
}

for (const kind of ["server", "worker"] as const) {
  Deno.test(`mayEject: a fake that times out every task goes out beside a sound ${kind}, past the cap`, () => {
    const real = judged(kind, 0, 40);
    const fakes = [judged("worker", 20, 0, true), judged("worker", 20, 0, true)];
    const b = judged("worker", 20, 0), other = judged("worker", 20, 0);
    const pool = [real, ...fakes, b, other];
    assert.equal(mayEject(b, pool, 1000), undefined, `kept in: ${mayEject(b, pool, 1000)}`);
  });
}

Deno.test("mayEject: in a pool of workers only, a worker that answers its other requests in time stays in at the cap beside one that answers everything (hostile44a H-A2)", () => {
  // The liar answers every task at once (a client's sleeps past --timeout included); the real
  // workers answer every other request in time, and the client's sleeps time out on them.
  const liar = judged("worker", 0, 60);
  const real = judged("worker", 8, 20);
  const pool = [liar, judged("worker", 8, 20, true), judged("worker", 8, 20, true), real];
  assert.match(mayEject(real, pool, 1000) ?? "", /already out/);
});
