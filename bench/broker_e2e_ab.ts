/**
 * Two builds of dist end to end, side by side (broker_e2e.ts's runs, dist
 * only): A is another checkout (`E2E_BASE`: its broker and its client
 * library, through its bench/broker_e2e_client.ts), B this one. Each round
 * runs each style flat out on both, alternating which goes first, and
 * prints each side's median rate and CPU per message (publisher,
 * subscriber, broker) and the median of the per-round B/A rate ratios: on a
 * shared machine the build before, measured in the same run, is the
 * steadier yardstick (NATS's own rate moves 1.5× with load).
 *
 *   E2E_BASE=/path/to/other/checkout [E2E_SHAPES=mixed] [AB_ROUNDS=4] \
 *     [AB_STYLES=callback,iterator] [AB_COUNT=250000] deno run -A bench/broker_e2e_ab.ts
 */
import { startDist } from "../tests/helpers/dist.ts";
import { cpuUs, median } from "./_common.ts";
import { startCheckout } from "./broker.ts";
import { e2e } from "./broker_e2e.ts";

const env = (name: string, fallback: string) => Deno.env.get(name) ?? fallback;
const base = Deno.env.get("E2E_BASE");
if (base === undefined) {
  console.error("dist: E2E_BASE must name the other checkout");
  Deno.exit(2);
}
const ROUNDS = Number(env("AB_ROUNDS", "4"));
const STYLES = env("AB_STYLES", "callback,iterator").split(",") as ("callback" | "iterator")[];
const COUNT = Number(env("AB_COUNT", "250000"));
const SHAPES = env("E2E_SHAPES", "reading") === "mixed" ? "mixed" : "reading";
const SKIP = COUNT / 5;
const brokerArgs = ["broker", "--port", "0", "--max-pending", String(64 * 1024 * 1024)];

const other = await startCheckout(base, brokerArgs);
const mine = await startDist(brokerArgs);
const sides = [
  ["A", other, `${base}/bench/broker_e2e_client.ts`],
  ["B", mine, new URL("./broker_e2e_client.ts", import.meta.url).pathname],
] as const;
const results: Record<string, number[]> = {};
const add = (key: string, v: number) => (results[key] ??= []).push(v);

try {
  // A fresh broker's first run pays for its compiler warming up: one unmeasured run each.
  for (const [, broker, client] of sides) {
    await e2e("dist", broker.address, COUNT / 4, 0, "callback", 0, client, SHAPES);
  }
  for (let r = 1; r <= ROUNDS; r++) {
    for (const style of STYLES) {
      const order = r % 2 ? sides : [sides[1], sides[0]];
      const rate: Record<string, number> = {};
      for (const [name, broker, client] of order) {
        const cpu0 = cpuUs(broker.child.pid);
        const got = await e2e("dist", broker.address, COUNT, 0, style, SKIP, client, SHAPES);
        const key = `${style}_${name}`;
        rate[name] = got.msgs_per_s;
        add(`${key}_msgs_per_s`, got.msgs_per_s);
        add(`${key}_pub_msgs_per_s`, got.pub_msgs_per_s);
        add(`${key}_p50_ms`, got.p50_ms);
        add(`${key}_pub_cpu_us`, got.pub_cpu_us);
        add(`${key}_sub_cpu_us`, got.sub_cpu_us);
        add(`${key}_broker_cpu_us`, (cpuUs(broker.child.pid) - cpu0) / COUNT);
      }
      add(`${style}_ratio`, rate.B / rate.A);
      console.log(
        `round ${r} ${style}: A ${rate.A.toFixed(0)} B ${rate.B.toFixed(0)} msgs/s (B/A ${
          (rate.B / rate.A).toFixed(2)
        })`,
      );
    }
  }
} finally {
  await other.stop();
  await mine.stop();
}
for (const [key, xs] of Object.entries(results)) {
  console.log(`${key}: median ${median(xs).toFixed(3)} (${xs.map((x) => x.toFixed(2)).join(" ")})`);
}
