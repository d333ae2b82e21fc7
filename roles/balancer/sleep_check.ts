/**
 * Which backends run `sleep` as asked, so that one found through binders
 * may witness against others (success_rate.ts mayEject; review45 R3).
 *
 * Only a server the operator named could lift the half-pool cap: anyone
 * may register an instance at an open binder, and a liar answering every
 * task at once was "sound" beside real servers whose requests a client
 * made outlast `--timeout` (hostile44a H-A2, hostile45a K-A2). So in a
 * pure `--service` pool nothing lifted it, and fakes that answered once
 * and then held every task kept up to half of the pool in rotation.
 *
 * `sleep {ms}` is the one operation whose answer cannot honestly come
 * sooner than it asks, and among the built-in operations the only one a
 * client can make outlast `--timeout` on a real server. So an instance
 * that answered a sleep of {@link PROOF_MS} or more no sooner than asked,
 * and never one sooner (neither the balancer's own short probes, sent as
 * health checks are, nor a client's), is a witness: a liar answering at
 * once is caught by the first sleep it answers, and one that runs sleeps
 * as asked times out on a client's long ones as the real servers do, so
 * it is not sound there. Who registered it decides nothing. A server
 * without `sleep` (one of the library's, with methods of its own) proves
 * nothing: its pool keeps the cap.
 */
import { heldParams } from "./value_size.ts";
import type { Backend } from "./backends.ts";
import type { ForwardJob } from "./relay.ts";

/** The shortest sleep that proves (or disproves) anything (ms). */
export const PROOF_MS = 20;
/** Clock slack: an answer this much sooner than asked still counts as in time (ms). */
const SLACK_MS = 2;

export class SleepCheck {
  /** Sleeps of PROOF_MS or more it answered no sooner than asked. */
  honest = 0;
  /** It answered such a sleep sooner than asked: never a witness again. */
  early = false;

  /** A sleep of `ms` sent at `sentAt` was answered with a result at `now`. */
  answered(ms: unknown, sentAt: number, now: number): void {
    if (typeof ms !== "number" || !(ms >= PROOF_MS)) return;
    if (now - sentAt < ms - SLACK_MS) this.early = true;
    else this.honest++;
  }

  /** It ran a sleep as asked, and never answered one sooner. */
  get proven(): boolean {
    return this.honest > 0 && !this.early;
  }
}

/** The `ms` of a sleep's params (`{ms}` or `[ms]`), if a number. */
function sleepMs(params: unknown): unknown {
  if (Array.isArray(params)) return params[0];
  return params !== null && typeof params === "object"
    ? (params as { ms?: unknown }).ms
    : undefined;
}

/**
 * `backend` answered `job` with a result in time, at `now` (default: the clock): the method is
 * one it answers (slow_methods.ts), and a sleep is checked.
 */
export function resulted(backend: Backend, job: ForwardJob, now?: number): void {
  backend.slow.resulted(job.method);
  // A trial held past its bound and sent on (trials.ts) has the later send's time.
  if (job.method !== "sleep" || job.backend !== backend) return;
  // The clock only for a sleep: a read per answer was ~1 % of the balancer's samples.
  now ??= performance.now();
  let params: unknown;
  try {
    params = job.raw ? job.decodeParams() : heldParams(job);
  } catch {
    return; // passed as bytes and not decodable here: it proves nothing
  }
  backend.sleeps.answered(sleepMs(params), job.sentAt, now);
}

/**
 * The balancer's own probe (links.ts, beside a health check): a sleep of
 * PROOF_MS to twice that, judged as a client's is; no answer, or an error
 * (a server without `sleep`), proves nothing and counts nowhere.
 */
export function probeSleep(
  peer: { call(method: string, params: unknown, options: { timeout: number }): Promise<unknown> },
  backend: Backend,
): void {
  if (backend.sleeps.early) return;
  const ms = PROOF_MS + Math.floor(Math.random() * PROOF_MS);
  const sentAt = performance.now();
  peer.call("sleep", { ms }, { timeout: ms + 1000 }).then(
    () => backend.sleeps.answered(ms, sentAt, performance.now()),
    () => {},
  );
}
