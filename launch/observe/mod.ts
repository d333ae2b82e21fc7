/**
 * @module
 * What a running cluster is doing, for whoever watches it (the dashboard of
 * `dist up`, `dist status --watch`, a metrics endpoint):
 *
 * - `poller.ts`: `sys.stats` of every instance over kept connections, a
 *   round at a time, only while someone watches;
 * - `rates.ts`: pure: each role's key rate (requests/s, messages/s,
 *   lookups/s), rates between two answers of one process, a bounded history;
 * - `cluster.ts`: the launcher's state of each instance merged with its
 *   answers: health (up, down …), rates, the last minutes, the references
 *   as edges; changes pushed to subscribers.
 */
export { type PollerOptions, type PollResult, type PollTarget, StatsPoller } from "./poller.ts";
export {
  type CounterSample,
  formatRate,
  History,
  rateBetween,
  ratesOf,
  type RateSpec,
  ROLE_RATES,
} from "./rates.ts";
export {
  type ClusterEvent,
  ClusterView,
  type Edge,
  type Health,
  healthOf,
  HISTORY_POINTS,
  type InstanceView,
  rssOf,
  type ViewInstance,
} from "./cluster.ts";
