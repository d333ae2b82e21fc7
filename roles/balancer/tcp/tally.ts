/**
 * Each backend's figures in the L4 mode (proxy.ts), for `--metrics`
 * (obs/role_stats.ts reads them from the proxy's stats): counted as
 * connections are made, fail and end, and the bytes of those still open
 * added at each scrape.
 */
import type { Backend } from "../backends.ts";

/** One backend's figures since the start. */
export class BackendTally {
  /** Connections dialed and made. */
  connections = 0;
  /** Dials that failed (refused, timed out). */
  failures = 0;
  /** Bytes of its ended connections, to it (up) and from it (down). */
  up = 0;
  down = 0;
}

/** A connection open now: its backend and the bytes passed so far each way. */
export interface OpenPassage {
  readonly backend: Backend | undefined;
  readonly splice: { readonly up: number; readonly down: number } | undefined;
}

/**
 * The figures of every backend of `list` (`servers` in the proxy's stats), and the bytes of the
 * connections of `open` summed.
 */
export function backendFigures(
  list: readonly Backend[],
  tallies: ReadonlyMap<Backend, BackendTally>,
  open: readonly OpenPassage[],
) {
  let up = 0, down = 0;
  const live = new Map<Backend, { up: number; down: number }>();
  for (const p of open) {
    const s = p.splice!, b = live.get(p.backend!);
    up += s.up;
    down += s.down;
    if (b === undefined) live.set(p.backend!, { up: s.up, down: s.down });
    else (b.up += s.up, b.down += s.down);
  }
  const servers = list.map((b) => {
    const t = tallies.get(b), l = live.get(b);
    return {
      address: b.address,
      up: b.state === "up",
      connections: b.inflight,
      connections_total: t?.connections ?? 0,
      connect_failures: t?.failures ?? 0,
      sent_bytes: (t?.up ?? 0) + (l?.up ?? 0),
      received_bytes: (t?.down ?? 0) + (l?.down ?? 0),
    };
  });
  return { up, down, servers };
}
