/**
 * A digest of a registry for anti-entropy: entries fall into a fixed number of
 * buckets by the hash of their id; each bucket keeps a count and the XOR of
 * the hashes of its entries' (id, version). Two binders compare digests,
 * which are a few hundred bytes whatever the registry's size, and exchange
 * only the entries of buckets that differ. Kept up to date change by change.
 */
import type { Stamp } from "./clock.ts";

/** Number of buckets (a power of two). */
export const BUCKETS = 64;

/** The wire form: per bucket, the XOR of item hashes and the number of items. */
export interface DigestSummary {
  x: number[];
  n: number[];
}

/** Where a paged walk over some buckets' ids resumes: bucket number and offset in it. */
export interface Cursor {
  b: number;
  o: number;
}

/** 32-bit FNV-1a of a string's UTF-16 code units. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The bucket of an id. */
export function bucketOf(id: string): number {
  return fnv1a(id) & (BUCKETS - 1);
}

/** The hash one version of one entry contributes to its bucket. */
export function itemHash(id: string, stamp: Stamp, removed: string | undefined): number {
  return fnv1a(`${id}|${stamp[0]}|${stamp[1]}|${stamp[2]}|${removed ?? ""}`);
}

/** Whether `value` is a well-formed digest summary from a peer. */
export function isDigestSummary(value: unknown): value is DigestSummary {
  if (value === null || typeof value !== "object") return false;
  const { x, n } = value as Record<string, unknown>;
  const ok = (a: unknown) =>
    Array.isArray(a) && a.length === BUCKETS &&
    a.every((v) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff);
  return ok(x) && ok(n);
}

/** The incremental digest of a set of (id, version) items, and the ids of each bucket. */
export class Digest {
  #xor = new Uint32Array(BUCKETS);
  #ids: Set<string>[] = Array.from({ length: BUCKETS }, () => new Set<string>());

  /** Adds one item (an id at one version). */
  add(id: string, stamp: Stamp, removed: string | undefined): void {
    const b = bucketOf(id);
    this.#xor[b] ^= itemHash(id, stamp, removed);
    this.#ids[b].add(id);
  }

  /** Removes an item added before with the same version. */
  remove(id: string, stamp: Stamp, removed: string | undefined): void {
    const b = bucketOf(id);
    this.#xor[b] ^= itemHash(id, stamp, removed);
    this.#ids[b].delete(id);
  }

  summary(): DigestSummary {
    return { x: Array.from(this.#xor), n: this.#ids.map((s) => s.size) };
  }

  /** The buckets where `other` differs from this digest, in order. */
  differing(other: DigestSummary): number[] {
    const out: number[] = [];
    for (let b = 0; b < BUCKETS; b++) {
      if (other.x[b] !== this.#xor[b] || other.n[b] !== this.#ids[b].size) out.push(b);
    }
    return out;
  }

  /**
   * Ids of `buckets` (ascending) from `from`, until their weights (1 each
   * unless `weigh` says otherwise) reach `budget`; a page holds at least one id.
   * @returns the ids and where the next page starts (undefined: done)
   */
  page(
    buckets: readonly number[],
    from: Cursor | undefined,
    budget: number,
    weigh: (id: string) => number = () => 1,
  ): { ids: string[]; next?: Cursor } {
    const ids: string[] = [];
    let used = 0;
    for (const b of buckets) {
      if (from !== undefined && b < from.b) continue;
      const skip = from !== undefined && b === from.b ? from.o : 0;
      let o = 0;
      for (const id of this.#ids[b]) {
        if (o++ < skip) continue;
        const w = weigh(id);
        if (ids.length > 0 && used + w > budget) return { ids, next: { b, o: o - 1 } };
        ids.push(id);
        used += w;
      }
    }
    return { ids };
  }
}
