/**
 * End to end, from separate client processes (issue 17): a publisher and a
 * subscriber process, each with its system's own client library (dist's
 * `@dist/dist/client`, nats.js on nats-server), a small JSON object per
 * message. The subscriber takes them in each library's two ways: by
 * callback (nats.js's `callback` option, which its README calls the more
 * performant, with `m.json()`; dist's `onMessage`, which parses a read's
 * values together), the fastest each has, and by async
 * iterator, the ordinary way; the targets are judged on the fastest. Two
 * runs each: flat out (the publisher as fast as its library goes, a round
 * trip to the server every 1,000 messages), the delivered rate at the
 * subscriber; and a fixed 10,000 msgs/s, the delivered rate and the
 * latency from send to arrival (p50, p99). Each run's first messages only
 * warm its fresh client processes up (see broker_e2e_client.ts). dist and
 * NATS alternate which goes first; medians of the rounds. Each client
 * process reports its CPU time (user + system) per message, and the
 * server's is read from the scheduler (its threads' schedstat) around the
 * flat-out run. The flat-out run's median send-to-arrival latency says how
 * far behind the subscriber was: hundreds of milliseconds mean the
 * publisher and the server ran ahead of it (the server holding the
 * backlog), so the subscriber set the rate, not the round trips; a few
 * milliseconds mean it kept up, and the publisher and the server (their
 * round trip every 1,000) set it. Every round runs all of that for two
 * kinds of payload (see broker_e2e_client.ts): one reading, the same layout
 * every time (the figures' history), and `mixed`, four kinds of value in
 * turn so that no layout repeats from one message to the next (the values
 * people publish; its keys start `mixed_`); `E2E_SHAPES=reading` or
 * `E2E_SHAPES=mixed` runs one of them only. With E2E_FLOOR=1 each round
 * also runs dist's publisher to a hand-written raw-socket subscriber: the
 * floor under the library's callback. `E2E_WINDOW=2` lets both publishers
 * keep two round trips in flight flat out (make the next 1,000 while the
 * server routes the last); the default, 1, is the figures' history.
 */
import { startDist } from "../tests/helpers/dist.ts";
import { type BenchFlags, cpuUs, Rounds } from "./_common.ts";
import { startNats } from "./broker.ts";

const CLIENT = new URL("./broker_e2e_client.ts", import.meta.url).pathname;
type Shapes = "reading" | "mixed";
/** The payloads each round runs (E2E_SHAPES picks one): one reading, and four kinds in turn. */
const SHAPES: Shapes[] = Deno.env.get("E2E_SHAPES") === "mixed"
  ? ["mixed"]
  : Deno.env.get("E2E_SHAPES") === "reading"
  ? ["reading"]
  : ["reading", "mixed"];
/** What a payload's keys start with: nothing for the reading (the figures' history). */
const PREFIX: Record<Shapes, string> = { reading: "", mixed: "mixed_" };
const decoder = new TextDecoder();

interface Spawned {
  /** Resolves with the first line that says `ready` (subscribers). */
  ready: Promise<void>;
  /** Resolves with the JSON line it ends with. */
  result: Promise<Record<string, number>>;
  kill(): void;
}

function spawnClient(task: Record<string, unknown>, client: string): Spawned {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", client, JSON.stringify(task)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let text = "";
  let ready!: () => void;
  const readyP = new Promise<void>((r) => ready = r);
  const result = (async () => {
    for await (const chunk of child.stdout) {
      text += decoder.decode(chunk, { stream: true });
      if (text.includes("ready\n")) ready();
    }
    const status = await child.status;
    const lines = text.trim().split("\n");
    if (!status.success) throw new Error(`client ${JSON.stringify(task)} exited ${status.code}`);
    return JSON.parse(lines[lines.length - 1]);
  })();
  return {
    ready: readyP,
    result,
    kill: () => {
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited.
      }
    },
  };
}

/**
 * One run: a subscriber, then a publisher; the subscriber's figures (bounded
 * in time), its first `skip` messages not measured.
 */
export async function e2e(
  system: "dist" | "nats",
  address: string,
  count: number,
  rate: number,
  style: "iterator" | "callback" | "floor" = "iterator",
  skip = 0,
  client = CLIENT,
  shapes: Shapes = "reading",
): Promise<Record<string, number>> {
  const base = { system, address, count, rate, style, skip, shapes };
  const sub = spawnClient({ ...base, role: "sub" }, client);
  let pub: Spawned | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await sub.ready;
    pub = spawnClient({ ...base, role: "pub" }, client);
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${system}: not every message in 60 s`)), 60_000);
    });
    const [got, sent] = await Promise.race([Promise.all([sub.result, pub.result]), limit]);
    return {
      ...got,
      sub_cpu_us: got.cpu_us_per_msg,
      pub_cpu_us: sent.cpu_us_per_msg,
      sub_sys_us: got.sys_us_per_msg,
      pub_sys_us: sent.sys_us_per_msg,
      pub_msgs_per_s: sent.sent / sent.seconds,
    };
  } finally {
    clearTimeout(timer);
    sub.kill();
    pub?.kill();
  }
}

type System = "dist" | "nats";
type Style = "iterator" | "callback";
const STYLES: Style[] = ["callback", "iterator"];
/** Short names of the styles in the figures' keys. */
const SHORT: Record<Style, string> = { callback: "cb", iterator: "it" };

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  // Each run's first messages warm its fresh processes up and are not measured.
  const flat = flags.quick ? 20_000 : 250_000;
  const flatSkip = flags.quick ? 5_000 : 50_000;
  const paced = flags.quick ? 20_000 : 50_000; // 2 s or 5 s at 10,000 msgs/s
  const pacedSkip = flags.quick ? 2_000 : 10_000; // a second
  const nats = await startNats();
  // As much room for a subscriber behind as nats-server gives (its max_pending, 64 MiB).
  const dist = await startDist([
    "broker",
    "--port",
    "0",
    "--max-pending",
    String(64 * 1024 * 1024),
  ]);
  const rounds = new Rounds();
  // E2E_FLOOR=1: each round also runs dist's publisher to a hand-written raw-socket subscriber.
  const floor = Deno.env.get("E2E_FLOOR") === "1";
  const kinds = SHAPES.map((k) =>
    k === "mixed" ? "four kinds in turn (keys mixed_…)" : "a reading"
  );
  console.log(
    `1→1 from separate processes, a small JSON object per message (${kinds.join("; then ")}), ` +
      `the subscriber taking them by ` +
      `callback (each library's fastest) and by async iterator: flat out ${flat - flatSkip} msgs ` +
      `measured after ${flatSkip}, then ${paced} at 10,000 msgs/s after ${pacedSkip}; dist and NATS ` +
      `alternate; medians`,
  );
  try {
    // One unmeasured run each: a fresh dist broker's first round otherwise pays for its
    // compiler warming up (130,533 msgs/s in a first round, then 265,164 and 270,910).
    await e2e("dist", dist.address, flat / 4, 0);
    if (nats !== undefined) await e2e("nats", `127.0.0.1:${nats.port}`, flat / 4, 0);
    for (let r = 1; r <= flags.runs; r++) {
      for (const shapes of SHAPES) {
        for (const style of STYLES) {
          const order: System[] = nats === undefined ? ["dist"] : r % 2 ? ["dist", "nats"] : [
            "nats",
            "dist",
          ];
          for (const system of order) {
            const key = `${PREFIX[shapes]}${system}_${SHORT[style]}`;
            const address = system === "dist" ? dist.address : `127.0.0.1:${nats!.port}`;
            const server = system === "dist" ? dist.child.pid : nats!.pid;
            const cpu0 = cpuUs(server);
            const a = await e2e(system, address, flat, 0, style, flatSkip, CLIENT, shapes);
            rounds.add(`${key}_flat_server_cpu_us`, (cpuUs(server) - cpu0) / flat);
            rounds.add(`${key}_flat_msgs_per_s`, a.msgs_per_s);
            // How far behind the subscriber is flat out: the backlog held for it in the server.
            rounds.add(`${key}_flat_p50_ms`, a.p50_ms);
            rounds.add(`${key}_flat_sub_cpu_us`, a.sub_cpu_us);
            rounds.add(`${key}_flat_pub_cpu_us`, a.pub_cpu_us);
            const b = await e2e(
              system,
              address,
              paced + pacedSkip,
              10_000,
              style,
              pacedSkip,
              CLIENT,
              shapes,
            );
            rounds.add(`${key}_10k_msgs_per_s`, b.msgs_per_s);
            rounds.add(`${key}_10k_p50_ms`, b.p50_ms);
            rounds.add(`${key}_10k_p99_ms`, b.p99_ms);
            rounds.add(`${key}_10k_stall_ms`, b.stall_ms);
          }
          if (style === "callback" && floor && shapes === "reading") {
            // The floor under the library (broker_e2e_client.ts, floorSubscriber), same publisher.
            const a = await e2e("dist", dist.address, flat, 0, "floor", flatSkip);
            rounds.add("dist_floor_flat_msgs_per_s", a.msgs_per_s);
            rounds.add("dist_floor_flat_sub_cpu_us", a.sub_cpu_us);
          }
          if (nats !== undefined) {
            const p = PREFIX[shapes];
            const last = (k: string) => rounds.rows[`${p}${k}`].at(-1)!;
            const s = SHORT[style];
            rounds.add(
              `${p}ratio_${s}_flat`,
              last(`dist_${s}_flat_msgs_per_s`) / last(`nats_${s}_flat_msgs_per_s`),
            );
            rounds.add(
              `${p}ratio_${s}_10k_p99`,
              last(`dist_${s}_10k_p99_ms`) / last(`nats_${s}_10k_p99_ms`),
            );
          }
        }
      }
      rounds.printRound("broker-e2e", r);
    }
  } finally {
    await dist.stop();
    await nats?.stop();
  }
  const m = rounds.medians();
  if (floor) {
    console.log(
      `broker-e2e medians, floor (a raw-socket subscriber, no library): flat out ${
        f(m.dist_floor_flat_msgs_per_s)
      } msgs/s, subscriber CPU per message ${us(m.dist_floor_flat_sub_cpu_us)}`,
    );
  }
  for (const shapes of SHAPES) {
    for (const style of STYLES) console.log(summary(m, shapes, style));
  }
  return m;
}

const f = (x: number | undefined) => x === undefined ? "n/a" : x.toFixed(0);
const us = (x: number | undefined) => x === undefined ? "n/a" : x.toFixed(2) + " µs";
const ms = (x: number | undefined) => x === undefined ? "n/a" : x.toFixed(2) + " ms";

/** One payload's and style's medians, as a line. */
function summary(m: Record<string, number>, shapes: Shapes, style: Style): string {
  const s = SHORT[style];
  const p = PREFIX[shapes];
  const d = (k: string) => m[`${p}dist_${s}_${k}`];
  const n = (k: string) => m[`${p}nats_${s}_${k}`];
  return `broker-e2e medians, ${shapes === "mixed" ? "mixed values" : "a reading"}, ${style}: ` +
    `flat out dist ${f(d("flat_msgs_per_s"))} msgs/s, nats ${f(n("flat_msgs_per_s"))} (ratio ${
      m[`${p}ratio_${s}_flat`]?.toFixed(2) ?? "n/a"
    }; flat-out latency p50 dist ${ms(d("flat_p50_ms"))}, nats ${
      ms(n("flat_p50_ms"))
    }); at 10,000 msgs/s dist ${f(d("10k_msgs_per_s"))} delivered, p50 ${ms(d("10k_p50_ms"))} p99 ${
      ms(d("10k_p99_ms"))
    }, longest silence ${ms(d("10k_stall_ms"))}; nats ${f(n("10k_msgs_per_s"))}, p50 ${
      ms(n("10k_p50_ms"))
    } p99 ${ms(n("10k_p99_ms"))}, longest silence ${ms(n("10k_stall_ms"))} (p99 ratio ${
      m[`${p}ratio_${s}_10k_p99`]?.toFixed(2) ?? "n/a"
    }); CPU per message flat out (subscriber / publisher / server process): dist ${
      us(d("flat_sub_cpu_us"))
    } / ${us(d("flat_pub_cpu_us"))} / ${us(d("flat_server_cpu_us"))}, nats ${
      us(n("flat_sub_cpu_us"))
    } / ${us(n("flat_pub_cpu_us"))} / ${us(n("flat_server_cpu_us"))}`;
}
