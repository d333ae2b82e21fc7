/**
 * End to end, from separate client processes (issue 17): a publisher and a
 * subscriber process, each with its system's own client library (dist's
 * `@dist/dist/client`, nats.js on nats-server), a small JSON object per
 * message. Two runs each: flat out (the publisher as fast as its library
 * goes, a round trip to the server every 1,000 messages), the delivered
 * rate at the subscriber; and a fixed 10,000 msgs/s, the delivered rate
 * and the latency from send to arrival (p50, p99). dist and NATS alternate
 * which goes first; medians of the rounds. Each client process reports its
 * CPU time (user + system) per message, and the server's is read from the
 * scheduler (its threads' schedstat) around the flat-out run.
 */
import { startDist } from "../tests/helpers/dist.ts";
import { type BenchFlags, cpuUs, Rounds } from "./_common.ts";
import { startNats } from "./broker.ts";

const CLIENT = new URL("./broker_e2e_client.ts", import.meta.url).pathname;
const decoder = new TextDecoder();

interface Spawned {
  /** Resolves with the first line that says `ready` (subscribers). */
  ready: Promise<void>;
  /** Resolves with the JSON line it ends with. */
  result: Promise<Record<string, number>>;
  kill(): void;
}

function spawnClient(task: Record<string, unknown>): Spawned {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLIENT, JSON.stringify(task)],
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

/** One run: a subscriber, then a publisher; the subscriber's figures (bounded in time). */
async function e2e(
  system: "dist" | "nats",
  address: string,
  count: number,
  rate: number,
): Promise<Record<string, number>> {
  const base = { system, address, count, rate };
  const sub = spawnClient({ ...base, role: "sub" });
  let pub: Spawned | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await sub.ready;
    pub = spawnClient({ ...base, role: "pub" });
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${system}: not every message in 60 s`)), 60_000);
    });
    const [got, sent] = await Promise.race([Promise.all([sub.result, pub.result]), limit]);
    return { ...got, sub_cpu_us: got.cpu_us_per_msg, pub_cpu_us: sent.cpu_us_per_msg };
  } finally {
    clearTimeout(timer);
    sub.kill();
    pub?.kill();
  }
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const flat = flags.quick ? 20_000 : 200_000;
  const paced = flags.quick ? 20_000 : 50_000; // 2 s or 5 s at 10,000 msgs/s
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
  console.log(
    `1→1 from separate processes, a small JSON object per message: flat out ${flat} msgs, then ` +
      `${paced} at 10,000 msgs/s; dist and NATS alternate; medians`,
  );
  try {
    // One unmeasured run each: a fresh dist broker's first round otherwise pays for its
    // compiler warming up (130,533 msgs/s in a first round, then 265,164 and 270,910).
    await e2e("dist", dist.address, flat / 4, 0);
    if (nats !== undefined) await e2e("nats", `127.0.0.1:${nats.port}`, flat / 4, 0);
    for (let r = 1; r <= flags.runs; r++) {
      const order = nats === undefined ? ["dist"] : r % 2 ? ["dist", "nats"] : ["nats", "dist"];
      for (const system of order as ("dist" | "nats")[]) {
        const address = system === "dist" ? dist.address : `127.0.0.1:${nats!.port}`;
        const server = system === "dist" ? dist.child.pid : nats!.pid;
        const cpu0 = cpuUs(server);
        const a = await e2e(system, address, flat, 0);
        rounds.add(`${system}_flat_server_cpu_us`, (cpuUs(server) - cpu0) / flat);
        rounds.add(`${system}_flat_msgs_per_s`, a.msgs_per_s);
        rounds.add(`${system}_flat_sub_cpu_us`, a.sub_cpu_us);
        rounds.add(`${system}_flat_pub_cpu_us`, a.pub_cpu_us);
        const b = await e2e(system, address, paced, 10_000);
        rounds.add(`${system}_10k_msgs_per_s`, b.msgs_per_s);
        rounds.add(`${system}_10k_p50_ms`, b.p50_ms);
        rounds.add(`${system}_10k_p99_ms`, b.p99_ms);
      }
      if (nats !== undefined) {
        const last = (k: string) => rounds.rows[k].at(-1)!;
        rounds.add("ratio_flat", last("dist_flat_msgs_per_s") / last("nats_flat_msgs_per_s"));
        rounds.add("ratio_10k_p99", last("dist_10k_p99_ms") / last("nats_10k_p99_ms"));
      }
      rounds.printRound("broker-e2e", r);
    }
  } finally {
    await dist.stop();
    await nats?.stop();
  }
  const m = rounds.medians();
  const f = (x: number | undefined) => x === undefined ? "n/a" : x.toFixed(0);
  const us = (x: number | undefined) => x === undefined ? "n/a" : x.toFixed(2) + " µs";
  const ms = (x: number | undefined) => x === undefined ? "n/a" : x.toFixed(2) + " ms";
  console.log(
    `broker-e2e medians: flat out dist ${f(m.dist_flat_msgs_per_s)} msgs/s, nats ${
      f(m.nats_flat_msgs_per_s)
    } (ratio ${m.ratio_flat?.toFixed(2) ?? "n/a"}); at 10,000 msgs/s dist ${
      f(m.dist_10k_msgs_per_s)
    } delivered, p50 ${ms(m.dist_10k_p50_ms)} p99 ${ms(m.dist_10k_p99_ms)}; nats ${
      f(m.nats_10k_msgs_per_s)
    }, p50 ${ms(m.nats_10k_p50_ms)} p99 ${ms(m.nats_10k_p99_ms)}; CPU per message flat out ` +
      `(subscriber / publisher / server process): dist ${us(m.dist_flat_sub_cpu_us)} / ${
        us(m.dist_flat_pub_cpu_us)
      } / ${us(m.dist_flat_server_cpu_us)}, nats ${us(m.nats_flat_sub_cpu_us)} / ${
        us(m.nats_flat_pub_cpu_us)
      } / ${us(m.nats_flat_server_cpu_us)}`,
  );
  return m;
}
