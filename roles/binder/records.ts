/**
 * The wire forms of the registry, and the checks on everything that comes in:
 * a client's parameters (`binder.register {service, host, port, ttl_ms?,
 * meta?}`) and a peer's records. Bad input is a BAD_REQUEST with a clear
 * message, never a crash and never a half-applied change.
 */
import { describe, DistError } from "../../wire/mod.ts";
import { type Instance, SERVICE_NAME } from "../../clients/contracts/mod.ts";
import { isStamp, type Stamp } from "./clock.ts";
import {
  type Entry,
  type Incoming,
  instanceId,
  type Registration,
  REMOVAL_REASONS,
  type RemovalReason,
} from "./registry.ts";

/** Shortest and longest lease a registration may ask for (ms). */
export const MIN_TTL_MS = 100;
export const MAX_TTL_MS = 3_600_000;
/** Largest `meta`, as JSON. */
export const MAX_META_BYTES = 4096;

const HOST = /^(?:[\w.-]{1,253}|[0-9A-Fa-f:.]{2,45})$/;

/** An instance as clients see it (`binder.lookup`, `binder.list`, `binder.changed`). */
export type InstanceInfo = Instance;

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

export function toInstance(entry: Entry): InstanceInfo {
  const info: InstanceInfo = {
    id: entry.id,
    service: entry.service,
    host: entry.host,
    port: entry.port,
  };
  if (entry.meta !== undefined) info.meta = entry.meta;
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

function bad(message: string): DistError {
  return new DistError("BAD_REQUEST", message);
}

/** The params object of a request, or BAD_REQUEST. */
export function paramsObject(params: unknown, method: string): Record<string, unknown> {
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    throw bad(`${method} takes an object of parameters`);
  }
  return params as Record<string, unknown>;
}

/** A service name: letters, digits, ".", "_", "-", up to 128 characters. */
export function checkService(value: unknown): string {
  if (typeof value !== "string" || !SERVICE_NAME.test(value)) {
    throw bad(
      `"service" must be a name of letters, digits, ".", "_", "-" (up to 128), got ${
        describe(value)
      }`,
    );
  }
  return value;
}

/** An instance id given by a client (in `field`): a non-empty string of sane length. */
export function checkId(value: unknown, field = "id"): string {
  if (typeof value !== "string" || value.length === 0 || value.length > 512) {
    throw bad(
      `"${field}" must be an instance id as returned by binder.register, got ${describe(value)}`,
    );
  }
  return value;
}

/** A `meta` object and its length as JSON text, or undefined for none. */
function checkMeta(value: unknown): { meta: Record<string, unknown>; size: number } | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "object" || Array.isArray(value)) {
    throw bad(`"meta" must be an object, got ${describe(value)}`);
  }
  let size: number;
  try {
    size = JSON.stringify(value).length;
  } catch {
    throw bad(`"meta" must be plain JSON`);
  }
  if (size > MAX_META_BYTES) {
    throw bad(`"meta" is ${size} bytes of JSON, more than ${MAX_META_BYTES}`);
  }
  return { meta: value as Record<string, unknown>, size };
}

/**
 * Checks `binder.register` parameters.
 * @param defaultTtlMs the lease when `ttl_ms` is not given
 * @throws {DistError} BAD_REQUEST naming the bad field
 */
export function parseRegistration(params: unknown, defaultTtlMs: number): Registration {
  const p = paramsObject(params, "binder.register");
  const service = checkService(p.service);
  if (typeof p.host !== "string" || !HOST.test(p.host)) {
    throw bad(`"host" must be a host name or IP address, got ${describe(p.host)}`);
  }
  if (!Number.isInteger(p.port) || (p.port as number) < 1 || (p.port as number) > 65535) {
    throw bad(`"port" must be an integer 1-65535, got ${describe(p.port)}`);
  }
  const ttl = p.ttl_ms ?? defaultTtlMs;
  if (!Number.isInteger(ttl) || (ttl as number) < MIN_TTL_MS || (ttl as number) > MAX_TTL_MS) {
    throw bad(`"ttl_ms" must be an integer ${MIN_TTL_MS}-${MAX_TTL_MS}, got ${describe(ttl)}`);
  }
  const meta = checkMeta(p.meta);
  return {
    service,
    host: p.host,
    port: p.port as number,
    ttlMs: ttl as number,
    ...(meta !== undefined ? { meta: meta.meta, metaSize: meta.size } : {}),
  };
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
