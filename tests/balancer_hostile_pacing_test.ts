/**
 * Bytes per source and the pacing of requests of many bytes
 * (roles/balancer/shares.ts, pacing.ts), driven through the dispatcher
 * without sockets and with a clock of the test's own (hostile33 Y1, Y2).
 */
import assert from "node:assert/strict";
import { DistError } from "../wire/mod.ts";
import { sizedDispatcher, type SizedJob } from "./helpers/dispatcher.ts";

/** A dispatcher over two backends (tests/helpers/dispatcher.ts), with answers by a predicate. */
function setup() {
  const d = sizedDispatcher({ queueTimeoutMs: 60_000 });
  const { on } = d;
  /** Answers every job on the backends that `which` picks. */
  const answer = (which: (job: SizedJob) => boolean) => {
    for (const job of [...on.keys()]) if (which(job)) d.answer(job);
  };
  const of = (flows: Set<object>) => [...on.keys()].filter((j) => flows.has(j.flow!));
  return { ...d, answer, of };
}

Deno.test("Dispatcher: one source's connections together have at most 128 KiB on the backends", () => {
  const { dispatcher, conn, submit, answer, of } = setup();
  // A legitimate client, busy, whose small requests earned pace for others' (up to 1 MiB).
  const legit = conn("10.0.0.1");
  for (let i = 0; i < 300; i++) {
    submit(legit, 60);
    answer((j) => j.flow === legit);
  }
  submit(legit, 60);
  // Sixteen connections of one address, each within its own 64 KiB: 2 × 32,700.
  const attackers = new Set(Array.from({ length: 16 }, () => conn("10.0.0.2")));
  for (const a of attackers) for (let i = 0; i < 2; i++) submit(a, 32_700);
  const bytes = of(attackers).reduce((n, j) => n + j.size, 0);
  // Before: 32 requests, 1,046,400 bytes (a share by count, bytes per connection only).
  assert.ok(
    bytes <= 128 * 1024,
    `${of(attackers).length} requests, ${bytes} bytes on the backends`,
  );
  assert.ok(bytes > 0);
  dispatcher.close(new DistError("UNAVAILABLE", "done"));
});

Deno.test("Dispatcher: requests of 4 KiB-32 KiB go at the pace small ones earn them", () => {
  const { dispatcher, conn, submit, answer, of } = setup();
  const legit = conn("10.0.0.1");
  submit(legit, 60);
  // Sixteen addresses, each one connection of 2 × 32,700 (under LARGE_BYTES: never paced before).
  const attackers = new Set(Array.from({ length: 16 }, (_, i) => conn(`10.0.1.${i}`)));
  for (const a of attackers) for (let i = 0; i < 2; i++) submit(a, 32_700);
  // Before: all 32 on the backends beside the one small request.
  assert.ok(of(attackers).length <= 1, `${of(attackers).length} on the backends`);
  // Each small request sent earns 4 KiB: 32,700 bytes for about eight.
  let sent = 0;
  for (let i = 0; i < 80; i++) {
    submit(legit, 60);
    sent++;
    answer((j) => j.flow === legit);
    answer((j) => attackers.has(j.flow!));
  }
  const total = [...attackers].length * 2 - dispatcher.queued;
  assert.ok(total >= 5 && total <= 12, `${total} medium requests went for ${sent} small ones`);
  dispatcher.close(new DistError("UNAVAILABLE", "done"));
});

Deno.test("Dispatcher: large requests keep off one backend while a small client is between requests", () => {
  const { dispatcher, clock, conn, submit, answer, on, of } = setup();
  // A client at one request a second: answered, then away past the pacing's grace.
  const legit = conn("10.0.0.1");
  submit(legit, 60);
  answer((j) => j.flow === legit);
  clock.advance(900);
  // Sixteen addresses, one 1 MB echo each.
  const attackers = new Set(Array.from({ length: 16 }, (_, i) => conn(`10.0.1.${i}`)));
  for (const a of attackers) submit(a, 1_000_000);
  const busy = new Set(of(attackers).map((j) => on.get(j)));
  // Before: all sixteen at once, on every backend, and the next small request behind one.
  assert.equal(busy.size, 1, `large requests on ${[...busy]}`);
  // And one at a time there (one backend fewer than two), the rest in their lines.
  assert.equal(of(attackers).length, 1);
  const next = submit(legit, 60);
  assert.ok(on.has(next), "the small request went at once");
  assert.ok(
    !busy.has(on.get(next)),
    `the small request went to ${on.get(next)?.name}, behind a large one`,
  );
  dispatcher.close(new DistError("UNAVAILABLE", "done"));
});
