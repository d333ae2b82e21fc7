/**
 * Queue groups at full rate: what a group's pick costs, and whether its
 * members share evenly.
 *
 * One publisher pipelines N publishes of a 128-byte value (confirmed every
 * 1,000) to `/g/x`; the sides, back to back in each round:
 *
 * - `plain`: one plain subscriber gets all N;
 * - `group`: a queue group of 4 members on 4 connections, all reading,
 *   shares them.
 *
 * Reported per side: deliveries per second (publish of the first to the
 * last delivered), the broker's CPU per delivery (µs), and for the group the
 * spread of its members' shares (the largest over the smallest). With
 * `GROUPS_BASE_BIN` set to an executable running another build of dist (a
 * script `exec deno run -A /other/main.ts "$@"`), `base_group` runs that
 * build's broker beside, alternated, to compare two builds in one run.
 *
 *   deno task bench broker-groups [--quick] [--runs N]
 */
import { type BenchFlags, cpuUs, round3, Rounds } from "./_common.ts";
import { type DistProcess, startDist } from "../tests/helpers/dist.ts";
import { jsonFrame, rawHandshake, RawReader, writeAll } from "../tests/helpers/raw.ts";
import { countFrames } from "../tests/helpers/groups.ts";

const MEMBERS = 4;

/**
 * A connection that subscribed and counts the deliveries it reads, reading
 * as fast as it can, and answers the broker's requests (a queue group's
 * proof that it reads) as a dist client does.
 */
async function counter(port: number, params: Record<string, unknown>) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new RawReader(conn);
  await rawHandshake(conn, reader, { heartbeat: 600_000 });
  await writeAll(conn, jsonFrame({ id: 1, method: "broker.subscribe", params }));
  const answer = await reader.json();
  if (answer?.id !== 1) throw new Error(`Subscribe failed: ${JSON.stringify(answer)}`);
  // A delivery of 128 B is a frame of 150 or more; a request is less.
  return { conn, state: countFrames(conn, true, 150) };
}

/** One side: a broker, subscribers, N publishes; its figures. */
async function side(broker: DistProcess, members: number, n: number) {
  const params = members > 1 ? { topic: "/g", group: "g" } : { topic: "/g" };
  const subs = await Promise.all(
    Array.from({ length: members }, () => counter(broker.port, params)),
  );
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: broker.port });
  const reader = new RawReader(conn);
  await rawHandshake(conn, reader, { heartbeat: 600_000 });
  const one = jsonFrame({
    method: "broker.publish",
    params: { topic: "/g/x", value: "v".repeat(128) },
  });
  const batch = new Uint8Array(one.length * 1000);
  for (let i = 0; i < 1000; i++) batch.set(one, i * one.length);
  const cpu0 = cpuUs(broker.child.pid);
  const t0 = performance.now();
  for (let sent = 0, id = 10; sent < n; sent += 1000, id++) {
    await writeAll(conn, batch);
    await writeAll(conn, jsonFrame({ id, method: "sys.ping", params: {} }));
    while ((await reader.json())?.id !== id) { /* its answer */ }
  }
  const total = () => subs.reduce((s, x) => s + x.state.count, 0);
  const deadline = Date.now() + 30_000;
  while (total() < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuUs(broker.child.pid) - cpu0;
  const counts = subs.map((s) => s.state.count);
  conn.close();
  for (const s of subs) s.conn.close();
  await Promise.all(subs.map((s) => s.state.done));
  return {
    rate: total() / seconds,
    cpu: cpu / Math.max(1, total()),
    spread: Math.max(...counts) / Math.max(1, Math.min(...counts)),
    lost: n - total(),
  };
}

async function withBroker<T>(bin: string | undefined, f: (b: DistProcess) => Promise<T>) {
  const saved = Deno.env.get("DIST_BIN");
  if (bin !== undefined) Deno.env.set("DIST_BIN", bin);
  let broker: DistProcess;
  try {
    broker = await startDist(["broker", "--port", "0"]);
  } finally {
    if (saved === undefined) Deno.env.delete("DIST_BIN");
    else Deno.env.set("DIST_BIN", saved);
  }
  try {
    return await f(broker);
  } finally {
    await broker.stop();
  }
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const n = flags.quick ? 20_000 : 200_000;
  const runs = flags.quick ? 1 : flags.runs;
  const base = Deno.env.get("GROUPS_BASE_BIN");
  const rounds = new Rounds();
  console.log(`broker-groups: ${n} publishes of 128 B, 1 → 1 plain vs 1 → group of ${MEMBERS}`);
  for (let r = 1; r <= runs; r++) {
    const sides: [string, string | undefined, number][] = [
      ["plain", undefined, 1],
      ["group", undefined, MEMBERS],
    ];
    if (base !== undefined) sides.push(["base_group", base, MEMBERS]);
    if (r % 2 === 0) sides.reverse();
    for (const [name, bin, members] of sides) {
      const f = await withBroker(bin, (b) => side(b, members, n));
      rounds.add(`${name}_msgs_per_s`, Math.round(f.rate));
      rounds.add(`${name}_cpu_us`, round3(f.cpu));
      if (members > 1) rounds.add(`${name}_spread`, round3(f.spread));
      if (f.lost > 0) rounds.add(`${name}_lost`, f.lost);
    }
    rounds.printRound("broker-groups", r);
  }
  return rounds.medians();
}
