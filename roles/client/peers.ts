/**
 * The benchmark's connections: how many it may ask for, and opening them so
 * that an interrupt stops the dialing (hostile h48 P10: `--connections
 * 100000` dialed for minutes past SIGTERM, and loops past `--requests`
 * carried nothing).
 */
import { UsageError } from "../../config/mod.ts";
import type { Caller } from "./_common.ts";

/** Connections dialed at once: an interrupt is seen between two groups. */
const DIAL_GROUP = 64;

/** Descriptors kept for what is not a benchmark connection (stdio, metrics, DNS …). */
const RESERVED_FILES = 64;

/**
 * Refuses `--connections` past what can be used or opened: above the
 * requests in flight (a connection past them carries nothing, as hey
 * refuses `-c` above `-n`), or above the process's open-file limit less a
 * reserve (the dials would fail at EMFILE after minutes).
 *
 * @param concurrency the requests in flight (`--concurrency`, at most `--requests`)
 * @throws {UsageError}
 */
export function checkConnections(connections: number, concurrency: number): void {
  if (connections > concurrency) {
    throw new UsageError(
      `--connections ${connections} is more than the ${concurrency} request(s) in flight ` +
        `(--concurrency, at most --requests): a connection past them carries nothing`,
    );
  }
  const files = openFileLimit();
  if (files !== undefined && connections > files - RESERVED_FILES) {
    throw new UsageError(
      `--connections ${connections} is more than this process may open (open files: ${files}, ` +
        `less ${RESERVED_FILES} kept): raise ulimit -n, or give fewer`,
    );
  }
}

/** The soft limit of open files (Linux's /proc/self/limits), or undefined where unknown. */
function openFileLimit(): number | undefined {
  try {
    const line = /^Max open files\s+(\d+|unlimited)/m.exec(
      Deno.readTextFileSync("/proc/self/limits"),
    )?.[1];
    return line === undefined || line === "unlimited" ? undefined : Number(line);
  } catch {
    return undefined;
  }
}

/**
 * Opens `n` connections, {@link DIAL_GROUP} at a time; resolves with
 * undefined (every one opened closed) when `signal` is aborted first.
 *
 * @throws the first dial's error (the others closed)
 */
export async function openPeers(
  n: number,
  open: () => Promise<Caller>,
  signal: AbortSignal,
): Promise<Caller[] | undefined> {
  const peers: Caller[] = [];
  // An interrupt stops the wait for a group whose dials hang (an address that never answers).
  const { promise: aborted, resolve } = Promise.withResolvers<"aborted">();
  const onAbort = () => resolve("aborted");
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    while (peers.length < n && !signal.aborted) {
      const dials = Array.from({ length: Math.min(DIAL_GROUP, n - peers.length) }, open);
      const group = await Promise.race([Promise.allSettled(dials), aborted]);
      if (group === "aborted") {
        // Those that open later are closed as they do.
        for (const dial of dials) dial.then((p) => p.close(), () => {});
        break;
      }
      for (const r of group) if (r.status === "fulfilled") peers.push(r.value);
      const failed = group.find((r) => r.status === "rejected");
      if (failed !== undefined) {
        for (const p of peers) p.close();
        throw (failed as PromiseRejectedResult).reason;
      }
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  if (peers.length === n) return peers;
  for (const p of peers) p.close();
  return undefined;
}
