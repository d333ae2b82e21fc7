/**
 * A FIFO of byte records in one buffer: a slow subscriber's pending
 * deliveries, already encoded, cost their bytes and nothing else (no object
 * per delivery for the garbage collector to promote and keep). Records are
 * `[u32 length][bytes]`; when the end is reached the buffer is compacted,
 * or grown if that would leave less than a quarter of it free.
 *
 * A broker may hold hundreds of thousands of queues, most with a record or
 * two, that grow, drain and grow again. A buffer of its own for each would
 * leave a trail of dropped buffers that the collector frees only when it
 * gets to them: under a flood that garbage outweighed everything counted
 * two to one, and a forced full collection took over a second. So buffers
 * up to BLOCK_MAX bytes are blocks of 1 MiB slabs, a slab per block size,
 * handed out and taken back by the queues themselves (a slab goes once all
 * its blocks are back and another slab of its size has room), and
 * {@link queueMemory} counts the slabs: the memory queues really hold.
 */
const RECORD_HEADER = 4;
const EMPTY = new Uint8Array(0);
/** The smallest block: one small delivery with room for a second. */
const MIN_BYTES = 256;
/** The largest block; a larger buffer is an array of its own. */
const BLOCK_MAX = 64 * 1024;
const SLAB_BYTES = 1024 * 1024;
/** What an array of its own costs beyond its bytes (its objects, the allocator's header). */
const BUFFER_OVERHEAD = 256;

/** Bytes the queues of the process hold: their slabs and their own arrays. */
export const queueMemory = { bytes: 0 };

/** 1 MiB carved into blocks of one size; `free` lists the blocks not handed out. */
class Slab {
  /** One view of the whole slab: a queue indexes its block in it (no view per block). */
  readonly bytes = new Uint8Array(SLAB_BYTES);
  readonly size: number;
  readonly free: number[] = [];

  constructor(size: number) {
    this.size = size;
    for (let at = SLAB_BYTES - size; at >= 0; at -= size) this.free.push(at);
  }

  get empty(): boolean {
    return this.free.length === SLAB_BYTES / this.size;
  }
}

/** Per block size: its slabs with free blocks (the last one is used first). */
const slabs = new Map<number, Slab[]>();

/** A slab of blocks of `size` bytes with one free (a new one if none has), counted. */
function slabFor(size: number): Slab {
  let open = slabs.get(size);
  if (open === undefined) slabs.set(size, open = []);
  let slab = open[open.length - 1];
  if (slab === undefined) {
    slab = new Slab(size);
    open.push(slab);
    queueMemory.bytes += SLAB_BYTES;
  }
  return slab;
}

/** Takes a free block of `slab` and returns its offset. */
function takeBlock(slab: Slab): number {
  const at = slab.free.pop()!;
  if (slab.free.length === 0) slabs.get(slab.size)!.pop();
  return at;
}

/** Gives a block back to its slab; a slab all free goes unless it is the last. */
function giveBack(slab: Slab, at: number): void {
  const open = slabs.get(slab.size)!;
  if (slab.free.length === 0) open.push(slab);
  slab.free.push(at);
  if (slab.empty && open.length > 1) {
    open.splice(open.indexOf(slab), 1);
    queueMemory.bytes -= SLAB_BYTES;
  }
}

/**
 * Gives back every slab none of whose blocks is handed out, the last of its
 * size too (kept otherwise, for the next queue of that size): the memory
 * guard's, before anyone is cut for memory that no queue holds (a burst's
 * empty slabs, one a block size, stayed counted: 7 MiB of a 16 MiB budget).
 * @returns the bytes given back
 */
export function releaseEmptySlabs(): number {
  let freed = 0;
  for (const [size, open] of slabs) {
    const kept = open.filter((slab) => !slab.empty);
    freed += (open.length - kept.length) * SLAB_BYTES;
    if (kept.length === 0) slabs.delete(size);
    else slabs.set(size, kept);
  }
  queueMemory.bytes -= freed;
  return freed;
}

export class ByteQueue {
  /**
   * The buffer: a slab's bytes (the block at #base, #size long), or an array
   * of its own (#base 0). No object is made per buffer: under a flood a
   * queue changes buffers about once per delivery.
   */
  #buf: Uint8Array = EMPTY;
  #slab: Slab | undefined = undefined;
  #base = 0;
  #size = 0;
  /** The records, from #start to #end (from #base). */
  #start = 0;
  #end = 0;
  #count = 0;
  #bytes = 0;

  /** Records queued. */
  get length(): number {
    return this.#count;
  }

  /** Bytes of the records queued (without their length prefixes). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Bytes its buffer takes (what it counts in {@link queueMemory}; 0 while empty). */
  get capacity(): number {
    return this.#size;
  }

  /** The capacity {@link tighten} leaves: its records' bytes (in a block, its power of two). */
  get tight(): number {
    const used = this.#end - this.#start;
    if (used === 0 || used > BLOCK_MAX) return used;
    let size = MIN_BYTES;
    while (size < used) size *= 2;
    return Math.min(size, this.#size);
  }

  /** Appends a copy of `record`. */
  push(record: Uint8Array): void {
    const need = RECORD_HEADER + record.length;
    if (this.#end + need > this.#size) this.#makeRoom(need);
    // The length by hand: a DataView per buffer would be one more object per queue.
    const b = this.#buf, e = this.#base + this.#end, n = record.length;
    b[e] = n >>> 24;
    b[e + 1] = n >>> 16;
    b[e + 2] = n >>> 8;
    b[e + 3] = n;
    b.set(record, e + RECORD_HEADER);
    this.#end += need;
    this.#count++;
    this.#bytes += record.length;
  }

  /**
   * Removes the oldest record and returns it: a view valid until the next
   * push (use it at once). Undefined when empty.
   */
  shift(): Uint8Array | undefined {
    if (this.#count === 0) return undefined;
    const b = this.#buf, s = this.#base + this.#start;
    const len = ((b[s] << 24) | (b[s + 1] << 16) | (b[s + 2] << 8) | b[s + 3]) >>> 0;
    const record = b.subarray(s + RECORD_HEADER, s + RECORD_HEADER + len);
    this.#start += RECORD_HEADER + len;
    this.#count--;
    this.#bytes -= len;
    if (this.#count === 0) this.#reset();
    return record;
  }

  /**
   * Removes the oldest record without looking at it (no view made: a queue
   * that drops under a flood does so for each delivery). Returns its
   * length, or -1 when empty.
   */
  drop(): number {
    if (this.#count === 0) return -1;
    const b = this.#buf, s = this.#base + this.#start;
    const len = ((b[s] << 24) | (b[s + 1] << 16) | (b[s + 2] << 8) | b[s + 3]) >>> 0;
    this.#start += RECORD_HEADER + len;
    this.#count--;
    this.#bytes -= len;
    if (this.#count === 0) this.#reset();
    return len;
  }

  /** The first byte of the oldest record (-1: none, or an empty record). */
  first(): number {
    if (this.#count === 0) return -1;
    const b = this.#buf, s = this.#base + this.#start;
    return (b[s] | b[s + 1] | b[s + 2] | b[s + 3]) === 0 ? -1 : b[s + RECORD_HEADER];
  }

  /** Forgets every record and gives the buffer back. */
  clear(): void {
    this.#count = this.#bytes = 0;
    this.#reset();
  }

  /** Empty: the buffer goes (a drained queue costs nothing until it is needed again). */
  #reset(): void {
    this.#start = this.#end = 0;
    this.#release();
    this.#buf = EMPTY;
    this.#slab = undefined;
    this.#base = this.#size = 0;
  }

  /** Gives the buffer back: its block to its slab, or its own array uncounted. */
  #release(): void {
    if (this.#slab !== undefined) giveBack(this.#slab, this.#base);
    else if (this.#size > 0) queueMemory.bytes -= this.#size + BUFFER_OVERHEAD;
  }

  /**
   * Moves the records to a buffer of at least `n` bytes (a power of two
   * from MIN_BYTES, counted) and gives the old one back.
   */
  #moveTo(n: number, exact = false): void {
    let size = MIN_BYTES;
    while (size < n) size *= 2;
    if (exact && size > BLOCK_MAX) size = n;
    const from = this.#buf, start = this.#base + this.#start, end = this.#base + this.#end;
    let to: Uint8Array, slab: Slab | undefined, base = 0;
    if (size > BLOCK_MAX) {
      queueMemory.bytes += size + BUFFER_OVERHEAD;
      to = new Uint8Array(size);
    } else {
      slab = slabFor(size);
      base = takeBlock(slab);
      to = slab.bytes;
    }
    if (end - start <= 256) {
      for (let i = start, j = base; i < end; i++, j++) to[j] = from[i];
    } else {
      to.set(from.subarray(start, end), base);
    }
    this.#release();
    this.#buf = to;
    this.#slab = slab;
    this.#base = base;
    this.#size = size;
    this.#end -= this.#start;
    this.#start = 0;
  }

  /**
   * Compacts when that leaves a quarter of the buffer free, else moves the
   * records to a buffer of at least `used + need` bytes: O(1) per byte
   * amortised, and at most about twice the records. A block may move to a
   * block of its own size (a compaction by another name, with no garbage);
   * an array of its own doubles instead, since a new array of the same size
   * at every wrap is garbage the size of the queue each time (a full 8 MB
   * drop-oldest queue took one every few hundred deliveries: RSS 190-340
   * MiB in the stalled-subscriber bench, where 104 had been measured).
   */
  #makeRoom(need: number): void {
    const used = this.#end - this.#start;
    if ((used + need) * 4 <= this.#size * 3) {
      const base = this.#base;
      this.#buf.copyWithin(base, base + this.#start, base + this.#end);
      this.#start = 0;
      this.#end = used;
    } else if (this.#slab === undefined && used + need <= this.#size) {
      this.#moveTo(this.#size * 2);
    } else {
      this.#moveTo(used + need);
    }
  }

  /**
   * Gives back most of a buffer the records no longer need (after drops or
   * a drain): shrinks it when they fill less than a quarter of it.
   */
  fit(): void {
    const used = this.#end - this.#start;
    if (used === 0 || used * 4 >= this.#size || this.#size <= MIN_BYTES) return;
    this.#moveTo(used + (used >> 1)); // at most half the buffer it replaces
  }

  /**
   * Moves the records to a buffer of their size (a block's at most twice
   * that), when smaller than the one they are in: after the memory guard
   * dropped some to free memory, what it freed is then gone from the count
   * (fit() keeps a buffer until a quarter full: trimming 4 MB from an 8 MiB
   * one freed nothing counted, and the guard went on until the queue was
   * under 2 MiB, hostile review 40b's note).
   */
  tighten(): void {
    const tight = this.tight;
    if (tight > 0 && tight < this.#size) this.#moveTo(tight, true);
  }
}
