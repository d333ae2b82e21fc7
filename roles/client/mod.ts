import { type Options, UsageError } from "../../config/mod.ts";
import { DistError } from "../../wire/mod.ts";
import { parseOperation } from "../ops.ts";
import { type Role, type RunContext, writeStdout } from "../_role.ts";
import { connect, DEFAULT_CONNECT, formatResult, outcomeJson, perform } from "./_common.ts";
import { runRandom } from "./random.ts";
import { runInteractive } from "./interactive.ts";
import { formatSummary, progressLine, runBench } from "./bench.ts";
import { OPERATION_HELP } from "../ops.ts";

/** The client: one shot, interactive shell, random batch or benchmark. */
export const client: Role = {
  summary: "Send requests: one shot, interactive, --random N, or --bench",
  positionals: true,
  flagHints: {
    "--port": "the client dials, it does not listen: give --connect HOST:PORT",
    "-p": "the client dials, it does not listen: give --connect HOST:PORT (or -c HOST:PORT)",
    "--host": "the client dials, it does not listen: give --connect HOST:PORT",
  },
  usage: [
    "dist client [--connect HOST:PORT] OPERATION...     one request, prints the result",
    "dist client [--connect HOST:PORT]                  interactive shell (or one op per line from a pipe)",
    "dist client --random N                             N random arithmetic requests and a summary",
    "dist client --bench [--requests N | --duration 10s] [--concurrency C] [--rate R]",
    "",
    "Operations:",
    ...OPERATION_HELP.map((l) => "  " + l),
    "  METHOD {JSON}    any method with JSON parameters (e.g. sys.stats)",
  ],
  options: {
    connect: {
      type: "address",
      description: "Where to send requests (a server, or a balancer)",
      default: DEFAULT_CONNECT,
      short: "c",
      ref: true,
      metavar: "HOST:PORT",
    },
    timeout: { type: "duration", description: "Timeout of each request", default: 5000 },
    random: {
      type: "integer",
      description: "Send N random arithmetic requests, then a summary",
      min: 1,
      metavar: "N",
    },
    bench: { type: "boolean", description: "Run a benchmark and report throughput and latency" },
    requests: {
      type: "integer",
      description: "Benchmark: number of requests (default 10000 unless --duration)",
      min: 1,
      metavar: "N",
    },
    duration: { type: "duration", description: "Benchmark: run for this long" },
    concurrency: {
      type: "integer",
      description: "Benchmark: requests in flight at once",
      default: 16,
      min: 1,
      metavar: "C",
    },
    connections: {
      type: "integer",
      description: "Benchmark: connections the requests are spread over",
      default: 1,
      min: 1,
      metavar: "N",
    },
    op: {
      type: "string",
      description: "Benchmark: operation to send",
      default: "echo",
      metavar: "OP",
    },
    payload: {
      type: "integer",
      description: "Benchmark: bytes of text in an echo request",
      default: 64,
      min: 0,
      metavar: "BYTES",
    },
    rate: {
      type: "number",
      description: "Benchmark: fixed arrival rate in req/s (latency without coordinated omission)",
      min: 0.001,
      metavar: "R",
    },
  },
  run: runClient,
};

async function runClient(options: Options, ctx: RunContext): Promise<number> {
  const out = ctx.stdout ?? writeStdout;
  // On SIGINT/SIGTERM every mode stops starting requests, lets those in flight
  // finish (each bounded by --timeout), reports, and exits.
  const o = { ...options, out, signal: ctx.signal };
  // Check the operation before connecting: a typo should not wait on the network.
  const op = ctx.positionals.length > 0
    ? asUsage(() => parseOperation(ctx.positionals))
    : undefined;
  const connections = options.bench ? options.connections as number : 1;
  const peers = await Promise.all(Array.from({ length: connections }, () => connect(options)));
  try {
    if (options.bench) {
      const words = (options.op as string).split(/\s+/);
      const benchOp = words[0] === "echo" && words.length === 1
        ? { method: "echo", params: { text: "x".repeat(options.payload as number) } }
        : asUsage(() => parseOperation(words));
      const tty = Deno.stderr.isTerminal();
      const encoder = new TextEncoder();
      const requests = options.requests as number | undefined ??
        (options.duration === undefined ? 10_000 : undefined);
      const summary = await runBench(peers, {
        op: benchOp,
        requests,
        durationMs: options.duration as number | undefined,
        concurrency: options.concurrency as number,
        rate: options.rate as number | undefined,
        timeout: options.timeout as number,
        signal: ctx.signal,
        onProgress: tty
          ? (done, ms) =>
            Deno.stderr.writeSync(
              encoder.encode(progressLine(done, ms, requests, options.duration as number)),
            )
          : undefined,
      });
      if (tty) Deno.stderr.writeSync(encoder.encode("\n"));
      if (options.json) out(JSON.stringify(summary));
      else formatSummary(summary).forEach((l) => out(l));
      return summary.ok === summary.requests ? 0 : 1;
    }
    const peer = peers[0];
    if (options.random !== undefined) {
      return (await runRandom(peer, options.random as number, o)) === 0 ? 0 : 1;
    }
    if (op !== undefined) {
      const outcome = await perform(peer, op, options.timeout as number);
      if (options.json) out(outcomeJson(outcome));
      else if (outcome.ok) out(formatResult(outcome.result));
      else throw new DistError(outcome.error!.code as "INTERNAL", outcome.error!.message);
      return outcome.ok ? 0 : 1;
    }
    return (await runInteractive(peer, o)) === 0 ? 0 : 1;
  } finally {
    for (const p of peers) p.close();
  }
}

/** A malformed operation on the command line is the user's mistake (exit 2). */
function asUsage<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
