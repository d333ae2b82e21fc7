/**
 * The sources of the client connections (a peer address, or an
 * authenticated user: shares.ts), and which of them are busy: a source
 * with requests in the balancer (on the backends or waiting), or another
 * that went idle within LIGHT_GRACE_MS. The connections of a source count
 * together only while another source is busy (shares.ts).
 */
import { LIGHT_GRACE_MS } from "./share_limits.ts";
import { NetShare, RESERVE_HOLD, RESERVE_PART, SourceShare } from "./slots.ts";
import { networkOf } from "./redial_nets.ts";

/** Requests got back within LONG_MS in a row that make a source quick (netRoom). */
const QUICK_RUN = 8;
/** How long a source that got back a request held LONG_MS or more is not light (ms). */
const SLOW_MEMORY_MS = 60_000;
/** Sources that left a network whose record it keeps (an IPv4 /24 has 256). */
const LEFT_KEPT = 256;

export class SourceBook {
  /** Sources with requests in the balancer (on the backends or waiting). */
  busy = 0;
  #sources = new Map<string, SourceShare>();
  /** The IPv4 sources' networks (NetShare), while they have sources. */
  #nets = new Map<string, NetShare>();
  /** The two sources that last went idle, and when (another within the grace counts as busy). */
  #idle: [SourceShare | undefined, number, SourceShare | undefined, number] = [
    undefined,
    -Infinity,
    undefined,
    -Infinity,
  ];
  #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  /** The source named `name`, with one connection more. */
  join(name: string): SourceShare {
    let source = this.#sources.get(name);
    if (source === undefined) {
      source = new SourceShare(name);
      this.#sources.set(name, source);
      const key = networkOf(name);
      if (key !== undefined) {
        let net = this.#nets.get(key);
        if (net === undefined) this.#nets.set(key, net = new NetShare(key));
        net.sources++;
        source.net = net;
        const was = net.left.get(name);
        if (was !== undefined) [source.quick, source.slowAt] = was;
        net.left.delete(name);
      }
    }
    source.connections++;
    return source;
  }

  /** A connection of `source` is forgotten (idle): the source too, with its last. */
  leave(source: SourceShare): void {
    if (--source.connections > 0) return;
    this.#sources.delete(source.key);
    const net = source.net;
    if (net !== undefined && --net.sources === 0) this.#nets.delete(net.key);
    else if (net !== undefined && (source.quick > 0 || source.slowAt > -Infinity)) {
      // Kept, so that reconnecting clears no record (a slow source would be light again).
      if (net.left.size >= LEFT_KEPT) net.left.delete(net.left.keys().next().value!);
      net.left.set(source.key, [source.quick, source.slowAt]);
    }
    const idle = this.#idle;
    if (idle[0] === source) idle[0] = undefined;
    if (idle[2] === source) idle[2] = undefined;
  }

  /** Whether a source other than `source` has requests in, or had within the grace. */
  othersBusy(source: SourceShare): boolean {
    const mine = source.inflight + source.waiting > 0 ? 1 : 0;
    if (this.busy > mine) return true;
    const idle = this.#idle;
    const other = idle[0] !== source ? idle[1] : idle[3];
    return other > -Infinity && this.#now() - other < LIGHT_GRACE_MS;
  }

  /**
   * Whether `source` may take a slot as far as its network goes: its
   * network holding requests from n sources, while n ÷ RESERVE_HOLD of the
   * reserve (slots.ts) stays free (all of it from RESERVE_HOLD sources on).
   * Each address holding none may take a slot of the reserve: 100
   * addresses of one /24, each holding a `sleep 5000` or two, held all of
   * it, and a client of another address waited seconds for every request
   * (hostile42a Y1). So the many addresses of a network leave the reserve
   * free as one source holding many does; a few (a neighbour) do not.
   *
   * But a light source of the network goes past that rule, the network's
   * light sources together holding at most reserve ÷ RESERVE_HOLD (one at
   * least) so taken: the rule held every address of the /24 to what its
   * holders are, and 100 slow addresses of 127.0.0.0/24 left a quick client
   * at 127.0.0.1 refused every call (hostile44a H-A1). Light: its last
   * {@link QUICK_RUN} requests or more came back within LONG_MS, none held
   * longer for {@link SLOW_MEMORY_MS} (kept when it leaves and comes back),
   * none on a backend that long now. Holders that warm up with quick
   * requests take that part and no more (review44 R2: with no bound on what
   * light sources hold, 100 warmed addresses took the reserve's 64 of 64).
   * @param used requests on the backends, of every source
   * @param capacity slots of the backends in rotation
   */
  netRoom(source: SourceShare, used: number, capacity: number): boolean {
    const net = source.net;
    source.lightNext = false;
    // Its own requests alone: what it holds is bounded as a source's (slots.ts).
    if (net === undefined || net.holders <= (source.inflight > 0 ? 1 : 0)) return true;
    const reserve = Math.floor(capacity / RESERVE_PART);
    const free = capacity - used - 1;
    if (free >= Math.floor(reserve * Math.min(net.holders, RESERVE_HOLD) / RESERVE_HOLD)) {
      return true;
    }
    if (net.light >= Math.max(1, Math.floor(reserve / RESERVE_HOLD)) || free < 0) return false;
    const now = this.#now();
    source.lightNext = source.quick >= QUICK_RUN && now - source.slowAt >= SLOW_MEMORY_MS &&
      source.old(now) === 0;
    return source.lightNext;
  }

  /** `source` has nothing in the balancer since `now`. */
  wentIdle(source: SourceShare, now: number): void {
    this.busy--;
    const idle = this.#idle;
    // Keeps the last two distinct sources, newest first.
    if (idle[0] !== source) {
      idle[2] = idle[0];
      idle[3] = idle[1];
      idle[0] = source;
    }
    idle[1] = now;
  }
}
