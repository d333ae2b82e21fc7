/**
 * The cluster as a watcher sees it: each instance's launcher state (pid,
 * restarts, how it last ended) merged with what it answers to `sys.stats`
 * (uptime, memory, counters), its rates and their last minutes, and the
 * edges of the topology's references. The dashboard and `dist status
 * --watch` show it; the launcher's state changes reach watchers at once,
 * polls once a round.
 */
import type { InstanceState } from "../state.ts";
import type { PollResult, StatsPoller } from "./poller.ts";
import { type CounterSample, History, rateBetween, ratesOf } from "./rates.ts";

/** One instance of the view, as the topology has it. */
export interface ViewInstance {
  name: string;
  role: string;
  /** Where it listens as configured (port may be 0); undefined when it does not listen. */
  address?: string;
  /** For each reference option, the instances it names. */
  refs: Record<string, string[]>;
  /** On another host (`dist up --on`): only polls tell how it is. */
  remote?: boolean;
}

/** up (green), down (red), starting, stopped, done (exited as it should). */
export type Health = "up" | "down" | "starting" | "stopped" | "done";

/** An instance now: what the dashboard draws and `dist status --watch` prints. */
export interface InstanceView {
  name: string;
  role: string;
  address: string | null;
  remote: boolean;
  /** The launcher's word: waiting, starting, ready, running, backoff, exited, stopping, stopped. */
  state: string;
  health: Health;
  pid: number | null;
  /** When its current process started (ms since the epoch), when known. */
  started_ms: number | null;
  uptime_ms: number | null;
  restarts: number | null;
  last_exit: string | null;
  rss_bytes: number | null;
  /** Its key rate (per second), and what it counts; null when unknown. */
  rate: number | null;
  rate_unit: string | null;
  /** Every rate of its role, by unit (`messages/s`). */
  rates: Record<string, number | null>;
  /** When it last answered sys.stats (ms since the epoch). */
  polled_ms: number | null;
  /** What is wrong, in words ("not answering: …"). */
  note: string | null;
}

/** A reference: `from` names `to` in its option `key`. */
export interface Edge {
  from: string;
  to: string;
  key: string;
}

/** What watchers are told. */
export type ClusterEvent =
  | { type: "instance"; instance: InstanceView }
  | { type: "round"; at: number; instances: InstanceView[] };

/** How much of the past each instance keeps: 5 minutes of rounds a second apart, and some. */
export const HISTORY_POINTS = 320;
/** Polls further apart than this were not consecutive rounds (ms). */
const GAP_MS = 3000;

interface Entry {
  spec: ViewInstance;
  state?: InstanceState;
  /** When the launcher's state last changed (ms since the epoch). */
  changedAt: number;
  poll?: PollResult;
  /** The previous answer of the same process, for rates. */
  sample?: CounterSample;
  rates: Record<string, number | null>;
  history: History;
}

/** Resident set size of a local process (null when unknown: gone, or not Linux). */
export function rssOf(pid: number | null | undefined): number | null {
  if (pid === undefined || pid === null) return null;
  try {
    const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/VmRSS:\s+(\d+) kB/);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** The health an instance's launcher state and last poll add up to. */
export function healthOf(
  state: InstanceState | undefined,
  poll: PollResult | undefined,
  options: { listens: boolean; changedAt: number; remote?: boolean },
): Health {
  // A poll older than the state's last change says nothing of the new process.
  const fresh = poll !== undefined && poll.at >= options.changedAt ? poll : undefined;
  if (options.remote || state === undefined) {
    if (fresh === undefined) return "starting";
    return fresh.ok ? "up" : "down";
  }
  switch (state.state) {
    case "ready":
    case "running":
      return options.listens && fresh !== undefined && !fresh.ok ? "down" : "up";
    case "starting":
      // Starting again after it ended: down until it is ready.
      return state.restarts > 0 ? "down" : "starting";
    case "waiting":
      return "starting";
    case "backoff":
      return "down";
    case "exited":
      return state.last_exit === "exit code 0" ? "done" : "down";
    default: // stopping, stopped
      return "stopped";
  }
}

/** See the module comment. */
export class ClusterView {
  readonly file: string;
  readonly edges: Edge[];
  readonly poller: StatsPoller;
  #entries = new Map<string, Entry>();
  #listeners = new Set<(event: ClusterEvent) => void>();
  #now: () => number;

  constructor(
    file: string,
    instances: ViewInstance[],
    options: { poller: StatsPoller; now?: () => number },
  ) {
    this.file = file;
    this.poller = options.poller;
    this.#now = options.now ?? Date.now;
    for (const spec of instances) {
      this.#entries.set(spec.name, {
        spec,
        changedAt: 0,
        rates: Object.fromEntries(ratesOf(spec.role).map((r) => [r.unit, null])),
        history: new History(HISTORY_POINTS),
      });
    }
    const names = new Set(this.#entries.keys());
    this.edges = instances.flatMap((i) =>
      Object.entries(i.refs).flatMap(([key, targets]) =>
        [...new Set(targets)].filter((t) => names.has(t)).map((to) => ({ from: i.name, to, key }))
      )
    );
    this.poller.onRound((results) => this.#onRound(results));
  }

  /** The instances' names, in the order given. */
  get names(): string[] {
    return [...this.#entries.keys()];
  }

  /** The launcher's state of `name` changed (a copy is kept); watchers hear of it now. */
  setState(name: string, state: InstanceState): void {
    const entry = this.#entries.get(name);
    if (entry === undefined) return;
    const before = entry.state;
    entry.state = { ...state };
    if (before?.pid !== state.pid || before?.state !== state.state) {
      entry.changedAt = this.#now();
      if (before?.pid !== state.pid) entry.sample = undefined;
    }
    this.#emit({ type: "instance", instance: this.#view(entry) });
  }

  /** Where `name` listens now: the port it got, else as configured (undefined for port 0). */
  addressOf(name: string): string | undefined {
    const entry = this.#entries.get(name);
    if (entry === undefined) return undefined;
    if (entry.state?.address !== undefined) return entry.state.address;
    const address = entry.spec.address;
    return address === undefined || /:0$/.test(address) ? undefined : address;
  }

  /** Listens to changes and rounds; returns the function that stops it. */
  subscribe(listener: (event: ClusterEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Polls while the returned function is not called (see {@link StatsPoller.watch}). */
  watch(): () => void {
    return this.poller.watch();
  }

  /** Every instance now. */
  instances(): InstanceView[] {
    return [...this.#entries.values()].map((e) => this.#view(e));
  }

  /** The last minutes of each instance's key rate (times in ms since the epoch). */
  history(): Record<string, { times: number[]; values: (number | null)[] }> {
    return Object.fromEntries([...this.#entries].map(([name, e]) => [name, e.history.points()]));
  }

  /** The last sys.stats of `name` (asked now when nobody polls), or why there is none. */
  async stats(name: string): Promise<PollResult | undefined> {
    if (!this.#entries.has(name)) return undefined;
    const latest = this.poller.latest.get(name);
    if (this.poller.watched && latest !== undefined) return latest;
    return await this.poller.pollOne(name);
  }

  #onRound(results: ReadonlyMap<string, PollResult>): void {
    const at = this.#now();
    for (const [name, poll] of results) {
      const entry = this.#entries.get(name);
      if (entry === undefined || entry.spec.address === undefined) continue;
      entry.poll = poll;
      const specs = ratesOf(entry.spec.role);
      if (poll.ok && poll.stats !== undefined) {
        const uptime = poll.stats.uptime_ms;
        const sample: CounterSample = {
          at: poll.at,
          stats: poll.stats,
          ...(typeof uptime === "number" ? { uptimeMs: uptime } : {}),
        };
        for (const spec of specs) {
          entry.rates[spec.unit] = rateBetween(entry.sample, sample, spec.counter) ?? null;
        }
        entry.sample = sample;
      } else {
        entry.sample = undefined;
        for (const spec of specs) entry.rates[spec.unit] = null;
      }
      const key = specs[0];
      const last = entry.history.last;
      // Rounds far apart (nobody watched between them): a gap, not a line across it.
      if (last !== undefined && poll.at - last > GAP_MS) entry.history.push(last + 1, null);
      entry.history.push(poll.at, key === undefined ? null : entry.rates[key.unit]);
    }
    this.#emit({ type: "round", at, instances: this.instances() });
  }

  #emit(event: ClusterEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        // One watcher's failure is not the others'.
      }
    }
  }

  #view(entry: Entry): InstanceView {
    const { spec, state, poll } = entry;
    const listens = spec.address !== undefined;
    const health = healthOf(state, poll, {
      listens,
      changedAt: entry.changedAt,
      remote: spec.remote,
    });
    const fresh = poll !== undefined && poll.at >= entry.changedAt ? poll : undefined;
    const stats = fresh?.ok ? fresh.stats : undefined;
    const count = (v: unknown) => typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : null;
    const started = state?.pid !== undefined ? state.started_ms ?? null : null;
    const key = ratesOf(spec.role)[0];
    let note: string | null = null;
    // Silent while the launcher holds it ready (or it is another host's): say why.
    const held = spec.remote || state?.state === "ready" || state?.state === "running";
    if (fresh !== undefined && !fresh.ok && held && health === "down") {
      note = fresh.impostor !== undefined
        ? `its port answers as ${fresh.impostor}`
        : `not answering: ${fresh.error ?? "no answer"}`;
    }
    return {
      name: spec.name,
      role: spec.role,
      address: this.addressOf(spec.name) ?? spec.address ?? null,
      remote: spec.remote ?? false,
      state: state?.state ?? (spec.remote ? "remote" : "unknown"),
      health,
      pid: state?.pid ?? null,
      started_ms: started,
      uptime_ms: count(stats?.uptime_ms) ??
        (started === null || health !== "up" ? null : Math.max(0, this.#now() - started)),
      restarts: state?.restarts ?? null,
      last_exit: state?.last_exit ?? null,
      rss_bytes: count(stats?.rss_bytes) ?? (spec.remote ? null : rssOf(state?.pid)),
      rate: key === undefined || health !== "up" ? null : entry.rates[key.unit],
      rate_unit: key?.unit ?? null,
      rates: health === "up" ? { ...entry.rates } : {},
      polled_ms: stats !== undefined ? fresh!.at : null,
      note,
    };
  }
}
