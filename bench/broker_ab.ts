/**
 * Two brokers side by side on the value shapes of broker_shapes.ts: A is
 * `AB_BASE` (an executable run as `dist`, e.g. a script that runs another
 * checkout's main.ts), B this checkout. Each round runs every row on both,
 * alternating which goes first, and prints each side's median broker CPU
 * per delivery and the median of the per-round B/A ratios: on a shared
 * machine NATS's own cost moves 2× with load, so the old broker measured in
 * the same run is the steadier yardstick (about 4 minutes for 8 rounds of
 * every row).
 *
 * Each round's ratios are printed as it ends. `AB_V8` gives B V8 flags
 * (DENO_V8_FLAGS, comma-separated): with AB_BASE a script running this
 * same checkout, the flags' A/B.
 *
 *   AB_BASE=/path/to/old-dist [AB_ROWS=string,object] [AB_ROUNDS=8] \
 *     [AB_LIMIT_S=230] [AB_NATS=0] [AB_V8=flags] deno run -A bench/broker_ab.ts
 */
import { startDist } from "../tests/helpers/dist.ts";
import { median } from "./_common.ts";
import { loadRun, startNats } from "./broker.ts";
import { ROWS } from "./broker_shapes.ts";

const env = (name: string, fallback: string) => Deno.env.get(name) ?? fallback;
const only = env("AB_ROWS", "").split(",").filter((x) => x !== "");
const rows = only.length > 0 ? ROWS.filter((r) => only.includes(r.name)) : ROWS;
const ROUNDS = Number(env("AB_ROUNDS", "8"));
const LIMIT_S = Number(env("AB_LIMIT_S", "230"));
const N1 = 200_000, N4 = 100_000;
const base = Deno.env.get("AB_BASE");
if (base === undefined) {
  console.error("dist: AB_BASE must name the old broker's executable");
  Deno.exit(2);
}

const t0 = performance.now();
// distCommand reads DIST_BIN when it starts a process: A with it, B without.
Deno.env.set("DIST_BIN", base);
const a = await startDist(["broker", "--port", "0", "--heartbeat", "5000"]);
Deno.env.delete("DIST_BIN");
const v8 = Deno.env.get("AB_V8");
const b = await startDist(
  ["broker", "--port", "0", "--heartbeat", "5000"],
  v8 ? { env: { DENO_V8_FLAGS: v8 } } : {},
);
const nats = env("AB_NATS", "1") === "0" ? undefined : await startNats();
const sides = [["old", a], ["new", b]] as const;
const results: Record<string, number[]> = {};
const add = (key: string, v: number) => (results[key] ??= []).push(v);
const optsOf = (row: (typeof ROWS)[number]) => ({
  shape: row.shape,
  codec: row.codec,
  layout: row.layout,
  topic: `/ab/${row.name}`,
});
try {
  for (const [, d] of sides) {
    for (const row of rows) {
      // Unmeasured: a fresh broker's first rows pay for its compiler.
      await loadRun("dist", { port: d.port, pid: d.child.pid }, 1, 30_000, optsOf(row));
      await loadRun("dist", { port: d.port, pid: d.child.pid }, 4, 15_000, optsOf(row));
    }
  }
  if (nats !== undefined) await loadRun("nats", nats, 1, 30_000, { shape: "object", topic: "ab" });
  for (let r = 0; r < ROUNDS && (performance.now() - t0) / 1000 < LIMIT_S; r++) {
    for (const [i, row] of rows.entries()) {
      const order = (r + i) % 2 ? [sides[1], sides[0]] : [sides[0], sides[1]];
      for (const [name, d] of order) {
        const x = await loadRun("dist", { port: d.port, pid: d.child.pid }, 1, N1, optsOf(row));
        add(`${row.name} 1to1 ${name}`, x.serverCpuUs);
      }
      for (const [name, d] of [order[1], order[0]]) {
        const y = await loadRun("dist", { port: d.port, pid: d.child.pid }, 4, N4, optsOf(row));
        add(`${row.name} 1to4 ${name}`, y.serverCpuUs / 4);
      }
    }
    if (nats !== undefined) {
      const opts = { shape: "object" as const, topic: "ab" };
      add("nats 1to1", (await loadRun("nats", nats, 1, N1, opts)).serverCpuUs);
      add("nats 1to4", (await loadRun("nats", nats, 4, N4, opts)).serverCpuUs / 4);
    }
    const load = Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
    // This round's new/old ratios now: a run its timeout ends still leaves them.
    const ratios = rows.flatMap((row) =>
      ["1to1", "1to4"].map((k) => {
        const old = results[`${row.name} ${k} old`], now = results[`${row.name} ${k} new`];
        return `${row.name} ${k} ${(now[r] / old[r]).toFixed(2)}`;
      })
    );
    console.log(
      `round ${r + 1} at ${((performance.now() - t0) / 1000).toFixed(0)} s, load ${load}: ` +
        `new/old ${ratios.join(", ")}`,
    );
  }
} finally {
  await a.stop();
  await b.stop();
  await nats?.stop();
}
const list = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(",");
for (const row of rows) {
  for (const k of ["1to1", "1to4"]) {
    const old = results[`${row.name} ${k} old`], now = results[`${row.name} ${k} new`];
    if (old === undefined || now === undefined) continue;
    const paired = median(old.map((x, i) => now[i] / x));
    console.log(
      `${row.name.padEnd(8)} ${k}: old ${median(old).toFixed(3)} µs, new ${
        median(now).toFixed(3)
      } µs (paired new/old ${paired.toFixed(3)}, ${old.length} rounds) old [${list(old)}] new [${
        list(now)
      }]`,
    );
  }
}
const n1 = results["nats 1to1"], n4 = results["nats 1to4"];
if (n1 !== undefined && n4 !== undefined) {
  console.log(`nats 1to1 ${median(n1).toFixed(3)} µs, 1to4 ${median(n4).toFixed(3)} µs`);
}
