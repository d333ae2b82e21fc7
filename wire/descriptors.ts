/**
 * The process's file descriptors (hostile35 H2): how many it may open, how
 * many connections fit in that, and whether an error is the process running
 * out of them rather than the peer's doing.
 *
 * A connection's limit above what the descriptors allow is not a limit:
 * `dist balancer --mode tcp` at its default `--max-connections 10000` holds
 * two descriptors a connection (client and backend), 20,000 where `ulimit -n`
 * was 20,000; one address holding 9,990 connections made every accept and
 * every dial fail `Too many open files`, and the failed dials took every
 * healthy backend out. Deno has no getrlimit: on Linux the limit is read from
 * /proc/self/limits; elsewhere it is unknown and nothing is capped.
 */

/**
 * Descriptors kept for what is not a connection at the limit: the runtime's
 * own (about 25), logs, checks, metrics, and the connections being accepted
 * or closed meanwhile (a connection closed to make room may still be dialing
 * its backend): 100, and a 32nd of the limit ({@link reserveFor}).
 */
export const DESCRIPTOR_RESERVE = 100;

/** Descriptors the runtime and its files need besides connections: a process keeps this many free. */
export const RUNTIME_DESCRIPTORS = 60;

/** The reserve kept out of `limit` descriptors (see {@link DESCRIPTOR_RESERVE}). */
export function reserveFor(limit: number): number {
  return DESCRIPTOR_RESERVE + Math.floor(limit / 32);
}

/**
 * The most file descriptors this process may open (the soft `Max open
 * files`, `ulimit -n`), or undefined when unknown or unlimited.
 */
export function descriptorLimit(): number | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/self/limits");
  } catch {
    return undefined; // Not Linux, or no /proc.
  }
  return parseDescriptorLimit(text);
}

/** The soft `Max open files` of a /proc/PID/limits text (undefined: absent or unlimited). */
export function parseDescriptorLimit(text: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith("Max open files"));
  const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
  const n = Number(soft);
  return soft === undefined || !Number.isSafeInteger(n) || n <= 0 ? undefined : n;
}

/** What {@link connectionsThatFit} found. */
export interface Fit {
  /** The connections allowed: `max`, or fewer when the descriptors do not allow it. */
  max: number;
  /** The descriptor limit (undefined: unknown, nothing capped). */
  limit?: number;
  /** Whether the limit lowered `max`. */
  lowered: boolean;
}

/**
 * The most connections that fit in the process's descriptors, `max` at most.
 * @param perConnection descriptors each connection holds (2 for a proxy: client and backend)
 * @param options `limit` (default: {@link descriptorLimit}), `reserve` (default
 *   {@link reserveFor} the limit), `extra`: more descriptors to keep (one per backend checked)
 */
export function connectionsThatFit(
  max: number,
  perConnection: number,
  options: { limit?: number; reserve?: number; extra?: number } = {},
): Fit {
  const limit = "limit" in options ? options.limit : descriptorLimit();
  if (limit === undefined) return { max, lowered: false };
  const reserve = (options.reserve ?? reserveFor(limit)) + (options.extra ?? 0);
  const fits = Math.max(1, Math.floor((limit - reserve) / perConnection));
  return fits >= max ? { max, limit, lowered: false } : { max: fits, limit, lowered: true };
}

/**
 * Whether `err` (or an error it wraps) is this process, or the whole
 * system, out of file descriptors (EMFILE, ENFILE): a local shortage, never
 * the fault of the peer being dialed or checked.
 */
export function isDescriptorShortage(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === "EMFILE" || code === "ENFILE") return true;
    if (/\(os error (23|24)\)/.test(e.message)) return true;
  }
  return false;
}
