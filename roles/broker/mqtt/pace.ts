/**
 * A publisher read no faster than the subscribers it feeds take its
 * messages, while they keep up (hostile review 43b B6). The broker reads a
 * publisher's burst 64 KiB at a time, chain after chain, and writes each
 * delivery at once; a subscriber whose socket is full then holds the
 * burst's rest in its connection's output, far ahead of what it reads,
 * whatever its speed: past its room (a persistent session's QoS 0: 256
 * KiB) the rest was dropped, past max-pending a clean session was cut. A
 * subscriber that reads as fast as it can lost part of any burst larger
 * than its socket's buffers: `mosquitto_sub` 1,463–1,858 of 2,000 × 10 KB
 * (Mosquitto, which reads a packet and writes it before the next, 2,000),
 * and a clean session was cut in a 50 MB one.
 *
 * So while an MQTT PUBLISH is routed, every connection whose output it
 * leaves past {@link PACE_BYTES} is noted; the publisher's next packet is
 * read once each has drained to a quarter of that, or {@link PACE_MS} have
 * passed. One that has not drained by then does not keep up: it paces
 * nobody until it has (its deliveries past its room are dropped, or it is
 * cut, as before). The socket tells of its peer's reads by the megabyte
 * (the kernel's buffers), so a subscriber reading about 5 MB/s or more
 * keeps up. What a source's subscribers (shares.ts: an address, or a
 * user) may hold publishers back is bounded: {@link BUDGET_MS} at once,
 * then {@link BUDGET_SHARE} of the time (each wait charged to every source
 * waited for); past it they pace nobody (judged as before). So a
 * subscriber that keeps up but slower than the flow sets its pace for a
 * few seconds, then at most that share of the time; a stalled one costs
 * one wait, and a source opening stalled ones one after another their
 * share of the time.
 */
import type { Outbound } from "../../../wire/outbound.ts";
import { shareSource } from "../shares.ts";

/** Output of a subscriber's connection past which its publishers wait for it (at most max-pending / 8). */
export const PACE_BYTES = 128 * 1024;
/** Longest a publisher waits for the subscribers it fed to drain (ms). */
export const PACE_MS = 250;
/** How long a source's subscribers may hold publishers back at once (ms of waits). */
export const BUDGET_MS = 3000;
/** Then what share of the time (the budget's refill per ms). */
export const BUDGET_SHARE = 0.25;

/** Set while a PUBLISH is routed (in one turn): the connections it fills past the mark are noted. */
let routing = false;
/** The pacing mark of the broker routing it. */
let mark = PACE_BYTES;
/** The connections to wait for, with their source. */
const pressed = new Map<Outbound, string>();
/** Connections that did not drain in time: they pace nobody until they have. */
const slow = new WeakSet<Outbound>();
/** What each source may still hold publishers back (ms), as of `at` (performance.now()). */
const budgets = new Map<string, { left: number; at: number }>();
/** Publishers made to wait, and subscribers found not keeping up (for the stats). */
export const paced = { publishers: 0, slow: 0 };

/**
 * A PUBLISH is about to be routed by a broker of `maxPending`: the
 * connections it fills past the mark ({@link PACE_BYTES}, at most an eighth
 * of it) are noted.
 */
export function routeBegins(maxPending: number): void {
  routing = true;
  mark = Math.min(PACE_BYTES, Math.max(1, Math.floor(maxPending / 8)));
}

/** A delivery was written to `out`, `of` a client: noted if past the mark while a PUBLISH is routed. */
export function written(out: Outbound, of: { readonly source: string }): void {
  if (!routing || out.pending <= mark || slow.has(out) || pressed.has(out)) return;
  const source = shareSource(of.source);
  if (budgetOf(source, performance.now()).left > 0) pressed.set(out, source);
}

/** `source`'s budget, refilled to `now`. */
function budgetOf(source: string, now: number): { left: number; at: number } {
  let budget = budgets.get(source);
  if (budget === undefined) {
    if (budgets.size >= MOST_SOURCES) prune(now);
    budgets.set(source, budget = { left: BUDGET_MS, at: now });
  }
  budget.left = Math.min(BUDGET_MS, budget.left + (now - budget.at) * BUDGET_SHARE);
  budget.at = now;
  return budget;
}

/** Forgets the sources whose budget is whole again (as good as never seen). */
function prune(now: number): void {
  for (const [source, b] of budgets) {
    if (b.left + (now - b.at) * BUDGET_SHARE >= BUDGET_MS) budgets.delete(source);
  }
}

/**
 * The PUBLISH is routed: resolves once the connections it filled past the
 * mark have drained (or in {@link PACE_MS}); undefined when none was.
 */
export function routed(): Promise<void> | undefined {
  routing = false;
  if (pressed.size === 0) return undefined;
  const outs = [...pressed];
  pressed.clear();
  paced.publishers++;
  const low = mark >> 2;
  const { promise, resolve } = Promise.withResolvers<void>();
  const start = performance.now();
  let left = outs.length;
  let since = start;
  let finished = false;
  const done = () => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    const now = performance.now();
    for (const [, source] of outs) budgetOf(source, now).left -= now - start;
    resolve();
  };
  const judge = () => {
    const now = performance.now();
    // Late by half again: this process did not run (its I/O not seen yet), not their fault.
    if (now - since > 1.5 * PACE_MS) {
      since = now;
      timer = setTimeout(judge, PACE_MS);
      return;
    }
    for (const [out] of outs) {
      if (out.pending <= low || slow.has(out)) continue;
      slow.add(out);
      paced.slow++;
      out.drained(low).then(() => slow.delete(out));
    }
    done();
  };
  let timer = setTimeout(judge, PACE_MS);
  for (const [out] of outs) {
    out.drained(low).then(() => {
      if (--left === 0) done();
    });
  }
  return promise;
}

/** Most sources whose budget is kept (past it, those whole again are forgotten). */
const MOST_SOURCES = 4096;
