/**
 * The wire forms of the registry, and the checks on everything that comes in:
 * a client's parameters (`binder.register {service, host, port, ttl_ms?,
 * meta?}`) and a peer's records. Bad input is a BAD_REQUEST with a clear
 * message, never a crash and never a half-applied change.
 */
import { describe, DistError } from "../../wire/mod.ts";
import {
  binder,
  type Instance,
  MAX_TTL_MS,
  metaSize,
  MIN_TTL_MS,
  type Registration as Params,
} from "../../clients/contracts/mod.ts";
import { isStamp, type Stamp } from "./clock.ts";
import {
  type Entry,
  type Incoming,
  instanceId,
  type Registration,
  REMOVAL_REASONS,
  type RemovalReason,
} from "./registry.ts";

/** An entry as binders send it to each other. */
export interface WireRecord {
  id: string;
  service: string;
  host: string;
  port: number;
  ttl_ms: number;
  /** What is left of the lease at the sender (0 for tombstones). */
  left_ms: number;
  meta?: Record<string, unknown>;
  v: Stamp;
  removed?: RemovalReason;
}

/** An instance as clients get it; `registrant` as quota.ts registrantOf tells, when known. */
export function toInstance(entry: Entry, registrant?: string): Instance {
  const info: Instance = {
    id: entry.id,
    service: entry.service,
    host: entry.host,
    port: entry.port,
  };
  if (entry.meta !== undefined) info.meta = entry.meta;
  if (registrant !== undefined) info.registrant = registrant;
  return info;
}

export function toRecord(entry: Entry, leftMs: number): WireRecord {
  const record: WireRecord = {
    id: entry.id,
    service: entry.service,
    host: entry.host,
    port: entry.port,
    ttl_ms: entry.ttlMs,
    left_ms: leftMs,
    v: entry.stamp,
  };
  if (entry.meta !== undefined) record.meta = entry.meta;
  if (entry.removed !== undefined) record.removed = entry.removed;
  return record;
}

/** The params object of a request, or BAD_REQUEST. */
export function paramsObject(params: unknown, method: string): Record<string, unknown> {
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    throw new DistError("BAD_REQUEST", `${method} takes an object of parameters`);
  }
  return params as Record<string, unknown>;
}

/**
 * A registration (checked by the binder contract) as the registry keeps it.
 * @param defaultTtlMs the lease when `ttl_ms` is not given
 * @throws {DistError} BAD_REQUEST when the default is no lease either
 */
export function registrationOf(p: Params, defaultTtlMs: number): Registration {
  const ttl = p.ttl_ms ?? defaultTtlMs;
  if (!Number.isInteger(ttl) || ttl < MIN_TTL_MS || ttl > MAX_TTL_MS) {
    throw new DistError(
      "BAD_REQUEST",
      `"ttl_ms" must be an integer ${MIN_TTL_MS}-${MAX_TTL_MS}, got ${describe(ttl)}`,
    );
  }
  const { service, host, port, meta } = p;
  return meta === undefined
    ? { service, host, port, ttlMs: ttl }
    : { service, host, port, ttlMs: ttl, meta, metaSize: metaSize(meta) };
}

/**
 * Checks `binder.register` parameters.
 * @param defaultTtlMs the lease when `ttl_ms` is not given
 * @throws {DistError} BAD_REQUEST naming the bad field
 */
export function parseRegistration(params: unknown, defaultTtlMs: number): Registration {
  const p = binder.methods.register.params(paramsObject(params, "binder.register"));
  return registrationOf(p, defaultTtlMs);
}

/**
 * Checks one record sent by a peer binder.
 * @returns the entry to merge, or the problem as text
 */
export function parseRecord(value: unknown): Incoming | string {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return "a record must be an object";
  }
  const r = value as Record<string, unknown>;
  let reg: Registration;
  try {
    reg = parseRegistration(
      { service: r.service, host: r.host, port: r.port, ttl_ms: r.ttl_ms, meta: r.meta },
      0,
    );
  } catch (err) {
    return (err as Error).message;
  }
  if (r.id !== instanceId(reg.service, reg.host, reg.port)) {
    return `id ${describe(r.id)} does not match service@host:port`;
  }
  if (!isStamp(r.v)) return `bad version ${describe(r.v)}`;
  if (r.removed !== undefined && !REMOVAL_REASONS.includes(r.removed as RemovalReason)) {
    return `bad removal reason ${describe(r.removed)}`;
  }
  const left = r.left_ms;
  if (typeof left !== "number" || !Number.isFinite(left) || left < 0) {
    return `bad left_ms ${describe(left)}`;
  }
  return {
    ...reg,
    id: r.id as string,
    stamp: r.v as Stamp,
    ...(r.removed !== undefined ? { removed: r.removed as RemovalReason } : {}),
    leftMs: Math.min(left, reg.ttlMs),
  };
}
