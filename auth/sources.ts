/**
 * Whose a connection is, for limits and shares: its user, or the source
 * its address counts as (an IPv6 address by its /64, every loopback
 * address one host).
 */

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
 * IPv4-mapped, `::ffff:192.0.2.1`), an IPv6 one its /64, written
 * `2001:db8:0:1::/64` (a zone, `%eth0`, left out): one host or site usually
 * holds a whole /64, so one source per address would give it 2^64 (hostile33).
 * `::1` stays itself.
 */
export function addressSource(host: string): string {
  if (!host.includes(":") || host === "::1" || host.endsWith("/64")) return host;
  const address = host.split("%")[0].toLowerCase();
  if (address.startsWith("::ffff:") && address.includes(".")) return address.slice(7);
  const [head, tail] = address.split("::");
  const first = head === "" ? [] : head.split(":");
  const last = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = [
    ...first,
    ...Array(Math.max(0, 8 - first.length - last.length)).fill("0"),
    ...last,
  ];
  const net = groups.slice(0, 4).map((g) => (parseInt(g, 16) || 0).toString(16));
  return `${net.join(":")}::/64`;
}

/**
 * The host a hello's failures and hash checks count against: its
 * {@link addressSource}, with every loopback address one host (127.0.0.0/8
 * and ::1 are this machine: any local process may dial from any of them,
 * and 80 of them × 16 hellos naming a made-up user were 80 lanes of hash
 * checks that kept a password user out, hostile45c K-C3).
 */
export function hostSource(host: string): string {
  const h = host.startsWith("::ffff:") && host.includes(".") ? host.slice(7) : host;
  if (h.startsWith("127.") || h === "::1") return "loopback";
  return addressSource(h);
}

/**
 * Whose a registration is (the binder's `--max-per-source`, `registrant`): its user, else its
 * {@link hostSource} (127.0.0.2 … 127.0.0.101 were 100 sources, hostile46c F1).
 */
export function machineSource(user: string | undefined, host: string): string {
  return userSource(user) ?? hostSource(host);
}
