/**
 * A small Prometheus registry: counters, gauges and histograms, in the text
 * exposition format 0.0.4. Written here rather than with prom-client because
 * the hot path is one property increment or one bucket search on a cell
 * the caller holds (prom-client's `labels()` builds and hashes a key per
 * call), and because nearly every value is read at scrape time from
 * counters the roles keep anyway (`sys.stats`): a collector, not a push.
 */

/** Label names to values; values are escaped when rendered. */
export type Labels = Readonly<Record<string, string>>;

/** A sample read at scrape time: a bare value, or values by label set. */
export type Reading = number | readonly (readonly [Labels, number])[];

type Kind = "counter" | "gauge" | "histogram";

interface Family {
  name: string;
  help: string;
  kind: Kind;
  render(out: string[]): void;
}

/** Sample lines (`name{labels} value`) by family name, as {@link Registry.samples} gives them. */
export type SampleSet = Map<string, string[]>;

/** `own` sample lines with those of `others`' family `name` added (same name and labels: summed). */
function summed(own: readonly string[], others: readonly SampleSet[], name: string): string[] {
  const sums = new Map<string, number>();
  const add = (line: string) => {
    const cut = line.lastIndexOf(" ");
    const key = line.slice(0, cut), text = line.slice(cut + 1);
    const v = text === "+Inf" ? Infinity : text === "-Inf" ? -Infinity : Number(text);
    sums.set(key, (sums.get(key) ?? 0) + v);
  };
  for (const line of own) add(line);
  for (const o of others) for (const line of o.get(name) ?? []) add(line);
  return Array.from(sums, ([key, v]) => `${key} ${num(v)}`);
}

/** Bucket bounds (seconds) for request latencies: 100 µs to 10 s. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  10,
];

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function escapeValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

function labelText(labels: Labels | undefined, extra?: string): string {
  const parts: string[] = [];
  if (labels !== undefined) {
    for (const k in labels) parts.push(`${k}="${escapeValue(labels[k])}"`);
  }
  if (extra !== undefined) parts.push(extra);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

function num(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/** A value the owner sets or adds to (one label set). */
export class Cell {
  value = 0;
  inc(by = 1): void {
    this.value += by;
  }
}

/** One histogram's buckets for one label set. */
export class HistogramCell {
  readonly bounds: readonly number[];
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length);
  }
  /** Records one observation (in the histogram's unit: seconds for latencies). */
  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]) i++;
    if (i < b.length) this.counts[i]++;
    this.sum += value;
    this.count++;
  }
}

/** A sampler aims at one timed event per 2 to 4 ms: this is the 4. */
export const SAMPLE_GAP_MS = 4;
/** The most events a sampler lets pass between two timed ones. */
const MAX_EVERY = 1 << 16;

/**
 * Which events of a hot path to time. A clock read costs 0.1–0.2 µs in
 * Deno (an op call), two of them more than all the rest of the counting,
 * and at 100,000 events a second that is 3 % of a core. So an event is
 * timed when {@link take} says so: every one while they come more than
 * 2 ms apart, and above that rate one in `every`, a power of two that each
 * timed event sets from the rate since the one before, so that 2 to 4 ms
 * pass between timed events (at most about 1,000 clock reads a second,
 * whatever the rate). Between timed events the cost is one decrement. A
 * registry's samplers are nudged once a second ({@link Registry.nudge}):
 * the next event is timed, so a rate that falls after a burst is seen
 * within a second or two, not after thousands of events. The counter beside
 * the histogram counts every event; the histogram's `_count` the sample.
 */
export class Sampler {
  /** Events to let pass before the next timed one (this one included). */
  #skip = 0;
  /** Events from one timed event to the next. */
  #every = 1;
  #last = -Infinity;
  readonly #now: (() => number) | undefined;

  /** @param now the clock (ms; `performance.now()` by default), read only for the events timed */
  constructor(now?: () => number) {
    this.#now = now;
  }

  /** The clock's time when this event is to be timed, else 0 (small: inlined where called). */
  take(): number {
    return --this.#skip > 0 ? 0 : this.#timed();
  }

  #timed(): number {
    const now = this.#now === undefined ? performance.now() : this.#now();
    // `#every` events (this one included) in `gap` ms since the last timed one.
    const wanted = Math.min(
      MAX_EVERY,
      Math.floor(this.#every * SAMPLE_GAP_MS / (now - this.#last)),
    );
    this.#last = now;
    this.#every = this.#skip = wanted >= 1 ? 1 << (31 - Math.clz32(wanted)) : 1;
    return now === 0 ? Number.MIN_VALUE : now; // 0 means not timed
  }

  /** Times the next event (its gap then tells the rate since the last timed one). */
  nudge(): void {
    if (this.#skip > 1) {
      this.#every -= this.#skip - 1;
      this.#skip = 1;
    }
  }
}

/** Counter or gauge cells by label set, made on first use (the caller bounds the sets). */
export class CellFamily {
  readonly #cells = new Map<string, { labels: Labels; cell: Cell }>();
  /** The cell of `labels`; keep it rather than asking on every increment. */
  cell(labels: Labels): Cell {
    const key = labelText(labels);
    let entry = this.#cells.get(key);
    if (entry === undefined) this.#cells.set(key, entry = { labels, cell: new Cell() });
    return entry.cell;
  }
  /** @internal */
  entries(): Iterable<{ labels: Labels; cell: Cell }> {
    return this.#cells.values();
  }
}

/** Histogram cells by label set. */
export class HistogramFamily {
  readonly #cells = new Map<string, { labels: Labels; cell: HistogramCell }>();
  readonly #bounds: readonly number[];
  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
  }
  cell(labels: Labels = {}): HistogramCell {
    const key = labelText(labels);
    let entry = this.#cells.get(key);
    if (entry === undefined) {
      this.#cells.set(key, entry = { labels, cell: new HistogramCell(this.#bounds) });
    }
    return entry.cell;
  }
  /** @internal */
  entries(): Iterable<{ labels: Labels; cell: HistogramCell }> {
    return this.#cells.values();
  }
}

/**
 * The metrics of one process. Families are declared once; values are either
 * cells the code increments or readings taken at scrape time.
 */
export class Registry {
  readonly #families = new Map<string, Family>();
  readonly #beforeScrape: (() => void)[] = [];
  readonly #samplers: Sampler[] = [];

  #add(family: Family): void {
    if (!NAME.test(family.name)) throw new Error(`Bad metric name: ${family.name}`);
    if (this.#families.has(family.name)) throw new Error(`Metric declared twice: ${family.name}`);
    this.#families.set(family.name, family);
  }

  /** Has {@link nudge} nudge `sampler` (a hot path's, made by its owner); returns it. */
  track<S extends Sampler>(sampler: S): S {
    this.#samplers.push(sampler);
    return sampler;
  }

  /** Has each sampler time its next event (called about once a second). */
  nudge(): void {
    for (const s of this.#samplers) s.nudge();
  }

  /** Runs before each scrape's readings (take one snapshot that several readings share). */
  beforeScrape(fn: () => void): void {
    this.#beforeScrape.push(fn);
  }

  /** A family read at scrape time (`counter` names end in `_total`). */
  read(kind: "counter" | "gauge", name: string, help: string, reading: () => Reading): void {
    this.#add({
      name,
      help,
      kind,
      render: (out) => {
        const r = reading();
        if (typeof r === "number") {
          if (!Number.isNaN(r)) out.push(`${name} ${num(r)}`); // NaN: not known now
          return;
        }
        for (const [labels, v] of r) out.push(`${name}${labelText(labels)} ${num(v)}`);
      },
    });
  }

  /** Counter or gauge cells the code increments, by label set. */
  cells(kind: "counter" | "gauge", name: string, help: string): CellFamily {
    const family = new CellFamily();
    this.#add({
      name,
      help,
      kind,
      render: (out) => {
        for (const { labels, cell } of family.entries()) {
          out.push(`${name}${labelText(labels)} ${num(cell.value)}`);
        }
      },
    });
    return family;
  }

  /** A histogram family (`name` ends in its unit: `_seconds`). */
  histogram(name: string, help: string, bounds = LATENCY_BUCKETS): HistogramFamily {
    const family = new HistogramFamily(bounds);
    this.#add({
      name,
      help,
      kind: "histogram",
      render: (out) => {
        for (const { labels, cell } of family.entries()) {
          let cumulative = 0;
          for (let i = 0; i < bounds.length; i++) {
            cumulative += cell.counts[i];
            out.push(`${name}_bucket${labelText(labels, `le="${num(bounds[i])}"`)} ${cumulative}`);
          }
          out.push(`${name}_bucket${labelText(labels, 'le="+Inf"')} ${cell.count}`);
          out.push(`${name}_sum${labelText(labels)} ${num(cell.sum)}`);
          out.push(`${name}_count${labelText(labels)} ${cell.count}`);
        }
      },
    });
    return family;
  }

  /**
   * Other registries' samples to add to this one's at each {@link scrape}
   * (`balancer --threads`: every thread's, each thread's isolate counting its own).
   */
  joined: (() => Promise<readonly SampleSet[]>) | undefined;

  /** Each family's sample lines now (for another registry to {@link render} with its own). */
  samples(): SampleSet {
    for (const fn of this.#beforeScrape) fn();
    const out: SampleSet = new Map();
    for (const f of this.#families.values()) {
      const lines: string[] = [];
      f.render(lines);
      out.set(f.name, lines);
    }
    return out;
  }

  /** The text exposition format, {@link joined}'s samples added in. */
  async scrape(): Promise<string> {
    return this.render(this.joined === undefined ? [] : await this.joined());
  }

  /**
   * The text exposition format (version 0.0.4); `others`' samples of this registry's families
   * are added in: a sample of the same name and labels summed, others listed after its own.
   */
  render(others: readonly SampleSet[] = []): string {
    for (const fn of this.#beforeScrape) fn();
    const out: string[] = [];
    for (const f of this.#families.values()) {
      const samples: string[] = [];
      f.render(samples);
      out.push(`# HELP ${f.name} ${f.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
      out.push(`# TYPE ${f.name} ${f.kind}`);
      out.push(...(others.length === 0 ? samples : summed(samples, others, f.name)));
    }
    return out.join("\n") + "\n";
  }
}
