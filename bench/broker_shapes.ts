/**
 * The broker with the values applications publish (issue 17): a plain
 * string, a small object, a nested one, one of non-ASCII text with escapes,
 * objects whose layout changes every message (what no memo of past frames
 * matches), the object again from MessagePack clients, and from a JSON
 * encoder of another layout (Python's json.dumps spacing, the params in
 * another order: read member by member, not by the canonical layout), each
 * 1 → 1 and 1 → 4, with the broker's CPU per delivery; nats-server (payload-blind: it gets the
 * object's JSON text) in the same round, alternating which goes first.
 * Also confirmed publishes (requests, 64 in flight, no subscriber) in
 * either codec: the broker's CPU per publish.
 * Run within `deno task bench broker`, or alone as `deno task bench broker-shapes`.
 */
import { startDist } from "../tests/helpers/dist.ts";
import type { BenchFlags } from "./_common.ts";
import { cpuUs, Rounds } from "./_common.ts";
import { loadRun, startNats } from "./broker.ts";
import { type Shape, SHAPES } from "./broker_worker.ts";
import { codecByName, dial } from "../wire/mod.ts";

/** Each row: the value, and the codec both clients speak (also bench/broker_ab.ts). */
export const ROWS: { name: string; shape: Shape; codec: string; layout?: "foreign" }[] = [
  { name: "string", shape: "string", codec: "json" },
  { name: "object", shape: "object", codec: "json" },
  { name: "nested", shape: "nested", codec: "json" },
  { name: "unicode", shape: "unicode", codec: "json" },
  { name: "mixed", shape: "mixed", codec: "json" },
  { name: "msgpack", shape: "object", codec: "msgpack" },
  // The object as another encoder writes it: other member order, spaced (see WorkerTask.layout).
  { name: "foreign", shape: "object", codec: "json", layout: "foreign" },
];

type Server = { port: number; pid: number };

/** One round of every shape, dist and NATS alternating which goes first. */
export async function shapeRound(
  flags: BenchFlags,
  round: number,
  dist: { port: number; child: { pid: number } },
  nats: Server | undefined,
  rounds: Rounds,
): Promise<void> {
  const n1 = flags.quick ? 20_000 : 200_000;
  const n4 = flags.quick ? 10_000 : 100_000;
  const server = { port: dist.port, pid: dist.child.pid };
  const distSide = async () => {
    for (const codec of ["json", "msgpack"]) {
      const us = await confirmedRun(server, codec, flags.quick ? 10_000 : 100_000);
      rounds.add(`dist_confirmed_${codec}_broker_cpu_us_per_publish`, us);
    }
    for (const row of ROWS) {
      const opts = {
        shape: row.shape,
        codec: row.codec,
        layout: row.layout,
        topic: `/shape/${row.name}`,
      };
      const a = await loadRun("dist", server, 1, n1, opts);
      const b = await loadRun("dist", server, 4, n4, opts);
      rounds.add(`dist_${row.name}_1to1_msgs_per_s`, a.msgsPerS);
      rounds.add(`dist_${row.name}_1to4_deliveries_per_s`, b.deliveriesPerS);
      rounds.add(`dist_${row.name}_1to1_broker_cpu_us_per_delivery`, a.serverCpuUs);
      rounds.add(`dist_${row.name}_1to4_broker_cpu_us_per_delivery`, b.serverCpuUs / 4);
    }
  };
  const natsSide = async () => {
    if (nats === undefined) return;
    const opts = { shape: "object" as const, topic: "shape" };
    const a = await loadRun("nats", nats, 1, n1, opts);
    const b = await loadRun("nats", nats, 4, n4, opts);
    rounds.add("nats_object_1to1_msgs_per_s", a.msgsPerS);
    rounds.add("nats_object_1to4_deliveries_per_s", b.deliveriesPerS);
    rounds.add("nats_object_1to1_broker_cpu_us_per_delivery", a.serverCpuUs);
    rounds.add("nats_object_1to4_broker_cpu_us_per_delivery", b.serverCpuUs / 4);
  };
  if (round % 2) {
    await distSide();
    await natsSide();
  } else {
    await natsSide();
    await distSide();
  }
}

/**
 * Every shape once through each broker, unmeasured: the first rows of a
 * fresh broker otherwise pay for its compiler warming up (the string row
 * measured 1.25 µs per delivery first in the run, 0.7 µs later).
 */
async function warmUp(
  dist: { port: number; child: { pid: number } },
  nats: Server | undefined,
): Promise<void> {
  const server = { port: dist.port, pid: dist.child.pid };
  for (const codec of ["json", "msgpack"]) await confirmedRun(server, codec, 20_000);
  for (const row of ROWS) {
    const opts = {
      shape: row.shape,
      codec: row.codec,
      layout: row.layout,
      topic: `/shape/${row.name}`,
    };
    await loadRun("dist", server, 1, 50_000, opts);
    await loadRun("dist", server, 4, 20_000, opts);
  }
  if (nats !== undefined) {
    await loadRun("nats", nats, 1, 50_000, { shape: "object", topic: "shape" });
    await loadRun("nats", nats, 4, 20_000, { shape: "object", topic: "shape" });
  }
}

/**
 * `count` confirmed publishes of the small object (each a request, at most
 * 64 in flight) to a topic nobody subscribes to: the broker's CPU per publish (µs).
 */
export async function confirmedRun(
  server: { port: number; pid: number },
  codec: string,
  count: number,
): Promise<number> {
  const peer = await dial({ host: "127.0.0.1", port: server.port }, {
    role: "bench",
    name: "bench-confirm",
    codec: codecByName(codec),
  });
  try {
    const cpu0 = cpuUs(server.pid);
    let inFlight = 0;
    let done = 0;
    let wake: (() => void) | undefined;
    const answered = () => {
      inFlight--;
      done++;
      wake?.();
    };
    for (let i = 0; i < count; i++) {
      while (inFlight >= 64) await new Promise<void>((r) => wake = r);
      inFlight++;
      const value = { ...SHAPES.object, id: i };
      peer.call("broker.publish", { topic: "/confirmed", value, retain: false }).then(answered);
    }
    while (done < count) await new Promise<void>((r) => wake = r);
    return (cpuUs(server.pid) - cpu0) / count;
  } finally {
    peer.close();
  }
}

/** Prints each shape's medians against NATS's. */
export function shapeSummary(m: Record<string, number>): void {
  const f = (x: number | undefined) => x === undefined ? "n/a" : Math.round(x).toLocaleString("en");
  const c = (x: number | undefined) => x === undefined ? "n/a" : x.toFixed(2);
  const nats1 = m.nats_object_1to1_broker_cpu_us_per_delivery;
  const nats4 = m.nats_object_1to4_broker_cpu_us_per_delivery;
  const ratio = (x: number | undefined, n: number | undefined) =>
    x === undefined || n === undefined ? "" : ` (${(x / n).toFixed(2)}× NATS's)`;
  console.log("value shapes, medians (broker CPU per delivery in µs; target ≤ 0.5× NATS's):");
  for (const { name } of ROWS) {
    const a = m[`dist_${name}_1to1_broker_cpu_us_per_delivery`];
    const b = m[`dist_${name}_1to4_broker_cpu_us_per_delivery`];
    console.log(
      `  ${name.padEnd(8)} 1→1 ${f(m[`dist_${name}_1to1_msgs_per_s`])} msgs/s, ${c(a)} µs${
        ratio(a, nats1)
      }; 1→4 ${f(m[`dist_${name}_1to4_deliveries_per_s`])} deliveries/s, ${c(b)} µs${
        ratio(b, nats4)
      }`,
    );
  }
  console.log(
    `  nats     1→1 ${f(m.nats_object_1to1_msgs_per_s)} msgs/s, ${c(nats1)} µs; 1→4 ${
      f(m.nats_object_1to4_deliveries_per_s)
    } deliveries/s, ${c(nats4)} µs`,
  );
  console.log(
    `  confirmed publishes (64 in flight), broker µs per publish: JSON ${
      c(m.dist_confirmed_json_broker_cpu_us_per_publish)
    }, MessagePack ${c(m.dist_confirmed_msgpack_broker_cpu_us_per_publish)}`,
  );
}

/** `deno task bench broker-shapes`: only the shapes, each round alternating. */
export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  // The clients are threads of this process: on a loaded machine a subscriber's thread
  // starved for 3 s (the default heartbeat's limit) is not a dead peer.
  const dist = await startDist(["broker", "--port", "0", "--heartbeat", "5000"]);
  const nats = await startNats();
  const rounds = new Rounds();
  try {
    await warmUp(dist, nats);
    for (let round = 1; round <= flags.runs; round++) {
      await shapeRound(flags, round, dist, nats, rounds);
      rounds.printRound("broker-shapes", round);
    }
  } catch (err) {
    console.log(`broker's log:\n${dist.stderr().slice(-3000)}`);
    throw err;
  } finally {
    await dist.stop();
    await nats?.stop();
  }
  const m = rounds.medians();
  shapeSummary(m);
  return m;
}
