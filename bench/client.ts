/**
 * The client suite: how precisely `dist client --bench --rate` keeps its
 * schedule (issue 6 needs it to start requests within about 0.1 ms of their
 * scheduled time, to measure a balancer's added latency).
 *
 * In each round, against one `dist server`, back to back: a closed-loop run at
 * concurrency 1 (p50, the floor), then fixed-rate runs at 1,000 and 10,000
 * req/s: the start lag (actual start minus scheduled, p50 and p99), the
 * latency p50 counted from the schedule, and the achieved rate. Figures are
 * medians over the rounds.
 */
import { startDist } from "../tests/helpers/dist.ts";
import { type BenchFlags, clientBench, Rounds } from "./_common.ts";

const RATES = [1000, 10_000];

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const duration = flags.quick ? "1s" : "3s";
  console.log(
    `${flags.runs} round(s); closed loop c=1 for 5,000 requests, then --rate ` +
      `${RATES.join(" and ")} for ${duration} each; medians`,
  );
  const server = await startDist(["server", "--port", "0"]);
  const rounds = new Rounds();
  try {
    for (let round = 1; round <= flags.runs; round++) {
      const closed = await clientBench(server.address, [
        "--requests",
        "5000",
        "--concurrency",
        "1",
      ]);
      rounds.add("c1_p50_ms", closed.latency_ms.p50);
      for (const rate of RATES) {
        const s = await clientBench(server.address, [
          "--rate",
          String(rate),
          "--duration",
          duration,
          "--concurrency",
          "64",
        ]);
        rounds.add(`rate${rate}_lag_p50_ms`, s.start_lag_ms.p50);
        rounds.add(`rate${rate}_lag_p99_ms`, s.start_lag_ms.p99);
        rounds.add(`rate${rate}_p50_ms`, s.latency_ms.p50);
        rounds.add(`rate${rate}_achieved`, s.achieved_rate);
      }
      rounds.printRound("client", round);
    }
  } finally {
    await server.stop();
  }
  const medians = rounds.medians();
  console.log("medians (ms; target: start lag within about 0.1 ms):");
  for (const rate of RATES) {
    console.log(
      `  rate ${rate}/s: start lag p50 ${medians[`rate${rate}_lag_p50_ms`]} ` +
        `p99 ${medians[`rate${rate}_lag_p99_ms`]}; latency p50 ${medians[`rate${rate}_p50_ms`]} ` +
        `(closed loop c=1: ${medians.c1_p50_ms}); achieved ${medians[`rate${rate}_achieved`]}/s`,
    );
  }
  return medians;
}
