import { toKebab, UsageError } from "../../config/mod.ts";
import { countCalls } from "../../obs/mod.ts";
import { DistError } from "../../wire/mod.ts";
import { parseOperation } from "../ops.ts";
import { defineRole, FORCED_EXIT_CODE, type RunContext, writeStdout } from "../_role.ts";
import {
  type Caller,
  connect,
  connectOptions,
  dialAddress,
  formatResult,
  inFlight,
  Link,
  type ModeOptions,
  outcomeJson,
  perform,
} from "./_common.ts";
import { runRandom } from "./random.ts";
import { runInteractive } from "./interactive.ts";
import { formatSummary, progressLine, runBench } from "./bench.ts";
import { OPERATION_HELP } from "../ops.ts";
import { serviceConnector } from "../_flags.ts";
import { printableJson } from "../_printable.ts";
import { checkConnections, openPeers } from "./peers.ts";
import { BENCH_DEFAULTS, CLIENT_OPTIONS, type ClientOptions } from "./options.ts";

/** The client: one shot, interactive shell, random batch or benchmark. */
export const client = defineRole({
  summary: "Send requests: one shot, interactive, --random N, or --bench",
  positionals: true,
  flagHints: {
    "--port": "the client dials, it does not listen: give --connect HOST:PORT",
    "-p": "the client dials, it does not listen: give --connect HOST:PORT (or -c HOST:PORT)",
    "--host": "the client dials, it does not listen: give --connect HOST:PORT",
  },
  // A client in a topology sends its batch and ends: dist up does not rerun it.
  restart: "no",
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
  options: CLIENT_OPTIONS,
  run: runClient,
});

async function runClient(options: ClientOptions, ctx: RunContext): Promise<number> {
  const out = ctx.stdout ?? writeStdout;
  // On SIGINT/SIGTERM every mode stops starting requests, lets those in flight
  // finish (each bounded by --timeout), reports, and exits.
  const o = { ...options, out, signal: ctx.signal };
  checkModes(options, ctx.positionals);
  // Check the operation before connecting: a typo should not wait on the network.
  const op = ctx.positionals.length > 0
    ? asUsage(() => parseOperation(ctx.positionals))
    : undefined;
  const bench = options.bench ? benchPlan(options) : undefined;
  const connections = bench ? bench.connections : 1;
  // --service: each connection resolves an instance through binders (see clients/discovery);
  // --random asks them before each request, so its answers show the binders' turn.
  // --metrics: every request of every mode, counted on the connections they ask through.
  const open: () => Promise<Caller> = countCalls<Caller>(
    ctx.metrics?.registry,
    serviceConnector(
      options,
      connectOptions(options),
      (address) => dialAddress(address, options),
      { signal: ctx.signal, rotate: options.random !== undefined },
    ) ?? (() => connect(options)),
  );
  const peers = await openPeers(connections, open, ctx.signal);
  if (peers === undefined) {
    console.error(`dist: Interrupted while opening ${connections} connections`);
    return FORCED_EXIT_CODE;
  }
  const link = new Link(peers[0], open);
  ctx.onForcedExit?.(() => inFlight(bench ? peers : [link.caller]));
  try {
    if (bench) return await runBenchMode(peers, bench, o, ctx);
    const peer = peers[0];
    if (options.random !== undefined) {
      return (await runRandom(peer, options.random, o)) === 0 ? 0 : 1;
    }
    if (op !== undefined) {
      // An interrupt gives up on the answer: nobody is waiting for it any more.
      const outcome = await perform(peer, op, options.timeout, ctx.signal);
      if (ctx.signal.aborted) {
        console.error(`dist: Interrupted: no answer to ${ctx.positionals.join(" ")}`);
        return FORCED_EXIT_CODE;
      }
      if (options.json) out(outcomeJson(outcome));
      else if (outcome.ok) out(formatResult(outcome.result));
      else throw new DistError(outcome.error!.code as "INTERNAL", outcome.error!.message);
      return outcome.ok ? 0 : 1;
    }
    return (await runInteractive(link, o)) === 0 ? 0 : 1;
  } finally {
    for (const p of peers) p.close();
    link.close();
  }
}

/** Flags that only --bench reads. */
const BENCH_FLAGS: readonly (keyof ClientOptions)[] = [
  "requests",
  "duration",
  "concurrency",
  "connections",
  "op",
  "payload",
  "rate",
];

/**
 * Refuses input that one mode would silently ignore: two modes at once, an
 * operation beside --random or --bench, a benchmark flag without --bench.
 *
 * @throws {UsageError}
 */
function checkModes(options: ClientOptions, words: string[]): void {
  const op = words.join(" ");
  if (options.service !== undefined && options.connect !== undefined) {
    throw new UsageError(
      "--connect and --service both say where requests go: give one " +
        "(--service finds an instance through --binders)",
    );
  }
  if (options.bench && options.random !== undefined) {
    throw new UsageError("--bench and --random are two modes: give one");
  }
  if (options.bench && words.length > 0) {
    throw new UsageError(`--bench sends its --op, not "${op}": write --op "${op}"`);
  }
  if (options.random !== undefined && words.length > 0) {
    throw new UsageError(`--random sends random operations, not "${op}": give one or the other`);
  }
  const benchOnly = BENCH_FLAGS.filter((key) => options[key] !== undefined).map(
    (key) => `--${toKebab(key)}`,
  );
  if (!options.bench && benchOnly.length > 0) {
    const what = benchOnly.length === 1 ? "is a --bench flag" : "are --bench flags";
    throw new UsageError(`${benchOnly.join(", ")} ${what}: add --bench`);
  }
  const benchOp = options.op ?? BENCH_DEFAULTS.op;
  if (options.payload !== undefined && benchOp !== "echo") {
    throw new UsageError(`--payload sizes an echo: it does not apply to --op "${benchOp}"`);
  }
}

/** The benchmark's flags with their defaults filled in. */
function benchPlan(options: ClientOptions) {
  const words = (options.op ?? BENCH_DEFAULTS.op).trim().split(/\s+/);
  const payload = options.payload ?? BENCH_DEFAULTS.payload;
  const op = words[0] === "echo" && words.length === 1
    ? { method: "echo", params: { text: "x".repeat(payload) } }
    : asUsage(() => parseOperation(words));
  const requests = options.requests ??
    (options.duration === undefined ? BENCH_DEFAULTS.requests : undefined);
  // No more loops than requests to send (h48 P10: ten million loops for ten requests).
  const concurrency = Math.min(
    options.concurrency ?? BENCH_DEFAULTS.concurrency,
    requests ?? Infinity,
  );
  const connections = options.connections ?? BENCH_DEFAULTS.connections;
  checkConnections(connections, concurrency);
  return {
    op,
    requests,
    durationMs: options.duration,
    concurrency,
    connections,
    rate: options.rate,
    timeout: options.timeout,
  };
}

async function runBenchMode(
  peers: Caller[],
  plan: ReturnType<typeof benchPlan>,
  o: ModeOptions,
  ctx: RunContext,
): Promise<number> {
  const tty = Deno.stderr.isTerminal();
  const encoder = new TextEncoder();
  const summary = await runBench(peers, {
    ...plan,
    signal: ctx.signal,
    onProgress: tty
      ? (done, ms) =>
        Deno.stderr.writeSync(
          encoder.encode(progressLine(done, ms, plan.requests, plan.durationMs)),
        )
      : undefined,
  });
  if (tty) Deno.stderr.writeSync(encoder.encode("\n"));
  if (o.json) o.out(printableJson(summary));
  else formatSummary(summary).forEach((l) => o.out(l));
  const lost = summary.stopped !== undefined && summary.stopped !== "interrupted";
  return summary.ok === summary.requests && !lost ? 0 : 1;
}

/** A malformed operation on the command line is the user's mistake (exit 2). */
function asUsage<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
