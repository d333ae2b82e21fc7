/**
 * One connection of the guarded HTTP server (http_guarded.ts): its read
 * buffer, a request header read within a deadline, a small body dropped,
 * writes that must be taken in time; and the parsing of a request header.
 */

/** Largest request header taken. */
export const MAX_HEADER_BYTES = 32 * 1024;
const MAX_HEADERS = 100;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP\/1\.([01])$/;
const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Why a connection is cut; with a status, the peer is told first. */
export class Cut extends Error {
  constructor(message: string, readonly status?: number) {
    super(message);
  }
}

/** One accepted connection. */
export class Connection {
  readonly conn: Deno.Conn;
  #buf = new Uint8Array(4096);
  #start = 0;
  #end = 0;
  #closed = false;
  /** Since when it waits for a request header (performance.now()), or -1 while busy. */
  waitingSince = -1;
  /**
   * Since when it waits: on its peer for a request header, for the rest of a
   * body, or to take a write; or on the server's handler (performance.now());
   * -1 while an event stream waits for its next event. Past the cap, the
   * connection that has waited longest goes first (see http_guarded.ts).
   */
  stalledSince = -1;
  /**
   * Whether it waits on an answer (its handler, or its write): such a wait
   * is a stall only once it has lasted a while; set by the server around
   * its handler and by {@link write}.
   */
  answering = false;
  /** The peer's address (its host, without the port): connections are counted per address. */
  readonly address: string;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
    const remote = conn.remoteAddr as Deno.NetAddr;
    this.address = remote.hostname ?? "";
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Closed already.
    }
  }

  /**
   * The next request header's bytes (without the blank line), null at a
   * clean end between requests. A header that does not arrive whole within
   * `timeoutMs` closes the connection.
   * @throws {Cut} on a timeout, a closed peer mid-header, or a header over the limit
   */
  async header(timeoutMs: number): Promise<Uint8Array | null> {
    this.waitingSince = this.stalledSince = performance.now();
    const timer = setTimeout(() => this.close(), timeoutMs);
    try {
      let scanned = this.#start;
      for (;;) {
        const end = headerEnd(this.#buf, Math.max(this.#start, scanned - 3), this.#end);
        if (end !== undefined) {
          const head = this.#buf.slice(this.#start, end[0]);
          this.#start = end[1];
          return head;
        }
        scanned = this.#end;
        if (this.#end - this.#start > MAX_HEADER_BYTES) throw new Cut("header too large", 431);
        if (this.#end === this.#buf.length) this.#grow();
        let n: number | null;
        try {
          n = await this.conn.read(this.#buf.subarray(this.#end));
        } catch {
          n = null;
        }
        if (n === null) {
          if (this.#closed) throw new Cut("header timeout");
          if (this.#end === this.#start) return null;
          throw new Cut("closed mid-header");
        }
        this.#end += n;
      }
    } finally {
      clearTimeout(timer);
      this.waitingSince = this.stalledSince = -1;
    }
  }

  /**
   * Reads and drops the next `n` bytes (a request body), within `timeoutMs`.
   * @throws {Cut} when they do not come in time
   */
  async discard(n: number, timeoutMs: number): Promise<void> {
    this.stalledSince = performance.now();
    const timer = setTimeout(() => this.close(), timeoutMs);
    try {
      for (;;) {
        const have = Math.min(n, this.#end - this.#start);
        this.#start += have;
        n -= have;
        if (n === 0) return;
        this.#start = this.#end = 0;
        let got: number | null;
        try {
          got = await this.conn.read(this.#buf);
        } catch {
          got = null;
        }
        if (got === null) throw new Cut("closed mid-body");
        this.#end = got;
      }
    } finally {
      clearTimeout(timer);
      this.stalledSince = -1;
    }
  }

  #grow(): void {
    if (this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
      if (this.#end < this.#buf.length) return;
    }
    const bigger = new Uint8Array(Math.min(this.#buf.length * 2, MAX_HEADER_BYTES + 4096));
    bigger.set(this.#buf.subarray(0, this.#end));
    this.#buf = bigger;
  }

  /** Writes all of `bytes`, or closes the connection when the peer takes none of it in time. */
  async write(bytes: Uint8Array, timeoutMs: number): Promise<void> {
    this.stalledSince = performance.now();
    this.answering = true;
    const timer = setTimeout(() => this.close(), timeoutMs);
    try {
      let off = 0;
      while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
    } catch {
      this.close();
      throw new Cut("write failed");
    } finally {
      clearTimeout(timer);
      this.stalledSince = -1;
      this.answering = false;
    }
  }

  /** Resolves when the peer closes its side (or anything more arrives: this port takes no uploads). */
  async gone(): Promise<void> {
    const scratch = new Uint8Array(512);
    try {
      while (!this.#closed) {
        const n = await this.conn.read(scratch);
        if (n === null) return;
      }
    } catch {
      // Closed.
    }
  }
}

/**
 * Where a header ends in `buf[from, to)`: the index of its last line's end
 * and the index after the blank line, or undefined. A line may end in CRLF or
 * a bare LF (RFC 9112 2.2 lets a recipient take LF alone, as nginx and Go
 * do: a `printf 'GET /metrics HTTP/1.0\n\n' | nc` scrape waited for the
 * header timeout, hostile h48 P12).
 */
function headerEnd(buf: Uint8Array, from: number, to: number): [number, number] | undefined {
  for (let i = Math.max(0, from); i < to; i++) {
    if (buf[i] !== 10) continue;
    let j = i + 1;
    if (j < to && buf[j] === 13) j++;
    if (j < to && buf[j] === 10) return [buf[i - 1] === 13 ? i - 1 : i, j + 1];
  }
  return undefined;
}

/** A parsed request header. */
export interface Head {
  method: string;
  target: string;
  minor: number;
  headers: Headers;
  keepAlive: boolean;
  /** The body's length (Content-Length); Infinity when chunked, too large or conflicting. */
  bodyLength: number;
}

/** Parses a request header. @returns a status to answer with when it is malformed */
export function parseHead(bytes: Uint8Array): Head | number {
  let text: string;
  try {
    text = STRICT_UTF8.decode(bytes);
  } catch {
    return 400;
  }
  const lines = text.split(/\r?\n/);
  // A client may send blank lines before a request (RFC 9112 2.2).
  while (lines.length > 0 && lines[0] === "") lines.shift();
  const m = REQUEST_LINE.exec(lines[0] ?? "");
  if (m === null) return 400;
  if (lines.length - 1 > MAX_HEADERS) return 431;
  const headers = new Headers();
  let bodyLength = 0;
  let lengths = 0;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    if (colon <= 0) return 400;
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return 400;
    const value = line.slice(colon + 1).trim();
    try {
      headers.append(name, value);
    } catch {
      return 400;
    }
    const lower = name.toLowerCase();
    if (lower === "transfer-encoding") bodyLength = Infinity;
    if (lower === "content-length") {
      if (!/^\d+$/.test(value)) return 400;
      if (lengths++ > 0 && Number(value) !== bodyLength) return 400;
      bodyLength = Math.max(bodyLength, Number(value));
    }
  }
  const minor = Number(m[3]);
  const connection = (headers.get("connection") ?? "").toLowerCase();
  const keepAlive = minor === 1 ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
  return { method: m[1], target: m[2], minor, headers, keepAlive, bodyLength };
}
