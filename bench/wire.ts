/**
 * The wire suite: the wire protocol's figures.
 *
 * 1. raw TCP echo of a frame the size of an RPC echo request (the floor this
 *    runtime allows): round trip p50 at concurrency 1, messages/s with 64 in
 *    flight;
 * 2. `dist client --bench` against `dist server`, concurrency 1: p50, and its
 *    ratio to the raw round trip (target ≤ 2×);
 * 3. the same with 64 in flight and a 64-byte payload: requests/s (target
 *    ≥ 200,000) and the server's RSS under that load.
 *
 * Each round measures everything back to back (a ratio compares figures
 * taken moments apart) and each figure printed is the median over the rounds.
 */
import { fileURLToPath } from "node:url";
import { startDist } from "../tests/helpers/dist.ts";
import { type BenchFlags, clientBench, mib, Rounds, rssOf, us } from "./_common.ts";

const RAW_ECHO = fileURLToPath(new URL("./raw_echo.ts", import.meta.url));
// `{"id":123,"method":"echo","params":{"text":"<64 bytes>"}}` plus the length prefix.
const FRAME_BYTES = 4 +
  JSON.stringify({ id: 123, method: "echo", params: { text: "x".repeat(64) } }).length;
const CODECS = ["json", "msgpack"];

/** The raw echo server, and a way to run one raw client against it. */
async function startRawEcho() {
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", RAW_ECHO, "server"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  const port = String(Number(value!.trim()));
  return {
    async run(count: number, concurrency: number) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          RAW_ECHO,
          "client",
          port,
          String(FRAME_BYTES),
          String(count),
          String(concurrency),
        ],
      }).output();
      if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
      return JSON.parse(new TextDecoder().decode(out.stdout)) as {
        msgs_per_s: number;
        rtt_p50_ms: number;
      };
    },
    async stop() {
      server.kill("SIGKILL");
      await server.status;
      await server.stdout.cancel().catch(() => {});
    },
  };
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const latencyRequests = flags.quick ? 2000 : 20_000;
  const rawMessages = flags.quick ? 64_000 : 640_000;
  console.log(
    `${flags.runs} round(s), raw and RPC back to back in each; medians; frame ` +
      `${FRAME_BYTES} B; throughput runs ${flags.duration}, 64 in flight over ` +
      `${flags.connections} connection(s)`,
  );
  const raw = await startRawEcho();
  const server = await startDist(["server", "--port", "0"]);
  const rounds = new Rounds();
  try {
    for (let round = 1; round <= flags.runs; round++) {
      const rawRtt = (await raw.run(latencyRequests, 1)).rtt_p50_ms;
      rounds.add("raw_c1_rtt_ms", rawRtt);
      rounds.add("raw_c64_msgs_per_s", (await raw.run(rawMessages, 64)).msgs_per_s);
      for (const codec of CODECS) {
        const lat = await clientBench(server.address, [
          "--codec",
          codec,
          "--concurrency",
          "1",
          "--requests",
          String(latencyRequests),
        ]);
        rounds.add(`${codec}_c1_p50_ms`, lat.latency_ms.p50);
        rounds.add(`${codec}_c1_ratio`, lat.latency_ms.p50 / rawRtt);
        let peak = 0;
        const sampler = setInterval(() => peak = Math.max(peak, rssOf(server.child.pid)), 100);
        try {
          const load = await clientBench(server.address, [
            "--codec",
            codec,
            "--concurrency",
            "64",
            "--connections",
            String(flags.connections),
            "--payload",
            "64",
            "--duration",
            flags.duration,
          ]);
          if (load.ok !== load.requests) {
            throw new Error(`Errors under load: ${JSON.stringify(load.errors)}`);
          }
          rounds.add(`${codec}_c64_rps`, load.rps);
        } finally {
          clearInterval(sampler);
        }
        rounds.add(`${codec}_c64_server_rss_bytes`, peak);
      }
      rounds.printRound("wire", round);
    }
  } finally {
    await server.stop();
    await raw.stop();
  }
  const m = rounds.medians();
  console.log(
    `raw TCP echo      c=1 round trip p50 ${us(m.raw_c1_rtt_ms)}   ` +
      `c=64 ${Math.round(m.raw_c64_msgs_per_s)} msg/s`,
  );
  for (const codec of CODECS) {
    console.log(
      `rpc echo ${codec.padEnd(7)}  c=1 p50 ${us(m[`${codec}_c1_p50_ms`])}, ` +
        `${m[`${codec}_c1_ratio`].toFixed(2)}× raw (target ≤ 2×)   ` +
        `c=64 ${Math.round(m[`${codec}_c64_rps`])} req/s (target ≥ 200000)   ` +
        `server RSS under load ${mib(m[`${codec}_c64_server_rss_bytes`])}`,
    );
  }
  return m;
}
