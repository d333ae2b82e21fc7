/**
 * `deno task bench`: the wire protocol's figures.
 *
 * 1. raw TCP echo of a frame the size of an RPC echo request (the floor this
 *    runtime allows): round trip p50 at concurrency 1, messages/s with 64 in
 *    flight;
 * 2. `dist client --bench` against `dist server`, concurrency 1: p50, and its
 *    ratio to the raw round trip (target ≤ 2×);
 * 3. the same with 64 in flight and a 64-byte payload: requests/s (target
 *    ≥ 200,000) and the server's RSS under that load.
 *
 * These machines are shared and noisy, so each round measures everything
 * back to back (a ratio compares figures taken moments apart) and each
 * figure printed is the median over the rounds. Flags: `--runs N` (rounds,
 * default 5), `--duration 5s` (each throughput run), `--connections N`
 * (default 1), `--quick` (one short round).
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { runDist, startDist } from "../tests/helpers/dist.ts";

const RAW_ECHO = fileURLToPath(new URL("./raw_echo.ts", import.meta.url));
// `{"id":123,"method":"echo","params":{"text":"<64 bytes>"}}` plus the length prefix.
const FRAME_BYTES = 4 +
  JSON.stringify({ id: 123, method: "echo", params: { text: "x".repeat(64) } }).length;
const CODECS = ["json", "msgpack"];

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    runs: { type: "string", default: "5" },
    duration: { type: "string", default: "5s" },
    connections: { type: "string", default: "1" },
    quick: { type: "boolean", default: false },
  },
});
const RUNS = flags.quick ? 1 : Number(flags.runs);
const DURATION = flags.quick ? "1s" : flags.duration!;
const LATENCY_REQUESTS = flags.quick ? 2000 : 20_000;
const RAW_MESSAGES = flags.quick ? 64_000 : 640_000;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

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

function rssOf(pid: number): number {
  try {
    const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/VmRSS:\s+(\d+) kB/);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function clientBench(address: string, args: string[]) {
  const res = await runDist(
    ["client", "--connect", address, "--bench", "--json", "--log-level", "warning", ...args],
    { timeoutMs: 120_000 },
  );
  if (res.code !== 0) {
    throw new Error(`client bench failed (${res.code}): ${res.stderr}${res.stdout}`);
  }
  return JSON.parse(res.stdout.trim().split("\n").at(-1)!);
}

const mib = (b: number) => (b / 1024 / 1024).toFixed(1) + " MiB";
const us = (ms: number) => (ms * 1000).toFixed(0) + " µs";
const round3 = (x: number) => Math.round(x * 1000) / 1000;

console.log(
  `dist bench: ${RUNS} round(s), raw and RPC back to back in each; medians; frame ` +
    `${FRAME_BYTES} B; throughput runs ${DURATION}, 64 in flight over ${flags.connections} connection(s)`,
);
const raw = await startRawEcho();
const server = await startDist(["server", "--port", "0"]);
const rows: Record<string, number[]> = {};
const add = (key: string, value: number) => (rows[key] ??= []).push(value);
try {
  for (let round = 1; round <= RUNS; round++) {
    const rawRtt = (await raw.run(LATENCY_REQUESTS, 1)).rtt_p50_ms;
    add("raw_c1_rtt_ms", rawRtt);
    add("raw_c64_msgs_per_s", (await raw.run(RAW_MESSAGES, 64)).msgs_per_s);
    for (const codec of CODECS) {
      const lat = await clientBench(server.address, [
        "--codec",
        codec,
        "--concurrency",
        "1",
        "--requests",
        String(LATENCY_REQUESTS),
      ]);
      add(`${codec}_c1_p50_ms`, lat.latency_ms.p50);
      add(`${codec}_c1_ratio`, lat.latency_ms.p50 / rawRtt);
      let peak = 0;
      const sampler = setInterval(() => peak = Math.max(peak, rssOf(server.child.pid)), 100);
      try {
        const load = await clientBench(server.address, [
          "--codec",
          codec,
          "--concurrency",
          "64",
          "--connections",
          flags.connections!,
          "--payload",
          "64",
          "--duration",
          DURATION,
        ]);
        if (load.ok !== load.requests) {
          throw new Error(`Errors under load: ${JSON.stringify(load.errors)}`);
        }
        add(`${codec}_c64_rps`, load.rps);
      } finally {
        clearInterval(sampler);
      }
      add(`${codec}_c64_server_rss_bytes`, peak);
    }
    console.log(
      `round ${round}: ` +
        Object.entries(rows).map(([k, v]) => `${k}=${round3(v.at(-1)!)}`).join(" "),
    );
  }
} finally {
  await server.stop();
  await raw.stop();
}
const m = Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, median(v)]));
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
console.log(JSON.stringify({ medians: m, rounds: rows }));
