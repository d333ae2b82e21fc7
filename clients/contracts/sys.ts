/**
 * `sys.*`: what every role answers, the same way (the listening shell
 * serves them; a worker serves them on its balancer connection).
 */
import { any, count, literal, obj, type Parse, str } from "../../wire/check.ts";
import { type Contract, type Method, method } from "../../wire/contract.ts";

/** What `sys.ping` answers: alive, and who. */
export interface Pong {
  /** Always true. */
  pong: true;
  /** The role (`server`, `broker` …). */
  role: string;
  /** The instance's name (`server-5557`). */
  name: string;
}

/** What `sys.stats` answers: these members in every role, and the role's own counters. */
export interface Stats {
  /** The role (`server`, `broker` …). */
  role: string;
  /** The instance's name. */
  name: string;
  /** Milliseconds since the process started serving. */
  uptime_ms: number;
  /** Resident memory of the process, in bytes. */
  rss_bytes: number;
  /** The role's own counters and gauges. */
  [counter: string]: unknown;
}

/** The methods of the `sys` service. */
export interface SysContract extends Contract {
  /** The service's name. */
  readonly service: "sys";
  /** Its methods, by short name. */
  readonly methods: {
    /** Alive? Any params are ignored. */
    readonly ping: Method<"sys.ping", unknown, Pong>;
    /** Counters and gauges of the role. */
    readonly stats: Method<"sys.stats", unknown, Stats>;
  };
  /** It sends no events. */
  readonly events: Record<never, never>;
}

const pong: Parse<Pong> = obj({ pong: literal(true), role: str, name: str });
const stats: Parse<Stats> = obj({ role: str, name: str, uptime_ms: count, rss_bytes: count });

/** `sys.ping` and `sys.stats`. */
export const sys: SysContract = {
  service: "sys",
  prefix: "sys.",
  methods: {
    ping: method("sys.ping", { params: any, result: pong }),
    stats: method("sys.stats", { params: any, result: stats }),
  },
  events: {},
};
