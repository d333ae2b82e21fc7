/**
 * The shares count the answers of a run once (roles/balancer/answer_run.ts):
 * answers of one connection, from one backend, sent at one time and
 * answered at one time. Counted so, every decision the shares make must be
 * the one they make counting answer by answer. Two Shares see the same
 * random sequence of sends, answers (in runs, as a backend's read brings
 * them), clock steps and questions; one is made to count each answer at
 * once (a read after each), the other counts runs: every answer to every
 * question must be the same.
 */
import assert from "node:assert/strict";
import { Admit, type ClientShare, Shares } from "../roles/balancer/shares.ts";
import { prng } from "./helpers/raw.ts";

interface Sent {
  share: number;
  bulk: boolean;
  bytes: number;
  backend: { available: boolean };
  sentAt: number;
}

const SIZES = [64, 64, 64, 900, 3_000, 4_096, 20_000, 40_000];

/** One run of `steps` random operations on two Shares; returns what differed, if anything. */
function compare(seed: number, steps: number): string | undefined {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  let now = 1_000_000;
  const backends = [{ available: true }, { available: true }, { available: true }];
  const keys = [{}, {}, {}, {}, {}];
  // Two sources: a busy one of three connections, another of two.
  const source = (key: object) => keys.indexOf(key) < 3 ? "10.0.0.1" : "10.0.0.2";
  const make = () =>
    new Shares({
      now: () => now,
      waiting: () => false,
      wake: () => {},
      sourceOf: source,
      backends: () => backends.length,
      capacity: () => 3 * 128,
    });
  const one = make();
  const runs = make();
  const onBackends: Sent[] = [];
  const log: string[] = [];
  try {
    for (let step = 0; step < steps; step++) {
      const r = rnd();
      if (r < 0.35) {
        // A connection's read: several requests to one backend at once.
        const share = Math.floor(rnd() * keys.length);
        const backend = pick(backends);
        const bulk = rnd() < 0.2;
        const n = 1 + Math.floor(rnd() * 16);
        for (let i = 0; i < n; i++) {
          const bytes = rnd() < 0.8 ? 64 : pick(SIZES);
          for (const s of [one, runs]) s.took(s.of(keys[share]), bulk, bytes, backend);
          onBackends.push({ share, bulk, bytes, backend, sentAt: now });
        }
        log.push(`took ${n} of ${share}`);
      } else if (r < 0.7) {
        // A backend's read: the answers to what it holds, in the order sent, up to a count.
        const backend = pick(backends);
        let n = 1 + Math.floor(rnd() * 24);
        for (let i = 0; i < onBackends.length && n > 0; i++) {
          const job = onBackends[i];
          if (job.backend !== backend) continue;
          onBackends.splice(i--, 1);
          n--;
          // Now and then one never sent (its link was down): it counts at once.
          const at = rnd() < 0.03 ? -Infinity : now;
          for (const s of [one, runs]) {
            s.gave(s.of(keys[job.share]), job.bulk, at, job);
          }
          // Counted answer by answer: a read of what the shares count, after each.
          assert.equal(one.inflight >= 0, true);
        }
        log.push(`answered on a backend`);
      } else if (r < 0.85) {
        now += pick([0, 0.01, 0.5, 1, 20, 49, 60, 120, 600]);
        log.push(`at ${now}`);
      } else {
        // Questions, in a random order of kinds.
        const share = keys[Math.floor(rnd() * keys.length)];
        const bytes = pick(SIZES);
        const ask = (s: Shares) => {
          const c: ClientShare = s.of(share);
          return [
            s.mayTake(c, bytes),
            Admit[s.admit(c, 1 + Math.floor(bytes / 1000), bytes)],
            s.bulkDue(),
            s.pacing.room(bytes, c),
            backends.indexOf(s.unstuck(backends[0], backends)),
            s.inflight,
            c.inflight,
            c.bytes,
          ].join(",");
        };
        const [a, b] = [ask(one), ask(runs)];
        if (a !== b) return `seed ${seed}, step ${step}: ${a} one by one, ${b} by runs`;
      }
    }
    return undefined;
  } finally {
    one.stop();
    runs.stop();
  }
}

Deno.test("Shares: answers counted a run at a time decide as answers counted one by one", () => {
  for (let seed = 1; seed <= 300; seed++) {
    const differs = compare(seed, 400);
    assert.equal(differs, undefined);
  }
});
