/**
 * Checking and converting option values: durations, addresses, and one raw
 * value (a CLI string or a TOML value) per {@link OptionType}; defaults and
 * the merging of option layers.
 */
import { didYouMean } from "./_suggest.ts";
import { UsageError } from "./errors.ts";
import { parseIPv6 } from "./hosts.ts";
import {
  COMMON_OPTIONS,
  type OptionDef,
  type Options,
  type OptionSpec,
  type RoleInfo,
} from "./spec.ts";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_HINT = "e.g. 500ms, 2s, 1.5s, 1m, 1h, or a number of milliseconds";

/** Milliseconds from "500ms", "2s", "1m30s" or a bare number; undefined if invalid. */
function tryDuration(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? value : undefined;
  if (typeof value !== "string") return undefined;
  const text = value.trim();
  if (/^(\d+(\.\d+)?|\.\d+)$/.test(text)) return Number(text);
  const part = /(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)/y;
  let total = 0;
  let index = 0;
  while (index < text.length) {
    part.lastIndex = index;
    const match = part.exec(text);
    if (!match) return undefined;
    total += Number(match[1]) * UNIT_MS[match[2]];
    index = part.lastIndex;
  }
  // Rounded to the microsecond so that "1.1s" is 1100, not 1100.0000000000002.
  return text.length > 0 ? Math.round(total * 1000) / 1000 : undefined;
}

/**
 * The shortest call timeout taken (ms): `--timeout 1ms` made every call to a server fail
 * `TIMEOUT`, as asked (r46 R5); a loopback round trip on a loaded machine takes a few.
 */
export const CALL_TIMEOUT_FLOOR_MS = 10;

/**
 * Whether the option named `key` (`--timeout`, `client.timeout`, `binder.verify_timeout`) is the
 * timeout of a call: every role's `--timeout` (client, producer, consumer, balancer, `dist
 * status`) and the binder's `--verify-timeout`.
 */
function isCallTimeout(key: string): boolean {
  const name = key.replace(/^--/, "").split(".").pop()!.replace(/[-_]/g, "").toLowerCase();
  return name === "timeout" || name === "verifytimeout";
}

/** The longest duration a timer can wait (2^31 - 1 ms, about 24.8 days). */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/**
 * Parses a duration: "500ms", "2s", "1.5s", "1m", "1h" (or a sum such as
 * "1m30s"); a bare number, or a numeric string, is milliseconds.
 *
 * @returns the duration in milliseconds
 * @throws {UsageError} for a negative, non-finite or unreadable value
 */
export function parseDuration(text: string | number): number {
  const ms = tryDuration(text);
  if (ms === undefined) {
    throw new UsageError(`Invalid duration ${showValue(text)}: ${DURATION_HINT}`);
  }
  if (ms > MAX_DURATION_MS) {
    // Timers cannot wait longer; a longer one would fire at once.
    throw new UsageError(`Duration ${showValue(text)} is too long: at most 24 days (2^31-1 ms)`);
  }
  return ms;
}

/** Writes milliseconds the way a user would: 1000 -> "1s", 1500 -> "1.5s", 250 -> "250ms". */
export function formatDuration(ms: number): string {
  if (ms > 0 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms > 0 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1000 && ms % 100 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** A network address. */
export interface Address {
  /** A host name or IP address. */
  host: string;
  /** A TCP port. */
  port: number;
}

/** The address, or the reason it is not one. */
export function tryAddress(text: string, defaultHost: string): Address | string {
  const value = text.trim();
  if (value === "") return "empty";
  let host: string;
  let port: string;
  if (/^\d+$/.test(value)) {
    [host, port] = [defaultHost, value];
  } else if (value.startsWith("[")) {
    const match = /^\[([0-9A-Fa-f:.%\w]+)\]:(.*)$/.exec(value);
    if (!match) return "expected [IPv6]:port";
    [host, port] = [match[1], match[2]];
  } else {
    const colon = value.lastIndexOf(":");
    if (colon < 0) return "missing port";
    host = value.slice(0, colon) || defaultHost;
    port = value.slice(colon + 1);
    if (host.includes(":")) return "an IPv6 host needs brackets, as in [::1]:80";
    if (!/^[\w.-]+$/.test(host)) return `bad host ${JSON.stringify(host)}`;
  }
  if (!/^\d+$/.test(port) || Number(port) > 65535) return "port must be 0-65535";
  return { host, port: Number(port) };
}

/**
 * Parses "host:port", "[::1]:80", ":5557" (on `defaultHost`) or a bare port.
 *
 * @throws {UsageError} when the text is not an address or the port is not 0-65535
 */
export function parseAddress(text: string, defaultHost = "127.0.0.1"): Address {
  const result = tryAddress(text, defaultHost);
  if (typeof result === "string") {
    throw new UsageError(`Invalid address ${JSON.stringify(text)}: ${result}`);
  }
  return result;
}

/** "host:port", with brackets around an IPv6 host. */
export function formatAddress(address: Address): string {
  const host = address.host.includes(":") ? `[${address.host}]` : address.host;
  return `${host}:${address.port}`;
}

/** "workerPort" -> "worker-port" (the CLI flag). */
export function toKebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** "workerPort" -> "worker_port" (the topology key). */
export function toSnake(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** "worker_port" or "worker-port" -> "workerPort". */
export function toCamel(key: string): string {
  return key.replace(/[-_]([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Every option a role takes: {@link COMMON_OPTIONS} plus its own (its own win). */
export function roleSpec(info: RoleInfo): OptionSpec {
  return { ...COMMON_OPTIONS, ...info.options };
}

/** The port options an instance of `info` with `options` listens on (see RoleInfo.unusedPorts). */
export function portKeysOf(info: RoleInfo, options: Options): string[] {
  const unused = info.unusedPorts?.(options) ?? [];
  return Object.entries(roleSpec(info))
    .filter(([key, def]) => def.type === "port" && !unused.includes(key))
    .map(([key]) => key);
}

/** Whether an instance of `info` with `options` speaks dist on its port (see RoleInfo.speaksDist). */
export function speaksDist(info: RoleInfo, options: Options): boolean {
  return info.speaksDist?.(options) ?? true;
}

/** A value as it appears in a message: strings quoted, the rest as JSON. */
export function showValue(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return String(value);
  // TOML's inf and nan (JSON.stringify wrote null, which the user never wrote: hostile47 Q11).
  if (typeof value === "number" && !Number.isFinite(value)) {
    return Number.isNaN(value) ? "nan" : value > 0 ? "inf" : "-inf";
  }
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Whether `text` can be a host: a name or IPv4 address, or an IPv6 one (bracketed or not). */
function isHostText(text: string): boolean {
  if (/^[\w.-]+$/.test(text)) return true;
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  return parseIPv6(bare.split("%")[0]) !== undefined;
}

/** A topology instance name, as kept by an address option with `ref`. */
const NAME = /^[A-Za-z0-9_][\w.-]*$/;

/** Whether a converted `ref` value is a name to resolve rather than "host:port". */
export function isReferenceName(value: string): boolean {
  return NAME.test(value) && !/^\d+$/.test(value);
}

/** How {@link convertValue} treats its input. */
export interface ConvertOptions {
  /**
   * Keep names in `ref` address options for later resolution (in a topology
   * file). Without it a name is an error.
   */
  names?: boolean;
}

/** What a number out of `min`..`max` must be: "at least 1", "between 64 and 1024". */
function rangeText(min?: number, max?: number): string {
  if (min !== undefined && max !== undefined) return `between ${min} and ${max}`;
  return min !== undefined ? `at least ${min}` : `at most ${max}`;
}

function toNumber(raw: unknown, integer: boolean): number | undefined {
  if (typeof raw === "number") return raw;
  if (typeof raw === "bigint") return Number(raw);
  if (typeof raw !== "string") return undefined;
  const text = raw.trim();
  const pattern = integer ? /^[-+]?\d+$/ : /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;
  return pattern.test(text) ? Number(text) : undefined;
}

/** Splits a comma string or takes an array; undefined for anything else. */
function toItems(raw: unknown): string[] | undefined {
  if (typeof raw === "string") {
    return raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  }
  if (!Array.isArray(raw)) return undefined;
  const items: string[] = [];
  for (const item of raw) {
    if (typeof item === "string") items.push(item.trim());
    else if (typeof item === "number" || typeof item === "boolean") items.push(String(item));
    else return undefined;
  }
  return items;
}

/**
 * Checks and converts one raw value (a CLI string or a TOML value) as `def`
 * says. Durations become milliseconds, addresses "host:port", lists arrays.
 *
 * @param key how the option is named in messages: `--port` or `server.port`
 * @throws {UsageError} naming `key` and the bad value,
 *   e.g. `--port: "abc" is not a port (0-65535)`
 */
export function convertValue(
  key: string,
  def: OptionDef,
  raw: unknown,
  options: ConvertOptions = {},
): unknown {
  const fail = (problem: string): never => {
    throw new UsageError(`${key}: ${showValue(raw)} ${problem}`);
  };
  const address = (text: string): string => {
    const result = tryAddress(text, "127.0.0.1");
    if (typeof result !== "string") return formatAddress(result);
    if (def.ref && isReferenceName(text.trim())) {
      if (options.names) return text.trim();
      return fail(`is not host:port (instance names work only in a topology file)`);
    }
    const what = def.ref ? "an address or instance name" : "a host:port address";
    return fail(`is not ${what} (${result})`);
  };
  switch (def.type) {
    case "string":
      if (typeof raw !== "string") return fail("is not a string");
      // hostile47 Q11: `host = "127.0.0.1:80"` was taken, and failed only at start.
      if (def.host && raw !== "" && !isHostText(raw)) {
        return fail(`is not a host (an IP address or a name, without a port)`);
      }
      return raw;
    case "integer":
    case "number": {
      const integer = def.type === "integer";
      const n = toNumber(raw, integer);
      if (n === undefined || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
        return fail(`is not ${integer ? "an integer" : "a number"}`);
      }
      if ((def.min !== undefined && n < def.min) || (def.max !== undefined && n > def.max)) {
        throw new UsageError(`${key}: must be ${rangeText(def.min, def.max)}, got ${showValue(n)}`);
      }
      return n;
    }
    case "port": {
      const n = toNumber(raw, true);
      const ok = n !== undefined && Number.isInteger(n) && n >= 0 && n <= 65535;
      return ok ? n : fail("is not a port (0-65535)");
    }
    case "boolean": {
      if (typeof raw === "boolean") return raw;
      const text = String(raw).trim().toLowerCase();
      if (typeof raw === "string" || typeof raw === "number") {
        if (["true", "yes", "1", "on"].includes(text)) return true;
        if (["false", "no", "0", "off"].includes(text)) return false;
      }
      return fail("is not a boolean (true/false, yes/no, 1/0)");
    }
    case "duration": {
      const ms = tryDuration(raw);
      if (ms === undefined) return fail(`is not a duration (${DURATION_HINT})`);
      if (isCallTimeout(key) && ms < CALL_TIMEOUT_FLOOR_MS) {
        throw new UsageError(
          `${key}: must be at least ${CALL_TIMEOUT_FLOOR_MS}ms, got ${showValue(raw)}: ` +
            "a call timeout under it fails every call TIMEOUT",
        );
      }
      if (def.min !== undefined && ms < def.min) {
        // A bare number is milliseconds: one meant as seconds is said so (h48 P15).
        const bare = (typeof raw === "number" || /^\s*\d+(\.\d+)?\s*$/.test(String(raw))) &&
          Number(raw) * 1000 >= def.min;
        const unit = bare
          ? ` (a bare number is milliseconds: write ${String(raw).trim()}s for seconds)`
          : "";
        throw new UsageError(
          `${key}: must be at least ${formatDuration(def.min)}, got ${showValue(raw)}${unit}`,
        );
      }
      return ms <= MAX_DURATION_MS ? ms : fail("is too long: at most 24 days (2^31-1 ms)");
    }
    case "choice": {
      const choices = def.choices ?? [];
      if (typeof raw === "string" && choices.includes(raw)) return raw;
      const hint = typeof raw === "string" ? didYouMean(raw, choices) : "";
      return fail(`is not one of ${choices.join(", ")}${hint}`);
    }
    case "address":
      return typeof raw === "string" ? address(raw) : fail("is not a host:port address");
    case "list":
    case "addresses": {
      const items = toItems(raw);
      if (items === undefined) return fail("is not a list (comma-separated, or a TOML array)");
      return def.type === "list" ? items : items.map(address);
    }
    default:
      throw new TypeError(`Unknown option type for ${key}: ${showValue(def.type)}`);
  }
}

function copy(value: unknown): unknown {
  return Array.isArray(value) ? [...value] : value;
}

/** The built-in defaults of a spec (options without a default are left out). */
export function defaultsOf(spec: OptionSpec): Options {
  const options: Options = {};
  for (const [key, def] of Object.entries(spec)) {
    if (def.default !== undefined) options[key] = copy(def.default);
  }
  return options;
}

/**
 * Layers option sets over the built-in defaults of `spec`: later layers win,
 * undefined values are ignored. Keys outside the spec are kept as given.
 *
 * A typical call: `mergeOptions(roleSpec(info), instance.options, cliOptions)`.
 */
export function mergeOptions(spec: OptionSpec, ...layers: Options[]): Options {
  const merged = defaultsOf(spec);
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer)) {
      if (value !== undefined) merged[key] = copy(value);
    }
  }
  return merged;
}
