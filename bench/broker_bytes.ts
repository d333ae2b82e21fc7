/**
 * What a byte of wire costs the broker (issue 17): the small object 1 → 4
 * and 1 → 1 to a short topic and to one 64 bytes longer, on one broker,
 * alternating which goes first; each publish and each delivery carries the
 * topic, so the difference is the broker's CPU for 64 more bytes read and
 * written per delivery (1 → 4: mostly written). It prices a shorter wire
 * delivery (the JSON envelope around topic and value is 68 bytes with the
 * length prefix, NATS's `MSG` line about 14) before anyone changes the
 * contract for it.
 *
 *   [BYTES_ROUNDS=10] [BYTES_SUBS=4,1] deno run -A bench/broker_bytes.ts
 */
import { startDist } from "../tests/helpers/dist.ts";
import { median } from "./_common.ts";
import { loadRun } from "./broker.ts";

const ROUNDS = Number(Deno.env.get("BYTES_ROUNDS") ?? "10");
const SUBS = (Deno.env.get("BYTES_SUBS") ?? "4,1").split(",").map(Number);
const PAD = 64;
const SHORT = "/bytes/object";
const LONG = `${SHORT}/${"x".repeat(PAD - 1)}`;

const broker = await startDist(["broker", "--port", "0", "--heartbeat", "5000"]);
const server = { port: broker.port, pid: broker.child.pid };
const run = (subs: number, topic: string, count: number) =>
  loadRun("dist", server, subs, count, { shape: "object", codec: "json", topic });
const results: Record<string, number[]> = {};
try {
  // Unmeasured: a fresh broker's first runs pay for its compiler.
  for (const topic of [SHORT, LONG]) for (const subs of SUBS) await run(subs, topic, 20_000);
  for (let r = 0; r < ROUNDS; r++) {
    for (const subs of SUBS) {
      for (const topic of r % 2 ? [SHORT, LONG] : [LONG, SHORT]) {
        const x = await run(subs, topic, subs === 1 ? 200_000 : 100_000);
        (results[`${subs} ${topic === SHORT ? "short" : "long"}`] ??= []).push(
          x.serverCpuUs / subs,
        );
      }
    }
    console.log(`round ${r + 1}, load ${Deno.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  }
} finally {
  await broker.stop();
}
for (const subs of SUBS) {
  const short = results[`${subs} short`], long = results[`${subs} long`];
  const diff = median(short.map((x, i) => long[i] - x)) * 1000;
  console.log(
    `1→${subs}: broker CPU per delivery ${median(short).toFixed(3)} µs to a short topic, ` +
      `${median(long).toFixed(3)} µs to one ${PAD} bytes longer: paired difference ` +
      `${diff.toFixed(0)} ns (${(diff / PAD).toFixed(2)} ns a byte), ${short.length} rounds`,
  );
}
