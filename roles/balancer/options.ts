/**
 * The balancer's flags (RPC mode, and --mode tcp's from tcp/): one table for
 * argv, the topology file and `dist balancer --help`.
 */
import { defineOptions, LISTENER_OPTIONS, type RoleOptions } from "../../config/mod.ts";
import { POLICY_NAMES } from "./policies.ts";
import { TCP_MODE_OPTIONS } from "./tcp/mod.ts";
import { DEFAULT_BINDERS } from "../_flags.ts";

export const BALANCER_OPTIONS = defineOptions({
  ...LISTENER_OPTIONS,
  port: {
    type: "port",
    description: "Port clients connect to (0 picks a free one)",
    default: 5556,
    short: "p",
  },
  backends: {
    type: "addresses",
    description: "Servers to dial and spread requests over",
    default: [],
    ref: true,
    metavar: "HOST:PORT,...",
  },
  service: {
    type: "string",
    description: "Also spread over every live instance of this service, found through binders",
    metavar: "NAME",
  },
  binders: {
    type: "addresses",
    description: `With --service: binders to watch it on (default ${DEFAULT_BINDERS})`,
    ref: true,
    metavar: "HOST:PORT,...",
  },
  workerPort: {
    type: "port",
    description: "Port workers dial in on (0 picks a free one)",
    default: 8889,
  },
  policy: {
    type: "choice",
    description: "Which backend takes the next request",
    choices: POLICY_NAMES,
    default: "round-robin",
  },
  checkInterval: {
    type: "duration",
    description: "Time between health checks (sys.ping) of each backend",
    default: 1000,
    // 0 checked back to back: ~250 connects a second a backend, and RPC pings timed out at
    // once took healthy servers out (hostile44c H-C7; HAProxy refuses `inter 0`).
    min: 100,
  },
  rise: {
    type: "integer",
    description: "Successful checks that bring a backend back",
    default: 2,
    min: 1,
  },
  fall: {
    type: "integer",
    description: "Missed checks that take a backend out",
    default: 3,
    min: 1,
  },
  retries: {
    type: "integer",
    description: "Most extra sends of a request whose backend died with it",
    default: 2,
    min: 0,
  },
  retryBudget: {
    type: "number",
    description: "Retries allowed as a share of requests (plus 10 a second)",
    default: 0.2,
    min: 0,
    max: 1,
    metavar: "RATIO",
  },
  maxInflight: {
    type: "integer",
    description: "Most requests in flight on one server (a worker declares its own)",
    default: 128,
    min: 1,
    metavar: "N",
  },
  maxWorkers: {
    type: "integer",
    description: "Most workers registered at once; more are refused OVERLOADED",
    default: 1000,
    min: 0,
    metavar: "N",
  },
  maxBackends: {
    type: "integer",
    description: "With --service: most of its instances dialed at once; those dialed keep " +
      "their places, one that never answers gives its place to another after 5 s",
    default: 256,
    min: 1,
    metavar: "N",
  },
  queue: {
    type: "integer",
    description: "Most requests waiting for a backend; beyond it OVERLOADED",
    default: 10_000,
    min: 0,
    metavar: "N",
  },
  queueBytes: {
    type: "integer",
    description: "Most bytes of requests waiting for a backend; beyond it OVERLOADED",
    default: 64 * 1024 * 1024,
    min: 0,
    metavar: "BYTES",
  },
  clientShare: {
    type: "integer",
    description:
      "Most requests of one client connection on the backends while others are active and " +
      "requests wait (4× while none waits; 2× for one source's connections while another " +
      "source is busy); past 4× (5× a source) it yields",
    default: 16,
    min: 1,
    metavar: "N",
  },
  queueTimeout: {
    type: "duration",
    description: "How long a request waits for a backend before it fails",
    default: 3000,
  },
  timeout: {
    type: "duration",
    description: "Longest wait for a backend's answer",
    default: 30_000,
    // 0 was a 0 ms wait: calls to idle, healthy servers failed TIMEOUT (hostile46a G3).
    min: 1,
  },
  passthrough: {
    type: "boolean",
    description: "Forward requests and JSON answers as bytes, without decoding them",
    default: true,
  },
  threads: {
    type: "integer",
    description: "Event loops accepting on the port, each with its own backend connections",
    default: 1,
    min: 1,
    max: 256,
    metavar: "N",
  },
  ...TCP_MODE_OPTIONS,
});
export type BalancerOptions = RoleOptions<typeof BALANCER_OPTIONS>;
