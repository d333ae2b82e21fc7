/**
 * Durable state (issue 19), sides alternating in every round, medians:
 *
 * - broker: `broker.publish` sent as requests (256 in flight on each of
 *   4 connections: many clients, as a durable broker has; one connection
 *   for `always`; retained values of 10,000 topics, objects with unicode in
 *   two member orders) for a fixed time, to an in-memory broker and to
 *   brokers with `--data-dir` and `--fsync off`, `batch`, `always`:
 *   acknowledged publishes a second and the median time to the answer;
 * - binder: `binder.register` (64 in flight, new instances) without and
 *   with `--data-dir`.
 */
import { parseAddress } from "../config/mod.ts";
import { dial, type Peer } from "../wire/mod.ts";
import { type DistProcess, startDist } from "../tests/helpers/dist.ts";
import { type BenchFlags, median, Rounds } from "./_common.ts";

/**
 * Calls made by `inFlight` loops on each peer for `ms`: calls a second and
 * the median latency (ms).
 */
async function drive(
  peers: Peer[],
  inFlight: number,
  ms: number,
  call: (i: number) => [string, unknown],
): Promise<{ perS: number; p50: number }> {
  const end = performance.now() + ms;
  const lat: number[] = [];
  let i = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inFlight * peers.length }, async (_, n) => {
    const peer = peers[n % peers.length];
    while (performance.now() < end) {
      const [method, params] = call(i++);
      const s = performance.now();
      await peer.call(method, params, { timeout: 30_000 });
      lat.push(performance.now() - s);
    }
  }));
  return { perS: lat.length / ((performance.now() - t0) / 1000), p50: median(lat) };
}

/** Connections publishing to each broker, 256 requests in flight on each. */
const CONNECTIONS = 4;

const publish = (i: number): [string, unknown] => [
  "broker.publish",
  {
    topic: `/bench/${i % 10_000}`,
    value: i % 2
      ? { price: i / 100, city: "Chișinău", tag: "東京 ✓" }
      : { tag: "Zoë", city: "Bălți", price: i },
  },
];

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const dir = await Deno.makeTempDir();
  const ms = flags.quick ? 1000 : 3000;
  const brokers: [string, DistProcess][] = [];
  const binders: [string, DistProcess][] = [];
  const rounds = new Rounds();
  try {
    brokers.push(["memory", await startDist(["broker", "--port", "0"])]);
    for (const mode of ["off", "batch", "always"]) {
      brokers.push([
        mode,
        await startDist(["broker", "--port", "0", "--data-dir", `${dir}/${mode}`, "--fsync", mode]),
      ]);
    }
    binders.push(["memory", await startDist(["binder", "--port", "0"])]);
    binders.push(["disk", await startDist(["binder", "--port", "0", "--data-dir", `${dir}/b`])]);
    const peers = new Map<DistProcess, Peer[]>();
    for (const [name, p] of brokers) {
      peers.set(
        p,
        await Promise.all(
          Array.from(
            // always syncs each write on the event loop: 1,024 in flight would block it past
            // the heartbeat, so it keeps one connection.
            { length: name === "always" ? 1 : CONNECTIONS },
            () => dial(parseAddress(p.address), { role: "client", name: "bench" }),
          ),
        ),
      );
    }
    for (const [, p] of binders) {
      peers.set(p, [await dial(parseAddress(p.address), { role: "client", name: "bench" })]);
    }
    let port = 1;
    for (let r = 1; r <= flags.runs; r++) {
      for (const [name, p] of r % 2 ? brokers : [...brokers].reverse()) {
        const out = await drive(peers.get(p)!, 256, ms, publish);
        rounds.add(`publish_${name}_per_s`, out.perS);
        rounds.add(`publish_${name}_p50_ms`, out.p50);
      }
      for (const [name, p] of r % 2 ? binders : [...binders].reverse()) {
        const out = await drive(peers.get(p)!, 64, ms, () => [
          "binder.register",
          { service: "bench", host: "127.0.0.1", port: (port++ % 60_000) + 1, ttl_ms: 600_000 },
        ]);
        rounds.add(`register_${name}_per_s`, out.perS);
        rounds.add(`register_${name}_p50_ms`, out.p50);
      }
      rounds.printRound("durable", r);
    }
    for (const list of peers.values()) for (const peer of list) peer.close();
  } finally {
    await Promise.all([...brokers, ...binders].map(([, p]) => p.stop()));
    await Deno.remove(dir, { recursive: true });
  }
  const m = rounds.medians();
  const f = (k: string) =>
    `${m[`publish_${k}_per_s`].toFixed(0)}/s (p50 ${m[`publish_${k}_p50_ms`].toFixed(1)} ms)`;
  console.log(
    `durable medians: acknowledged publishes, memory ${f("memory")}, --fsync off ${f("off")}, ` +
      `batch ${f("batch")}, always ${f("always")}; binder.register memory ${
        m.register_memory_per_s.toFixed(0)
      }/s, --data-dir ${m.register_disk_per_s.toFixed(0)}/s`,
  );
  return m;
}
