/**
 * review44 R8: a worker out for its answers keeps its `--max-workers` slot
 * while it answers, even late (hostile44a H-A3: real workers answering a
 * client's `sleep`s past `--timeout` are slow, not holders). A fake that
 * answered one task, then held every task it was sent, kept its slot by
 * answering one held task late every 8 s, and a real worker was refused.
 * Late answers now count from a worker that answers late at least half of
 * what failed on it.
 */
import assert from "node:assert/strict";
import { Backend } from "../roles/balancer/backends.ts";
import { WorkerSources } from "../roles/balancer/worker_sources.ts";

const RULES = { rise: 2, fall: 3 };

/** A worker of `source` that served `served` tasks, then had `failed` fail on it (timed out) and went out. */
function outWorker(sources: WorkerSources, source: string, served: number, failed: number) {
  const b = new Backend("worker", source, { capacity: 64, rules: RULES });
  sources.join(source, b, source, 0);
  b.served = served;
  b.lastAnswerAt = b.lastResultAt = 0;
  b.failures = failed;
  b.ejected = true;
  return b;
}

Deno.test("an out worker that holds its tasks, answering one late every 8 s, gives its slot to a newcomer (review44 R8)", () => {
  const sources = new WorkerSources();
  const fake = outWorker(sources, "127.0.0.9", 1, 64);
  for (let t = 8_000; t <= 24_000; t += 8_000) {
    fake.lateAnswers++;
    fake.lateAt = t;
  }
  // Before: each late answer kept it "alive" for 10 s more, so its slot was never given up.
  assert.equal(sources.displaced("127.0.0.1", 1, 25_000), fake);
});

Deno.test("an out worker that answers late what timed out on it (slow, not a holder) keeps its slot (hostile44a H-A3)", () => {
  const sources = new WorkerSources();
  const real = outWorker(sources, "127.0.0.2", 40, 6);
  real.lateAnswers = 6;
  real.lateAt = 20_000;
  assert.equal(sources.displaced("127.0.0.1", 1, 25_000), undefined);
  // Its answers stop too: then it is idle, as before.
  assert.equal(sources.displaced("127.0.0.1", 1, 30_001), real);
});
