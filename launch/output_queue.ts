/**
 * The launcher's stdout, written without ever blocking it: lines are
 * queued and one writer at a time writes them (whole, in order) with
 * asynchronous writes, so a slow reader of `dist up`'s output (a terminal,
 * an ssh session, a pipe) slows only the output, never supervision, the
 * dashboard or its event streams (hostile34 Z9: synchronous writes to a
 * reader taking 300 KB/s held the dashboard's answers 1.5–2.8 s).
 *
 * What waits is bounded: past {@link PER_SOURCE} waiting bytes of one
 * instance, or {@link TOTAL} in all, that instance's lines are dropped and
 * counted, and one line at most once a second per instance (and once the
 * queue is empty) says how many, as the log rate limits do. The launcher's
 * own lines are never dropped.
 */

/** Waiting bytes of one instance's lines past which its new lines are dropped. */
export const PER_SOURCE = 1024 * 1024;
/** Waiting bytes of every instance's lines past which new ones are dropped. */
export const TOTAL = 8 * 1024 * 1024;
/** Most bytes handed to one write. */
const CHUNK = 64 * 1024;

/** Where the queue writes (default: stdout); may write part of what it is given. */
export interface Sink {
  write(bytes: Uint8Array): Promise<number>;
}

/** How {@link OutputQueue} writes and what it keeps. */
export interface OutputQueueOptions {
  sink?: Sink;
  perSource?: number;
  total?: number;
  /** The line saying `count` lines of `source` were dropped (queued as the launcher's own). */
  dropped: (source: string, count: number) => string;
}

const encoder = new TextEncoder();

/** Lines to write, in order; see the module comment. */
export class OutputQueue {
  #sink: Sink;
  #perSource: number;
  #total: number;
  #dropped: (source: string, count: number) => string;
  #texts: string[] = [];
  /** The instance each text of #texts is from (same indexes; undefined: the launcher's own). */
  #sources: (string | undefined)[] = [];
  #head = 0;
  #bytes = 0;
  #waiting = new Map<string, number>();
  /** Lines dropped per instance since their last report, and when that was. */
  #drops = new Map<string, number>();
  #reported = new Map<string, number>();
  #writing: Promise<void> | undefined;
  #broken = false;

  constructor(options: OutputQueueOptions) {
    this.#sink = options.sink ?? Deno.stdout;
    this.#perSource = options.perSource ?? PER_SOURCE;
    this.#total = options.total ?? TOTAL;
    this.#dropped = options.dropped;
  }

  /** Lines dropped so far, per instance, not yet reported. */
  get unreported(): ReadonlyMap<string, number> {
    return this.#drops;
  }

  /**
   * Queues `text` (whole lines) of instance `source`, or the launcher's own
   * (`undefined`, never dropped); false when dropped.
   */
  push(source: string | undefined, text: string): boolean {
    if (this.#broken) return false;
    if (source !== undefined) {
      const waiting = this.#waiting.get(source) ?? 0;
      if (waiting + text.length > this.#perSource || this.#bytes + text.length > this.#total) {
        this.#drops.set(source, (this.#drops.get(source) ?? 0) + 1);
        return false;
      }
      this.#waiting.set(source, waiting + text.length);
    }
    this.#texts.push(text);
    this.#sources.push(source);
    this.#bytes += text.length;
    this.#writing ??= this.#pump();
    return true;
  }

  /** Resolves once every line queued is written, or after `ms` (a reader that stopped reading). */
  async flush(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let late = false;
    const deadline = new Promise<void>((resolve) =>
      timer = setTimeout(() => {
        late = true;
        resolve();
      }, ms)
    );
    try {
      while (this.#writing !== undefined && !late) await Promise.race([this.#writing, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #pump(): Promise<void> {
    try {
      while (this.#head < this.#texts.length && !this.#broken) {
        let text = "";
        while (this.#head < this.#texts.length && (text === "" || text.length < CHUNK)) {
          const source = this.#sources[this.#head];
          const t = this.#texts[this.#head++];
          this.#bytes -= t.length;
          if (source !== undefined) {
            this.#waiting.set(source, this.#waiting.get(source)! - t.length);
          }
          text += t;
        }
        if (this.#head === this.#texts.length) {
          this.#texts.length = this.#sources.length = this.#head = 0;
        } else if (this.#head > 4096) {
          this.#texts = this.#texts.slice(this.#head);
          this.#sources = this.#sources.slice(this.#head);
          this.#head = 0;
        }
        await this.#write(encoder.encode(text));
        this.#report();
      }
    } finally {
      this.#writing = undefined;
    }
  }

  async #write(bytes: Uint8Array): Promise<void> {
    try {
      let off = 0;
      while (off < bytes.length) off += await this.#sink.write(bytes.subarray(off));
    } catch {
      // Nobody reads our output any more (a closed pipe): keep running the cluster.
      this.#broken = true;
      this.#texts.length =
        this.#sources.length =
        this.#head =
        this.#bytes =
          0;
      this.#waiting.clear();
    }
  }

  /** Says how many lines of each instance were dropped: once a second at most, or once all is written. */
  #report(): void {
    if (this.#drops.size === 0) return;
    const now = performance.now();
    const empty = this.#head === this.#texts.length;
    for (const [source, count] of this.#drops) {
      if (!empty && now - (this.#reported.get(source) ?? -Infinity) < 1000) continue;
      this.#drops.delete(source);
      this.#reported.set(source, now);
      this.push(undefined, this.#dropped(source, count));
    }
  }
}
