/**
 * What a client learned of a service's instances by dialing them: those
 * that could not be dialed (for a while) and those that worked. Shared by a
 * connection to a service (service.ts) and the caller that asks the binders
 * before each request (resolver.ts), so what one learned the other uses.
 *
 * Anyone may register by default, so the binders may hand out hundreds of
 * addresses where nothing listens (hostile36 J9: 300 such registrations made
 * `dist client --service` fail its first request, which tried at most 3
 * instances). A refused dial costs a fraction of a millisecond and proves
 * the instance cannot take the request, so the client moves on to the next
 * at once, within the request's time rather than a count of tries, skips
 * those it found dead a moment ago when the binders hand them out again,
 * turns to one that worked when the binders' turn gives only dead ones, and
 * reports each dead one (a few at a time) so the binders drop it for
 * everyone.
 */
import type { Instance } from "../contracts/mod.ts";

/** How long an instance that could not be dialed is passed over (ms). */
export const DEAD_MS = 10_000;

/** Longest dial of an instance not known to work (ms), and least. */
const DIAL_MAX_MS = 1000;
const DIAL_MIN_MS = 100;

/**
 * How long one dial of an instance not known to work may take in a search
 * of `searchMs`: a sixteenth of it, within 100 ms and 1 s (312 ms of 5 s;
 * a connect and hello take a few ms on a LAN).
 */
export function dialBudget(searchMs: number): number {
  return Math.max(DIAL_MIN_MS, Math.min(DIAL_MAX_MS, searchMs / 16));
}

/** Most instances remembered either way (oldest forgotten first). */
const MAX_REMEMBERED = 10_000;

/** An instance's address as remembered (a registration again under a new id is the same place). */
const placeOf = (i: { host: string; port: number }) => `${i.host}:${i.port}`;

/** A service's instances as dialing them found them. */
export class InstanceMemory {
  /** When each place last failed to be dialed (performance.now()), oldest first. */
  readonly #dead = new Map<string, number>();
  /** Instances dialed with success, by place, the latest last. */
  readonly #worked = new Map<string, Instance>();
  readonly #now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** `instance` could not be dialed: passed over for {@link DEAD_MS}. */
  failed(instance: Instance): void {
    const place = placeOf(instance);
    this.#dead.delete(place);
    this.#dead.set(place, this.#now());
    this.#worked.delete(place);
    if (this.#dead.size > MAX_REMEMBERED) this.#dead.delete(this.#dead.keys().next().value!);
  }

  /** `instance` was dialed and answered its handshake. */
  worked(instance: Instance): void {
    const place = placeOf(instance);
    this.#dead.delete(place);
    this.#worked.delete(place);
    this.#worked.set(place, instance);
    if (this.#worked.size > MAX_REMEMBERED) this.#worked.delete(this.#worked.keys().next().value!);
  }

  /** Whether `instance` failed to be dialed less than {@link DEAD_MS} ago. */
  isDead(instance: { host: string; port: number }): boolean {
    const place = placeOf(instance);
    const at = this.#dead.get(place);
    if (at === undefined) return false;
    if (this.#now() - at < DEAD_MS) return true;
    this.#dead.delete(place);
    return false;
  }

  /** Whether `instance`'s place was dialed with success (and has not failed since). */
  hasWorked(instance: { host: string; port: number }): boolean {
    return this.#worked.has(placeOf(instance));
  }

  /** Places passed over now (an upper bound: some may have timed out). */
  get deadCount(): number {
    return this.#dead.size;
  }

  /** The instance that worked most recently and is not dead since, other than `except`'s place. */
  lastWorked(except?: { host: string; port: number }): Instance | undefined {
    const skip = except === undefined ? undefined : placeOf(except);
    const list = [...this.#worked.values()];
    for (let i = list.length - 1; i >= 0; i--) {
      if (placeOf(list[i]) !== skip && !this.isDead(list[i])) return list[i];
    }
    return undefined;
  }

  /** Forgets the dead (after every instance handed out was dead: the next round tries them all again). */
  forgetDead(): void {
    this.#dead.clear();
  }
}

/** Reports of dead instances in flight at once; more are left for later (the binders' leases run out anyway). */
export const MAX_REPORTS = 4;

/**
 * Reports instances down to the binders: each at most once a second, at
 * most {@link MAX_REPORTS} at once (a search through hundreds of dead
 * instances does not send hundreds of reports together: the binder rations
 * them per connection anyway).
 */
export class DownReports {
  readonly #send: (instance: Instance, quiet: boolean) => Promise<unknown>;
  readonly #at = new Map<string, number>();
  #inFlight = 0;

  /** @param send reports one (never rejects: resolver.ts `reportDown`) */
  constructor(send: (instance: Instance, quiet: boolean) => Promise<unknown>) {
    this.#send = send;
  }

  /**
   * Reports `instance` (quietly: its outcome on the debug log), unless it
   * was reported less than a second ago or {@link MAX_REPORTS} are in flight.
   * @returns the report under way, or undefined when none was sent
   */
  report(instance: Instance, quiet = false): Promise<unknown> | undefined {
    const now = performance.now();
    if (now - (this.#at.get(instance.id) ?? -Infinity) < 1000) return undefined;
    if (this.#inFlight >= MAX_REPORTS) return undefined;
    this.#at.set(instance.id, now);
    if (this.#at.size > MAX_REMEMBERED) this.#at.delete(this.#at.keys().next().value!);
    this.#inFlight++;
    return this.#send(instance, quiet).finally(() => this.#inFlight--);
  }
}
