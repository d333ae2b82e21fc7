/**
 * The mqtt suite (issue 18's figures): `dist broker --mqtt-port` against
 * Mosquitto (Debian `mosquitto`, with its defaults, persistence off), the
 * same clients on both, in one run; each round starts both brokers fresh
 * and alternates which goes first; medians of the rounds and of the
 * per-round ratios.
 *
 * 1. Idle memory: N MQTT 3.1.1 connections (keep-alive 600 s, one QoS 1
 *    subscription each) from another process, the broker's RSS growth ÷ N
 *    (target: ≤ Mosquitto's), and whether all N were served (10,000 target).
 * 2. Throughput with the raw-socket generator (bench/mqtt_load.ts, which
 *    leaves the broker the bottleneck): 1 → 1 and 1 → 4 at QoS 0 and QoS 1,
 *    128-byte payloads, messages/s every subscriber received (target ≥ 2×
 *    Mosquitto) and the broker's CPU per message published.
 * 3. The same four with MQTT.js (npm `mqtt`), what a user's client sees:
 *    MQTT.js's own cost per message is most of it.
 * 4. Latency with MQTT.js, 1 → 1 QoS 1 at a fixed 2,000 msgs/s: p50/p99
 *    from publish() to the subscriber's message event; then again while
 *    another process floods the broker with 20,000 distinct client ids
 *    asking for persistent sessions (bench/mqtt_flood.ts): sessions kept
 *    (dist: at most --max-connections) and the broker's RSS growth.
 */
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { dial } from "../wire/mod.ts";
import { freePort, startDist } from "../tests/helpers/dist.ts";
import { type BenchFlags, cpuUs, median, onPath, round3, Rounds, rssOf } from "./_common.ts";
import { fdLimit, perConnection } from "./idle.ts";
import { loadRun } from "./mqtt_load.ts";
import { fileURLToPath } from "node:url";

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));

type System = "dist" | "mosquitto";

interface Broker {
  system: System;
  port: number;
  pid: number;
  /** What the broker counts (dist: sys.stats' mqtt object), for a failed run's message. */
  says(): Promise<string>;
  stop(): Promise<void>;
}

async function listening(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  throw new Error(`nothing listens on ${port}`);
}

export async function startDistMqtt(connections: number): Promise<Broker> {
  const port = freePort();
  const p = await startDist([
    "broker",
    "--port",
    "0",
    "--mqtt-port",
    String(port),
    "--max-connections",
    String(connections + 100),
  ]);
  await listening(port);
  const says = async () => {
    try {
      const peer = await dial({ host: "127.0.0.1", port: p.port }, { role: "bench", name: "mqtt" });
      const stats = await peer.call("sys.stats") as { mqtt: unknown };
      peer.close();
      return JSON.stringify(stats.mqtt);
    } catch (err) {
      return String(err);
    }
  };
  return { system: "dist", port, pid: p.child.pid, says, stop: async () => void await p.stop() };
}

/** Mosquitto with Debian's defaults (max_inflight 20, max_queued 1000), persistence off. */
export async function startMosquitto(): Promise<Broker> {
  const port = freePort();
  const dir = await Deno.makeTempDir({ prefix: "bench-mosq-" });
  const conf = `${dir}/mosquitto.conf`;
  // As root it would switch to the mosquitto user: stay (nothing is written).
  await Deno.writeTextFile(
    conf,
    `user root\nlistener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n` +
      // $SYS every second: a stalled run reads what Mosquitto dropped.
      `log_dest none\nsys_interval 1\n`,
  );
  const child = new Deno.Command("mosquitto", {
    args: ["-c", conf],
    stdout: "null",
    stderr: "null",
  })
    .spawn();
  await listening(port);
  return {
    system: "mosquitto",
    port,
    pid: child.pid,
    says: () => mosquittoSays(port),
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // Gone already.
      }
      await child.status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** What Mosquitto says it dropped (its $SYS counters, retained: one subscribe reads them). */
async function mosquittoSays(port: number): Promise<string> {
  try {
    const c = await client(port, "sys");
    const got: string[] = [];
    c.on("message", (topic, payload) => got.push(`${topic.slice(12)}=${payload}`));
    await c.subscribeAsync([
      "$SYS/broker/publish/messages/dropped",
      "$SYS/broker/store/messages/count",
    ]);
    await new Promise((r) => setTimeout(r, 1500));
    await c.endAsync(true);
    return `mosquitto: ${got.join(" ")}`;
  } catch (err) {
    return String(err);
  }
}

function client(port: number, id: string): Promise<mqtt.MqttClient> {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId: `${id}-${crypto.randomUUID().slice(0, 8)}`,
    reconnectPeriod: 0,
    protocolVersion: 4,
  });
}

/**
 * What an MQTT.js client's socket holds, for a stalled run's message: bytes
 * it has not written (and whether it waits for `drain`, with how many
 * callbacks), bytes read and not parsed, and its publishes not acknowledged.
 */
function clientState(c: mqtt.MqttClient): string {
  const s = c.stream as unknown as {
    writableLength: number;
    writableNeedDrain: boolean;
    readableLength: number;
    destroyed: boolean;
    listenerCount(event: string): number;
  };
  const outgoing = Object.keys((c as unknown as { outgoing: object }).outgoing ?? {}).length;
  return `${c.options.clientId} connected=${c.connected} unwritten=${s.writableLength} ` +
    `needDrain=${s.writableNeedDrain} drainListeners=${s.listenerCount("drain")} ` +
    `unread=${s.readableLength} destroyed=${s.destroyed} unacked=${outgoing}`;
}

/**
 * MQTT.js, 1 publisher → `subs` subscribers: messages/s every subscriber
 * received, the publisher at most `ahead` messages ahead of the slowest.
 *
 * `ahead` stays well under what Mosquitto holds for a subscriber (20 in
 * flight + 1,000 queued; past that it drops, silently): MQTT.js counts a
 * message before it writes its PUBACK, so under load a subscriber owes more
 * acknowledgements than it is behind in messages, and at 1,000 ahead
 * Mosquitto dropped some in loaded rounds (a subscriber stalled short,
 * e.g. 9,947 of 10,000, its client idle); dist holds them (past its window
 * of 1,024 they queue under --max-pending).
 */
export async function mqttjsRun(
  port: number,
  subs: number,
  qos: 0 | 1,
  count: number,
  ahead = 500,
) {
  const topic = `bench/js-${crypto.randomUUID().slice(0, 8)}`;
  const got = new Array<number>(subs).fill(0);
  const clients: mqtt.MqttClient[] = [];
  let wake: (() => void) | undefined;
  try {
    for (let i = 0; i < subs; i++) {
      const c = await client(port, "js-sub");
      clients.push(c);
      c.on("message", () => {
        got[i]++;
        wake?.();
      });
      await c.subscribeAsync(topic, { qos });
    }
    const pub = await client(port, "js-pub");
    clients.push(pub);
    const payload = Buffer.alloc(128, 0x61);
    const t0 = performance.now();
    let sent = 0;
    let lastMove = t0;
    let last = -1;
    while (Math.min(...got) < count) {
      const slowest = Math.min(...got);
      if (slowest !== last) [last, lastMove] = [slowest, performance.now()];
      else if (performance.now() - lastMove > 10_000) {
        throw new Error(
          `MQTT.js run: no progress, received ${got.join(", ")} of ${count} (sent ${sent}); ` +
            `clients: ${clients.map(clientState).join("; ")}`,
        );
      }
      if (sent < count && sent - slowest < ahead) {
        const n = Math.min(count - sent, ahead - (sent - slowest));
        for (let i = 0; i < n; i++) pub.publish(topic, payload, { qos });
        sent += n;
      }
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 50);
      });
    }
    return count / ((performance.now() - t0) / 1000);
  } finally {
    for (const c of clients) await c.endAsync(true);
  }
}

/** MQTT.js 1 → 1 QoS 1 at a fixed rate: publish-to-receive delays in ms. */
export async function latencyRun(port: number, rate: number, seconds: number): Promise<number[]> {
  const topic = `bench/lat-${crypto.randomUUID().slice(0, 8)}`;
  const sub = await client(port, "lat-sub");
  const pub = await client(port, "lat-pub");
  const delays: number[] = [];
  try {
    sub.on("message", (_t, payload) => delays.push(performance.now() - payload.readDoubleLE(0)));
    await sub.subscribeAsync(topic, { qos: 1 });
    const total = Math.round(rate * seconds);
    const payload = Buffer.alloc(128, 0x61);
    const t0 = performance.now();
    for (let sent = 0; sent < total;) {
      // Publishes due by now (10 ms timer granularity: a few per tick).
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate) + 1);
      for (; sent < due; sent++) {
        payload.writeDoubleLE(performance.now(), 0);
        pub.publish(topic, Buffer.from(payload), { qos: 1 });
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    const end = performance.now() + 10_000;
    while (delays.length < total && performance.now() < end) {
      await new Promise((r) => setTimeout(r, 20));
    }
    if (delays.length < total) throw new Error(`latency run: ${delays.length} of ${total} arrived`);
    return delays;
  } finally {
    await sub.endAsync(true);
    await pub.endAsync(true);
  }
}

export function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
}

const LOADS = [
  { name: "1to1_qos0", subs: 1, qos: 0 as const, count: 200_000, js: 20_000 },
  { name: "1to1_qos1", subs: 1, qos: 1 as const, count: 100_000, js: 10_000 },
  { name: "1to4_qos0", subs: 4, qos: 0 as const, count: 60_000, js: 10_000 },
  { name: "1to4_qos1", subs: 4, qos: 1 as const, count: 30_000, js: 5_000 },
];

export async function measure(
  b: Broker,
  flags: BenchFlags,
  idle: number,
  rounds: Rounds,
): Promise<void> {
  const s = b.system;
  if (idle > 0) {
    rounds.add(
      `${s}_idle_bytes_per_conn`,
      (await perConnection(b.pid, b.port, "mqtt", idle)) * 1024,
    );
  }
  const scale = flags.quick ? 0.1 : 1;
  for (const l of LOADS) {
    const count = Math.round(l.count * scale);
    const cpu0 = cpuUs(b.pid);
    const r = await loadRun({
      port: b.port,
      subs: l.subs,
      qos: l.qos,
      count,
      payload: 128,
      ahead: 1000,
      stallMs: 10_000,
    });
    rounds.add(`${s}_${l.name}_msgs_s`, r.msgsPerS);
    rounds.add(`${s}_${l.name}_cpu_us_msg`, (cpuUs(b.pid) - cpu0) / count);
  }
  for (const l of LOADS) {
    const count = Math.round(l.js * scale);
    try {
      rounds.add(`${s}_mqttjs_${l.name}_msgs_s`, await mqttjsRun(b.port, l.subs, l.qos, count));
    } catch (err) {
      // Said, with what the broker counts, and the round goes on (the median skips it).
      console.log(`${s} MQTT.js ${l.name} failed: ${(err as Error).message}; ${await b.says()}`);
    }
  }
  try {
    const delays = await latencyRun(b.port, 2000, flags.quick ? 0.5 : 2);
    rounds.add(`${s}_lat_p50_ms`, quantile(delays, 0.5));
    rounds.add(`${s}_lat_p99_ms`, quantile(delays, 0.99));
  } catch (err) {
    // Said, with what the broker counts, and the round goes on (the median skips it).
    console.log(`${s} latency run failed: ${(err as Error).message}; broker: ${await b.says()}`);
  }
  // The same latency run while a flood of client ids asks for persistent sessions.
  const rss0 = rssOf(b.pid);
  const flood = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      here("./mqtt_flood.ts"),
      String(b.port),
      String(flags.quick ? 2000 : 20_000),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const delays = await latencyRun(b.port, 2000, flags.quick ? 0.5 : 2);
    rounds.add(`${s}_flood_lat_p50_ms`, quantile(delays, 0.5));
    rounds.add(`${s}_flood_lat_p99_ms`, quantile(delays, 0.99));
  } catch (err) {
    console.log(`${s} latency under flood failed: ${(err as Error).message}; ${await b.says()}`);
  }
  const out = new TextDecoder().decode((await flood.output()).stdout).trim();
  const m = out.match(/accepted (\d+) refused (\d+)/);
  if (m) {
    rounds.add(`${s}_flood_sessions_kept`, Number(m[1]));
    rounds.add(`${s}_flood_rss_growth_mib`, (rssOf(b.pid) - rss0) / 1048576);
  } else console.log(`${s} flood: ${out}`);
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  if (!await onPath("mosquitto")) {
    console.log("skipped: mosquitto not installed (apt-get install mosquitto)");
    return {};
  }
  let idle = flags.quick ? 1000 : 10_000;
  const limit = await fdLimit();
  if (limit < idle + 200) {
    console.log(`file descriptor limit ${limit}: ${limit - 200} idle connections, not ${idle}`);
    idle = limit - 200;
  }
  const load = () => Deno.readTextFileSync("/proc/loadavg").split(" ")[0];
  console.log(
    `${flags.runs} round(s); idle: ${idle} connections; load average ${load()} at the start`,
  );
  // MQTT.js's code is cold at first (a 20,000-message run goes 3–5× faster once warm): warm it
  // on a broker of neither side's round.
  const warm = await startMosquitto();
  try {
    await mqttjsRun(warm.port, 1, 0, flags.quick ? 5000 : 40_000);
    await mqttjsRun(warm.port, 1, 1, flags.quick ? 2000 : 10_000);
  } finally {
    await warm.stop();
  }
  const rounds = new Rounds();
  for (let round = 1; round <= flags.runs; round++) {
    const order: System[] = round % 2 === 1 ? ["dist", "mosquitto"] : ["mosquitto", "dist"];
    for (const system of order) {
      const b = system === "dist" ? await startDistMqtt(idle) : await startMosquitto();
      try {
        await measure(b, flags, idle, rounds);
        rounds.add(`${system}_rss_after_mib`, rssOf(b.pid) / 1048576);
      } finally {
        await b.stop();
      }
    }
    for (const k of Object.keys(rounds.rows)) {
      if (!k.startsWith("dist_") || k.endsWith("_rss_after_mib")) continue;
      const other = rounds.rows[k.replace(/^dist_/, "mosquitto_")];
      // Only figures both sides have this round (a failed run has none).
      if (other?.length === round && rounds.rows[k].length === round) {
        rounds.add(`ratio_${k.slice(5)}`, rounds.rows[k].at(-1)! / other.at(-1)!);
      }
    }
    rounds.add("load_average", Number(load()));
    rounds.printRound("mqtt", round);
  }
  const m = rounds.medians();
  const ratio = (k: string) => round3(median(rounds.rows[`ratio_${k}`] ?? []));
  console.log(`medians (dist / mosquitto, ratio = median of per-round ratios):`);
  for (const k of Object.keys(m)) {
    if (!k.startsWith("dist_") || k.endsWith("_rss_after_mib")) continue;
    const key = k.slice(5);
    console.log(
      `  ${key.padEnd(28)} ${round3(m[k])} / ${round3(m[`mosquitto_${key}`])}  ×${ratio(key)}`,
    );
  }
  return m;
}
