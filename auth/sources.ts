/**
 * Whose a connection is, for limits and shares: its user, or the source
 * its address counts as (an IPv6 address by its /64, every loopback
 * address one host).
 */
import { canonicalHost, parseIPv6 } from "../config/hosts.ts";

/** The identity of the shared token's holders (every right). */
export const TOKEN_USER = "token";

/**
 * `user X` for a client that authenticated as a user of its own, undefined
 * for none or the shared token (which every client may hold).
 */
export function userSource(user: string | undefined): string | undefined {
  return user === undefined || user === TOKEN_USER ? undefined : `user ${user}`;
}

/**
 * Whose a client is, for the shares that keep one party from taking all
 * (the balancer's slots, the broker's turns and subscriptions): its own
 * user ({@link userSource}), else the address it connects from — an IPv6
 * address by its /64 ({@link addressSource}).
 */
export function clientSource(user: string | undefined, host: string): string {
  return userSource(user) ?? addressSource(host);
}

/**
 * The source an address counts as: an IPv4 address itself (also written
 * IPv4-mapped, `::ffff:192.0.2.1` or `::ffff:c000:201`), an IPv6 one its
 * /64, written `2001:db8:0:1::/64` (a zone, `%eth0`, left out): one host or
 * site usually holds a whole /64, so one source per address would give it
 * 2^64 (hostile33). `::1` (in any spelling) stays `::1`. The address is read
 * by config/hosts.ts, as the binder's and the balancer's keys are (one
 * parser, not a twin of it); what is no IPv6 address stays as it is.
 */
export function addressSource(host: string): string {
  if (!host.includes(":") || host.endsWith("/64")) return host;
  const address = canonicalHost(host.split("%")[0]);
  const groups = address.includes(":") ? parseIPv6(address) : undefined;
  if (groups === undefined || address === "::1") return address;
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(":")}::/64`;
}

/**
 * The host a hello's failures and hash checks count against: its
 * {@link addressSource}, with every loopback address one host (127.0.0.0/8
 * and ::1 are this machine: any local process may dial from any of them,
 * and 80 of them × 16 hellos naming a made-up user were 80 lanes of hash
 * checks that kept a password user out, hostile45c K-C3).
 */
export function hostSource(host: string): string {
  const source = addressSource(host);
  return source.startsWith("127.") || source === "::1" ? "loopback" : source;
}

/**
 * Whose a registration is (the binder's `--max-per-source`, `registrant`): its user, else its
 * {@link hostSource} (127.0.0.2 … 127.0.0.101 were 100 sources, hostile46c F1).
 */
export function machineSource(user: string | undefined, host: string): string {
  return userSource(user) ?? hostSource(host);
}
