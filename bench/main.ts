/**
 * `deno task bench`: the wire protocol's figures, all from one run so the
 * ratios compare like with like on a noisy machine.
 *
 * 1. raw TCP echo of a frame the size of an RPC echo request (the floor):
 *    round trip p50 at concurrency 1, and messages/s with 64 in flight;
 * 2. `dist client --bench` against `dist server`, concurrency 1: p50, and its
 *    ratio to the raw round trip (target ≤ 2×);
 * 3. the same with 64 in flight and a 64-byte payload: requests/s (target
 *    ≥ 200,000) and the server's RSS under that load.
 *
 * Each figure is the median of `--runs` runs (default 3). Flags:
 * `--runs N`, `--duration 5s` (length of each throughput run), `--quick`.
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { runDist, startDist } from "../tests/helpers/dist.ts";

const RAW_ECHO = fileURLToPath(new URL("./raw_echo.ts", import.meta.url));
// `{"id":123,"method":"echo","params":{"text":"<64 bytes>"}}` plus the length prefix.
const FRAME_BYTES = 4 +
  JSON.stringify({ id: 123, method: "echo", params: { text: "x".repeat(64) } }).length;

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    runs: { type: "string", default: "3" },
    duration: { type: "string", default: "5s" },
    connections: { type: "string", default: "4" },
    quick: { type: "boolean", default: false },
  },
});
const RUNS = flags.quick ? 1 : Number(flags.runs);
const DURATION = flags.quick ? "1s" : flags.duration!;
const LATENCY_REQUESTS = flags.quick ? 2000 : 20_000;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function rawEcho(): Promise<{ rttMs: number; msgsPerS: number }> {
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", RAW_ECHO, "server"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const { value } = await reader.read();
    const port = Number(value!.trim());
    const run = async (count: number, concurrency: number) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          RAW_ECHO,
          "client",
          String(port),
          String(FRAME_BYTES),
          String(count),
          String(concurrency),
        ],
      }).output();
      if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
      return JSON.parse(new TextDecoder().decode(out.stdout));
    };
    const rtts: number[] = [];
    const rates: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      rtts.push((await run(LATENCY_REQUESTS, 1)).rtt_p50_ms);
      rates.push((await run(flags.quick ? 64_000 : 640_000, 64)).msgs_per_s);
    }
    reader.releaseLock();
    return { rttMs: median(rtts), msgsPerS: median(rates) };
  } finally {
    server.kill("SIGKILL");
    await server.status;
    await server.stdout.cancel().catch(() => {});
  }
}

function rssOf(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = status.match(/VmRSS:\s+(\d+) kB/);
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

async function rpc(codec: string) {
  const server = await startDist(["server", "--port", "0"]);
  try {
    const p50s: number[] = [];
    const rates: number[] = [];
    const rss: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const lat = await clientBench(server.address, [
        "--codec",
        codec,
        "--concurrency",
        "1",
        "--requests",
        String(LATENCY_REQUESTS),
      ]);
      p50s.push(lat.latency_ms.p50);
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
          throw new Error(`errors under load: ${JSON.stringify(load.errors)}`);
        }
        rates.push(load.rps);
      } finally {
        clearInterval(sampler);
      }
      rss.push(peak);
    }
    return {
      p50Ms: median(p50s),
      rps: median(rates),
      rssBytes: median(rss),
      idleRss: rssOf(server.child.pid),
    };
  } finally {
    await server.stop();
  }
}

const mib = (b: number) => (b / 1024 / 1024).toFixed(1) + " MiB";
const us = (ms: number) => (ms * 1000).toFixed(0) + " µs";

console.log(
  `dist bench: ${RUNS} run(s) each, medians; frame ${FRAME_BYTES} B; ` +
    `throughput runs ${DURATION} with 64 in flight over ${flags.connections} connection(s)`,
);
const raw = await rawEcho();
console.log(`raw TCP echo        c=1 round trip p50 ${us(raw.rttMs)}   c=64 ${raw.msgsPerS} msg/s`);
const results: Record<string, unknown> = { raw };
for (const codec of ["json", "msgpack"]) {
  const r = await rpc(codec);
  results[codec] = r;
  const ratio = r.p50Ms / raw.rttMs;
  console.log(
    `rpc echo (${codec.padEnd(7)}) c=1 p50 ${us(r.p50Ms)} = ${
      ratio.toFixed(2)
    }× raw (target ≤ 2×)   ` +
      `c=64 ${r.rps} req/s (target ≥ 200000)   server RSS under load ${mib(r.rssBytes)}`,
  );
}
console.log(JSON.stringify(results));
