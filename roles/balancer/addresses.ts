/**
 * Backends' addresses as keys: one spelling per address (config/hosts.ts),
 * so that spellings of one server are one backend.
 */
import { type Address, canonicalHost, formatAddress, parseAddress } from "../../config/mod.ts";

/**
 * `address` in its one spelling (config/hosts.ts): `0x7f000001:5557`,
 * `127.1:5557` and `[::ffff:127.0.0.1]:5557` are one backend, 127.0.0.1:5557
 * (review45 R7: a server registered under 16 spellings took 16 shares).
 */
export function canonical(address: Address): Address {
  return { host: canonicalHost(address.host), port: address.port };
}

/** A binder's instance as "host:port" (an IPv6 host in brackets), as the balancer parses it. */
export function instanceAddress(i: { host?: unknown; port?: unknown } | undefined): string {
  const host = String(i?.host);
  return `${host.includes(":") ? `[${host}]` : host}:${i?.port}`;
}

/** A binder's instance as its backend's key, or "" when it is no address. */
export function instanceKey(i: { host?: unknown; port?: unknown } | undefined): string {
  try {
    return formatAddress(canonical(parseAddress(instanceAddress(i))));
  } catch {
    return "";
  }
}
