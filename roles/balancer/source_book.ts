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
   * @param used requests on the backends, of every source
   * @param capacity slots of the backends in rotation
   */
  netRoom(source: SourceShare, used: number, capacity: number): boolean {
    const net = source.net;
    // Its own requests alone: what it holds is bounded as a source's (slots.ts).
    if (net === undefined || net.holders <= (source.inflight > 0 ? 1 : 0)) return true;
    const reserve = Math.floor(capacity / RESERVE_PART);
    return capacity - used - 1 >=
      Math.floor(reserve * Math.min(net.holders, RESERVE_HOLD) / RESERVE_HOLD);
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
