/**
 * A FIFO of byte records in one buffer: a slow subscriber's pending
 * deliveries, already encoded, cost their bytes and nothing else (no object
 * per delivery for the garbage collector to promote and keep). Records are
 * `[u32 length][bytes]`; when the end is reached the buffer is compacted,
 * or doubled if that would leave less than a quarter of it free.
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
  readonly buffer = new ArrayBuffer(SLAB_BYTES);
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

/** Where a queue's buffer comes from: a slab's block at an offset, or its own array. */
interface Buffer {
  bytes: Uint8Array;
  slab: Slab | undefined;
  at: number;
}

const NO_BUFFER: Buffer = { bytes: EMPTY, slab: undefined, at: 0 };

/** A buffer of at least `n` bytes (a power of two from MIN_BYTES), counted. */
function allocate(n: number): Buffer {
  let size = MIN_BYTES;
  while (size < n) size *= 2;
  if (size > BLOCK_MAX) {
    queueMemory.bytes += size + BUFFER_OVERHEAD;
    return { bytes: new Uint8Array(size), slab: undefined, at: 0 };
  }
  let open = slabs.get(size);
  if (open === undefined) slabs.set(size, open = []);
  let slab = open[open.length - 1];
  if (slab === undefined) {
    slab = new Slab(size);
    open.push(slab);
    queueMemory.bytes += SLAB_BYTES;
  }
  const at = slab.free.pop()!;
  if (slab.free.length === 0) open.pop();
  return { bytes: new Uint8Array(slab.buffer, at, size), slab, at };
}

/** Gives a buffer back: its block to its slab, and a slab all free goes unless it is the last. */
function release(buf: Buffer): void {
  const slab = buf.slab;
  if (slab === undefined) {
    if (buf.bytes.length > 0) queueMemory.bytes -= buf.bytes.length + BUFFER_OVERHEAD;
    return;
  }
  const open = slabs.get(slab.size)!;
  if (slab.free.length === 0) open.push(slab);
  slab.free.push(buf.at);
  if (slab.empty && open.length > 1) {
    open.splice(open.indexOf(slab), 1);
    queueMemory.bytes -= SLAB_BYTES;
  }
}

export class ByteQueue {
  #buffer: Buffer = NO_BUFFER;
  #buf: Uint8Array = EMPTY;
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

  /** Appends a copy of `record`. */
  push(record: Uint8Array): void {
    const need = RECORD_HEADER + record.length;
    if (this.#end + need > this.#buf.length) this.#makeRoom(need);
    // The length by hand: a DataView per buffer would be one more object per queue.
    const b = this.#buf, e = this.#end, n = record.length;
    b[e] = n >>> 24;
    b[e + 1] = n >>> 16;
    b[e + 2] = n >>> 8;
    b[e + 3] = n;
    this.#buf.set(record, this.#end + RECORD_HEADER);
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
    const b = this.#buf, s = this.#start;
    const len = ((b[s] << 24) | (b[s + 1] << 16) | (b[s + 2] << 8) | b[s + 3]) >>> 0;
    const record = this.#buf.subarray(
      this.#start + RECORD_HEADER,
      this.#start + RECORD_HEADER + len,
    );
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
    const b = this.#buf, s = this.#start;
    const len = ((b[s] << 24) | (b[s + 1] << 16) | (b[s + 2] << 8) | b[s + 3]) >>> 0;
    this.#start += RECORD_HEADER + len;
    this.#count--;
    this.#bytes -= len;
    if (this.#count === 0) this.#reset();
    return len;
  }

  /** Forgets every record and gives the buffer back. */
  clear(): void {
    this.#count = this.#bytes = 0;
    this.#reset();
  }

  /** Empty: the buffer goes (a drained queue costs nothing until it is needed again). */
  #reset(): void {
    this.#start = this.#end = 0;
    this.#setBuffer(NO_BUFFER);
  }

  #setBuffer(buf: Buffer): void {
    release(this.#buffer);
    this.#buffer = buf;
    this.#buf = buf.bytes;
  }

  /**
   * Compacts, or doubles, so that at least a quarter of the buffer is
   * free after: O(1) per byte amortised, and at most about twice the records.
   */
  #makeRoom(need: number): void {
    const used = this.#end - this.#start;
    if ((used + need) * 4 <= this.#buf.length * 3) {
      this.#buf.copyWithin(0, this.#start, this.#end);
    } else {
      const grown = allocate(used + need);
      grown.bytes.set(this.#buf.subarray(this.#start, this.#end));
      this.#setBuffer(grown);
    }
    this.#start = 0;
    this.#end = used;
  }

  /**
   * Gives back most of a buffer the records no longer need (after drops or
   * a drain): shrinks it when they fill less than a quarter of it.
   */
  fit(): void {
    const used = this.#end - this.#start;
    if (used === 0 || used * 4 >= this.#buf.length || this.#buf.length <= MIN_BYTES) return;
    const fitted = allocate(used + (used >> 1)); // at most half the buffer it replaces
    fitted.bytes.set(this.#buf.subarray(this.#start, this.#end));
    this.#setBuffer(fitted);
    this.#start = 0;
    this.#end = used;
  }
}
