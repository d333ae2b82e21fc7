/**
 * `--max-per-source`: the live instances one source (an authenticated user,
 * else the client's address — auth `clientSource`) may have registered on
 * this binder. Without it, one unauthenticated client could fill a service
 * with thousands of dead addresses that every watcher (a balancer
 * `--service`) is then told about and dials (hostile34 Z5). Counted on this
 * binder only: an instance a peer replicated here counts for no one, and a
 * registration renewing a live instance is never refused.
 */
import { getLogger } from "@logtape/logtape";
import { DistError } from "../../wire/mod.ts";
import { cut } from "../../wire/_log.ts";

const log = getLogger(["dist", "binder"]);

/**
 * Default share of `--max-instances` one source may hold: a hundredth, at
 * least 100 (all of them when there are fewer).
 */
export function defaultPerSource(maxInstances: number): number {
  return Math.min(maxInstances, Math.max(100, Math.floor(maxInstances / 100)));
}

/** How often a refusal is logged, at most, per binder (ms). */
const WARN_EVERY_MS = 5000;

/** Live instances registered here, by the source that registered them. */
export class SourceQuota {
  readonly max: number;
  /** Registrations refused (`sys.stats`). */
  refused = 0;
  #bySource = new Map<string, Set<string>>();
  #owner = new Map<string, string>();
  /** An opaque tag per source holding instances ({@link registrantOf}). */
  #tags = new Map<string, string>();
  #nextTag = 1;
  #warned = -Infinity;
  #quiet = 0;

  constructor(max: number) {
    this.max = max;
  }

  /** Instances `source` holds. */
  held(source: string): number {
    return this.#bySource.get(source)?.size ?? 0;
  }

  /**
   * Before `source` registers `id` (a new instance: a live one is renewed
   * whoever registers it again). `isLive` tells whether an instance this
   * source holds is still live, for a source at its share.
   * @throws {DistError} OVERLOADED when `source` holds its share
   */
  check(source: string, id: string, isLive?: (id: string) => boolean): void {
    if (this.#owner.has(id)) return;
    let n = this.held(source);
    if (n >= this.max && isLive !== undefined) {
      // Leases that ran out since the last sweep no longer count (a lookup
      // already leaves them out): at most this source's share to look at.
      for (const held of [...this.#bySource.get(source) ?? []]) {
        if (!isLive(held)) this.release(held);
      }
      n = this.held(source);
    }
    if (n < this.max) return;
    this.refused++;
    const now = performance.now();
    if (now - this.#warned >= WARN_EVERY_MS) {
      log.warn(
        "Registration of {id} from {source} refused: it holds {n} instances " +
          "(--max-per-source){more}",
        {
          id: cut(id),
          source: cut(source),
          n,
          more: this.#quiet > 0 ? `; ${this.#quiet} more refused since the last line` : "",
        },
      );
      this.#warned = now;
      this.#quiet = 0;
    } else this.#quiet++;
    throw new DistError(
      "OVERLOADED",
      `This binder takes at most ${this.max} live instances from one source ` +
        "(--max-per-source), and yours holds them all",
    );
  }

  /** `source` registered `id` (counted until the instance is removed or expires). */
  took(source: string, id: string): void {
    if (this.#owner.has(id)) return;
    this.#owner.set(id, source);
    let ids = this.#bySource.get(source);
    if (ids === undefined) {
      this.#bySource.set(source, ids = new Set());
      this.#tags.set(source, `r${this.#nextTag++}`);
    }
    ids.add(id);
  }

  /**
   * Who registered `id` here, as an opaque tag the same for every instance
   * of one source while it holds one (`r1`, `r2`, …: never its address or
   * user), handed out with the instance as `registrant` so a balancer can
   * try the instances of each registrant in turn (hostile35 H4);
   * undefined for one a peer replicated here, or registered before a
   * restart.
   */
  registrantOf(id: string): string | undefined {
    const source = this.#owner.get(id);
    return source === undefined ? undefined : this.#tags.get(source);
  }

  /** `id` is no longer live (removed, expired, or replaced by a peer's removal). */
  release(id: string): void {
    const source = this.#owner.get(id);
    if (source === undefined) return;
    this.#owner.delete(id);
    const ids = this.#bySource.get(source);
    ids?.delete(id);
    if (ids?.size === 0) {
      this.#bySource.delete(source);
      this.#tags.delete(source);
    }
  }
}
