/**
 * Helpers for tests that speak the wire protocol by hand over a plain
 * `Deno.Conn`: building frames, reading them back with a timeout, and the
 * small waits every test needs (each one bounded).
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A 4-byte big-endian length prefix. */
export function header(len: number): Uint8Array<ArrayBuffer> {
  const h = new Uint8Array(4);
  new DataView(h.buffer).setUint32(0, len);
  return h;
}

/** One frame around `payload` (a string is sent as UTF-8). */
export function frame(payload: Uint8Array | string): Uint8Array<ArrayBuffer> {
  const bytes = typeof payload === "string" ? encoder.encode(payload) : payload;
  return concat([header(bytes.length), bytes]);
}

/** One frame holding `msg` as JSON. */
export function jsonFrame(msg: unknown): Uint8Array<ArrayBuffer> {
  return frame(JSON.stringify(msg));
}

export function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** The hello a JSON dialer sends. */
export const HELLO = { op: "hello", v: 1, codec: "json", role: "raw", name: "raw" };

/** The welcome a listener answers to a JSON hello. */
export const WELCOME = { op: "welcome", v: 1, codec: "json", role: "raw", name: "raw" };

export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/** Rejects with `what timed out` unless `promise` settles within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `cond` every 5 ms; throws if it is still false after `ms`. */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** A small seeded PRNG (mulberry32), so random tests replay the same way. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Reads whole frames from a raw connection. A reset connection counts as
 * end of stream, like EOF.
 */
export class RawReader {
  readonly conn: Deno.Conn;
  #buf = new Uint8Array(0);
  #eof = false;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** The next frame's payload, or null at end of stream. */
  async frame(timeoutMs = 2000): Promise<Uint8Array | null> {
    const end = performance.now() + timeoutMs;
    while (true) {
      if (this.#buf.length >= 4) {
        const len = new DataView(this.#buf.buffer, this.#buf.byteOffset).getUint32(0);
        if (this.#buf.length >= 4 + len) {
          const payload = this.#buf.slice(4, 4 + len);
          this.#buf = this.#buf.slice(4 + len);
          return payload;
        }
      }
      if (this.#eof) return null;
      const left = end - performance.now();
      if (left <= 0) throw new Error(`No frame within ${timeoutMs} ms`);
      const chunk = new Uint8Array(64 * 1024);
      const n = await within(this.#read(chunk), left, "RawReader.frame()");
      if (n === null) this.#eof = true;
      else this.#buf = concat([this.#buf, chunk.subarray(0, n)]);
    }
  }

  /** The next frame parsed as JSON, or null at end of stream. */
  async json(timeoutMs = 2000): Promise<Record<string, unknown> | null> {
    const payload = await this.frame(timeoutMs);
    return payload === null ? null : JSON.parse(decoder.decode(payload));
  }

  /** Resolves once the peer has closed; frames still arriving are dropped. */
  async untilClosed(timeoutMs = 2000): Promise<void> {
    const end = performance.now() + timeoutMs;
    while (await this.frame(Math.max(1, end - performance.now())) !== null) {
      // Skip whatever is still in flight before the close.
    }
  }

  async #read(chunk: Uint8Array): Promise<number | null> {
    try {
      return await this.conn.read(chunk);
    } catch (err) {
      if (err instanceof Deno.errors.ConnectionReset) return null;
      throw err;
    }
  }
}

/** Sends the hello (with `extra` fields, such as `max_frame`) and checks the welcome. */
export async function rawHandshake(
  conn: Deno.Conn,
  reader: RawReader,
  extra: Record<string, unknown> = {},
): Promise<void> {
  await writeAll(conn, jsonFrame({ ...HELLO, ...extra }));
  const welcome = await reader.json();
  if (welcome?.op !== "welcome") {
    throw new Error(`Expected a welcome, got ${JSON.stringify(welcome)}`);
  }
}

/** Closes a resource that may already be closed. */
export function closeQuietly(c: { close(): void } | undefined): void {
  try {
    c?.close();
  } catch {
    // Already closed.
  }
}

/** Whether the other side closed `conn` within `ms` (EOF or reset), reading what comes. */
export async function closedWithin(conn: Deno.Conn, ms: number): Promise<boolean> {
  const buf = new Uint8Array(4096);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((r) => timer = setTimeout(() => r(false), ms));
  const closed = (async () => {
    try {
      while ((await conn.read(buf)) !== null) { /* an error frame, perhaps */ }
    } catch {
      // Reset: closed as well.
    }
    return true;
  })();
  const result = await Promise.race([closed, timeout]);
  clearTimeout(timer);
  return result;
}

/** Two ends of a fresh loopback TCP connection: the dialer's, then the listener's. */
export async function tcpPair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [a, b] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port }),
    listener.accept(),
  ]);
  listener.close();
  return [a, b];
}
