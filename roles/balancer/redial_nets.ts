/**
 * Redials (pressure.ts) counted by source and by network: an IPv4
 * source's /24, an IPv6 source's /48 (the source is its /64: auth/gate.ts
 * addressSource). hostile42a Y1: the same 40 reconnecting non-readers
 * spread over 100 addresses of one /24 were never a "redialing" source
 * (about one redial each a second) and cut another address's client from
 * about 5,000 calls a second to 2. A network is redialing past
 * {@link NET_REDIALS}: four sources' worth, so that a NAT's or a lab's few
 * honest clients that each close a refused connection now and then are
 * not; the listener then paces the network's redialing addresses as one
 * source: those that redialed within {@link MEMBER_MS}, not the others
 * (hostile43a A5: an attacker at 127.0.0.2 had 127.0.0.1's refused
 * write-all client never read again, 0 of 5,000 answers in 15 s), and each
 * of them in the network's bucket, not its own (A2: 20 addresses that each
 * redialed got 20 buckets).
 */

/**
 * A source whose connections closed after being refused REDIAL_REFUSALS
 * times or more, more than REDIALS times (forgotten one per
 * REDIAL_FORGET_MS), redials: its refused connections are not read again,
 * and its new ones not past their first read, until it has not for a while
 * (see Pressure.backOff). A client refused once that goes is not one.
 */
export const REDIALS = 8;
export const REDIAL_REFUSALS = 4;
export const REDIAL_FORGET_MS = 1000;

/** Redials past which a network redials (four sources' REDIALS). */
const NET_REDIALS = 32;
/** Most a network's count holds: it falls under NET_REDIALS within about 8 s of its last redial. */
const NET_REDIALS_MOST = 40;

/**
 * The network key of an address source: an IPv4 address's /24
 * (`192.0.2.0/24`), an IPv6 /64's /48 (`2001:db8:1::/48`: a site's usual
 * prefix; hostile43a A11, redialers spread over 100 /64s of one /48 were
 * never paced), or undefined for any other source (a user).
 */
export function networkOf(source: unknown): string | undefined {
  if (typeof source !== "string") return undefined;
  const m = /^(\d{1,3}\.\d{1,3}\.\d{1,3})\.\d{1,3}$/.exec(source);
  if (m !== null) return `${m[1]}.0/24`;
  const v6 = /^([0-9a-f]{1,4}:[0-9a-f]{1,4}:[0-9a-f]{1,4}):[0-9a-f]{1,4}::\/64$/.exec(source);
  return v6 === null ? undefined : `${v6[1]}::/48`;
}

/**
 * The wider network of an address source, for the trials' rank only
 * (worker_sources.ts): an IPv4 address's /16, an IPv6 /64's /32 (a
 * provider's usual allocation), or undefined for any other source.
 * hostile43a A14: fakes each from a fresh /24 were each their network's
 * first, and took the trials before a real worker.
 */
export function wideNetworkOf(source: unknown): string | undefined {
  if (typeof source !== "string") return undefined;
  const m = /^(\d{1,3}\.\d{1,3})\.\d{1,3}\.\d{1,3}$/.exec(source);
  if (m !== null) return `${m[1]}.0.0/16`;
  const v6 = /^([0-9a-f]{1,4}:[0-9a-f]{1,4}):[0-9a-f]{1,4}:[0-9a-f]{1,4}::\/64$/.exec(source);
  return v6 === null ? undefined : `${v6[1]}::/32`;
}

/** How long an address is one of its network's redialers after its last redial (ms). */
const MEMBER_MS = 10_000;

/**
 * Counts a redial of `source` for its network, if it has one (`redials`:
 * pressure.ts's counts; `members`: when each address last redialed).
 */
export function countNetRedial(
  redials: Map<unknown, number>,
  members: Map<unknown, number>,
  source: unknown,
  now: number,
): void {
  const net = networkOf(source);
  if (net === undefined) return;
  redials.set(net, Math.min(NET_REDIALS_MOST, (redials.get(net) ?? 0) + 1));
  members.set(source, now);
}

/** `source`'s network when that redials and `source` redialed within MEMBER_MS, else undefined. */
export function redialingNet(
  redials: Map<unknown, number>,
  members: Map<unknown, number>,
  source: unknown,
  now: number,
): string | undefined {
  const at = members.get(source);
  if (at === undefined || now - at >= MEMBER_MS) return undefined;
  const net = networkOf(source);
  return net !== undefined && (redials.get(net) ?? 0) > NET_REDIALS ? net : undefined;
}

/** Forgets the addresses that have not redialed for MEMBER_MS. */
export function forgetMembers(members: Map<unknown, number>, now: number): void {
  for (const [source, at] of members) if (now - at >= MEMBER_MS) members.delete(source);
}
