import { defineOptions, type RoleOptions } from "../../config/mod.ts";
import { RESOLVE_OPTIONS } from "../_flags.ts";
import { DEFAULT_CONNECT } from "./_common.ts";

/** What the benchmark's flags are when not given. */
export const BENCH_DEFAULTS = {
  requests: 10_000,
  concurrency: 16,
  connections: 1,
  op: "echo",
  payload: 64,
} as const;

/** The client's options. */
export const CLIENT_OPTIONS = defineOptions({
  // No spec default, so that --connect given beside --service is seen (and refused).
  connect: {
    type: "address",
    description: `Where to send requests: a server, or a balancer (default ${DEFAULT_CONNECT})`,
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
    description:
      `Benchmark: number of requests (default ${BENCH_DEFAULTS.requests} unless --duration)`,
    min: 1,
    metavar: "N",
  },
  duration: { type: "duration", description: "Benchmark: run for this long" },
  // The benchmark's flags have no spec default, so that one given without
  // --bench is seen (and refused); BENCH_DEFAULTS fills them in.
  concurrency: {
    type: "integer",
    description:
      `Benchmark: requests in flight at once, at most --requests (default ${BENCH_DEFAULTS.concurrency})`,
    min: 1,
    max: 100_000,
    metavar: "C",
  },
  connections: {
    type: "integer",
    description:
      `Benchmark: connections the requests are spread over, at most --concurrency (default ${BENCH_DEFAULTS.connections})`,
    min: 1,
    max: 10_000,
    metavar: "N",
  },
  op: {
    type: "string",
    description: `Benchmark: operation to send (default ${BENCH_DEFAULTS.op})`,
    metavar: "OP",
  },
  payload: {
    type: "integer",
    description: `Benchmark: bytes of text in an echo request (default ${BENCH_DEFAULTS.payload})`,
    min: 0,
    metavar: "BYTES",
  },
  rate: {
    type: "number",
    description: "Benchmark: start R requests a second on a fixed schedule; latency counts from it",
    min: 0.001,
    metavar: "R",
  },
  ...RESOLVE_OPTIONS,
});
/** The client's options, typed. */
export type ClientOptions = RoleOptions<typeof CLIENT_OPTIONS>;
