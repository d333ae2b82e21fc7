/**
 * A FIFO of byte records in one buffer: a slow subscriber's pending
 * deliveries, already encoded, cost their bytes and nothing else (no object
 * per delivery for the garbage collector to promote and keep). Records are
 * `[u32 length][bytes]`; when the end is reached the buffer is compacted,
 * or doubled if that would leave less than half of it free.
 */
const RECORD_HEADER = 4;
const EMPTY = new Uint8Array(0);
/** A drained queue keeps at most this much buffer. */
const KEEP_BYTES = 64 * 1024;

export class ByteQueue {
  #buf: Uint8Array = EMPTY;
  #view = new DataView(EMPTY.buffer);
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
    this.#view.setUint32(this.#end, record.length);
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
    const len = this.#view.getUint32(this.#start);
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

  /** Forgets every record (and a large buffer). */
  clear(): void {
    this.#count = this.#bytes = 0;
    this.#reset();
  }

  #reset(): void {
    this.#start = this.#end = 0;
    if (this.#buf.length > KEEP_BYTES) {
      this.#buf = EMPTY;
      this.#view = new DataView(EMPTY.buffer);
    }
  }

  /** Compacts or grows so that at least half the buffer is free after: O(1) per byte amortised. */
  #makeRoom(need: number): void {
    const used = this.#end - this.#start;
    if ((used + need) * 2 <= this.#buf.length) {
      this.#buf.copyWithin(0, this.#start, this.#end);
    } else {
      const grown = new Uint8Array(Math.max((used + need) * 2, 4096));
      grown.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = grown;
      this.#view = new DataView(grown.buffer);
    }
    this.#start = 0;
    this.#end = used;
  }
}
