/**
 * Where an instance listens, for the loader's port clash check: the ports
 * and listening addresses of an instance, and whether two hosts with one
 * port would take the same socket.
 */
import { tryAddress } from "./values.ts";

/**
 * Address options an instance listens on beside its ports: on a replicated
 * entry their port counts up like a port option's (else every replica
 * would bind the same one), and they are checked for clashes alike.
 */
export const LISTEN_ADDRESSES = ["metrics"];

/**
 * Where option `key` listens when on a fixed port: a port option's number,
 * or the host and port of a listening address (LISTEN_ADDRESSES); undefined
 * for port 0, no value, or one that is neither.
 */
export function listensAt(
  key: string,
  value: unknown,
): { host?: string; port: number } | undefined {
  if (!LISTEN_ADDRESSES.includes(key)) {
    return typeof value === "number" && value !== 0 ? { port: value } : undefined;
  }
  if (typeof value !== "string") return undefined;
  const address = tryAddress(value, "127.0.0.1");
  return typeof address === "string" || address.port === 0 ? undefined : address;
}

/** A host as the clash check compares it: lower case, no brackets, localhost as 127.0.0.1. */
export function listenHost(host: string): string {
  const bare = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return bare === "localhost" ? "127.0.0.1" : bare;
}

/**
 * Whether listeners on hosts `a` and `b` (as {@link listenHost} gives them)
 * with one port clash: the same host, or a wildcard and a host it takes.
 * `0.0.0.0` takes every IPv4 address (and a name, which may resolve to
 * one); `::` takes every address of both families (Linux's dual-stack
 * default), so binding either refuses the other.
 */
export function hostsClash(a: string, b: string): boolean {
  if (a === b || a === "::" || b === "::") return true;
  return (a === "0.0.0.0" && !b.includes(":")) || (b === "0.0.0.0" && !a.includes(":"));
}
