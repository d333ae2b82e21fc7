/** The registry's counters, for `sys.stats` (registry.ts). */

export interface RegistryCounters {
  registrations: number;
  renewals: number;
  removals: number;
  expirations: number;
  lookups: number;
  merged: number;
  stale: number;
  /** Versions from peers refused for being too far ahead of this clock. */
  skewed: number;
  /** Live entries new to this binder from peers, skipped because the registry was full. */
  overflow: number;
  /** Tombstones collected early to make room for another (`maxTombstones`). */
  tombstones_evicted: number;
}

export function newCounters(): RegistryCounters {
  return {
    registrations: 0,
    renewals: 0,
    removals: 0,
    expirations: 0,
    lookups: 0,
    merged: 0,
    stale: 0,
    skewed: 0,
    overflow: 0,
    tombstones_evicted: 0,
  };
}
