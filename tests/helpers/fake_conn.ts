/**
 * A stand-in for a Deno.Conn, for tests of FramedConn's own bookkeeping:
 * reads return what the test feeds, one chunk each; writes never complete
 * (a peer that takes nothing), so every byte sent stays pending.
 */
export class StalledConn {
  #chunks: Uint8Array[] = [];
  #wake: (() => void) | undefined;
  #closed = false;
  readonly remoteAddr = { transport: "tcp", hostname: "127.0.0.1", port: 1 };

  /** Queues one chunk for the next read. */
  feed(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
    this.#wake?.();
  }

  async read(buf: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#closed) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const chunk = this.#chunks.shift()!;
    buf.set(chunk.subarray(0, buf.length));
    if (chunk.length > buf.length) this.#chunks.unshift(chunk.subarray(buf.length));
    return Math.min(chunk.length, buf.length);
  }

  write(_bytes: Uint8Array): Promise<number> {
    return new Promise(() => {}); // never: the peer does not read
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  /** This object as the Deno.Conn FramedConn expects (it uses only the members above). */
  asConn(): Deno.Conn {
    return this as unknown as Deno.Conn;
  }
}
