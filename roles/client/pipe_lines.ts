/**
 * The lines of the client's line mode when stdin is a pipe or a file
 * (`dist client < ops.txt`), each bounded (h48 P7): a line longer than
 * {@link MAX_LINE_BYTES} could never be sent (the frame limit is 1 MiB by
 * default), so it is dropped as it streams, never held whole, and given as
 * one `{ tooLong }` in its place, as HAProxy's CLI and redis-cli's inline
 * protocol bound a line. Without it `dist client < /dev/zero` grew one line
 * to V8's longest string and died. Read only when asked: nothing queues.
 */

/** The longest line taken: 1 MiB, the default frame limit. */
export const MAX_LINE_BYTES = 1 << 20;

/** A line, or the number of one that was too long (1-based). */
export type PipeLine = { text: string } | { tooLong: number };

const LF = 0x0a;
const CR = 0x0d;

/** Lines of a byte stream, each at most `max` bytes. */
export class PipeLines {
  #read: (buf: Uint8Array) => Promise<number | null>;
  #max: number;
  #decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  #chunk = new Uint8Array(0);
  #partial: Uint8Array[] = [];
  #size = 0;
  #tooLong = false;
  #number = 0;
  #eof = false;
  #ended = false;
  /** The last line ended with CR: a LF right after it belongs to it (CRLF). */
  #afterCr = false;
  #wake?: () => void;
  /** Resolves with null when {@link end} is called: a read that waits is not waited for. */
  #endedRead = new Promise<null>((resolve) => this.#wake = () => resolve(null));

  /** @param read reads into a buffer (stdin's by default); null at the end */
  constructor(
    read: (buf: Uint8Array) => Promise<number | null> = (buf) => Deno.stdin.read(buf),
    max = MAX_LINE_BYTES,
  ) {
    this.#read = read;
    this.#max = max;
  }

  /** The session is over: no more lines. */
  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  /** The next line (without its line break: LF, CRLF or CR, as readline), or undefined at the end. */
  async next(): Promise<PipeLine | undefined> {
    while (!this.#ended) {
      if (this.#afterCr && this.#chunk.length > 0) {
        if (this.#chunk[0] === LF) this.#chunk = this.#chunk.subarray(1);
        this.#afterCr = false;
      }
      const at = this.#chunk.findIndex((b) => b === LF || b === CR);
      if (at >= 0) {
        this.#afterCr = this.#chunk[at] === CR;
        this.#take(this.#chunk.subarray(0, at));
        this.#chunk = this.#chunk.subarray(at + 1);
        return this.#line();
      }
      this.#take(this.#chunk);
      this.#chunk = new Uint8Array(0);
      if (this.#eof) return this.#size > 0 || this.#tooLong ? this.#line() : undefined;
      const buf = new Uint8Array(64 * 1024);
      // A stop (SIGINT, SIGTERM) while stdin sends nothing ends the session.
      const n = await Promise.race([this.#read(buf), this.#endedRead]);
      if (this.#ended) break;
      if (n === null) this.#eof = true;
      else this.#chunk = buf.subarray(0, n);
    }
    return undefined;
  }

  /** Adds bytes to the line being read, or drops them once it is too long. */
  #take(bytes: Uint8Array): void {
    if (bytes.length === 0 || this.#tooLong) return;
    if (this.#size + bytes.length > this.#max) {
      this.#tooLong = true;
      this.#partial = [];
      this.#size = 0;
      return;
    }
    this.#partial.push(bytes.slice());
    this.#size += bytes.length;
  }

  #line(): PipeLine {
    this.#number++;
    const tooLong = this.#tooLong;
    const all = new Uint8Array(this.#size);
    let off = 0;
    for (const p of this.#partial) {
      all.set(p, off);
      off += p.length;
    }
    this.#partial = [];
    this.#size = 0;
    this.#tooLong = false;
    return tooLong ? { tooLong: this.#number } : { text: this.#decoder.decode(all) };
  }
}
