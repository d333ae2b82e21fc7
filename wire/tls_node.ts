/**
 * The server side of TLS, through `node:tls`: `Deno.listenTls` cannot ask
 * for a client certificate (denoland/deno#26825), and cannot cut a
 * handshake that stalls (closing its connection waits for the handshake);
 * `node:tls` under Deno does both. The socket stays Deno's (accepted by the listener's
 * `Deno.listen`, so binding stays synchronous and `setNoDelay` works); node's
 * TLSSocket runs over it through a stream adapter, and {@link NodeConn}
 * gives FramedConn the `Deno.Conn` it reads and writes.
 *
 * The listener asks for a certificate without rejecting in the handshake
 * (`rejectUnauthorized: false`): it decides itself, so that a refused
 * dialer reads a dist `UNAUTHORIZED` error saying why instead of a bare
 * reset, and the log line names the reason.
 */
import tls from "node:tls";
import { Duplex } from "node:stream";
import { X509Certificate } from "node:crypto";
import { DistError } from "./errors.ts";
import { concatBytes } from "./byte_words.ts";
import type { TlsPeer, TlsSettings } from "./tls.ts";

/** A secure context per settings object: made once, shared by its connections. */
const contexts = new WeakMap<TlsSettings, tls.SecureContext>();

function contextOf(settings: TlsSettings): tls.SecureContext {
  let context = contexts.get(settings);
  if (context === undefined) {
    context = tls.createSecureContext({
      cert: settings.cert,
      key: settings.key,
      ca: settings.clientCa,
      minVersion: "TLSv1.2",
    });
    contexts.set(settings, context);
  }
  return context;
}

/** What {@link acceptNodeTls} made of a connection. */
export interface MutualTlsResult {
  /** The connection, decrypted. */
  conn: Deno.Conn;
  /** The dialer's verified certificate; undefined when it was refused. */
  peer?: TlsPeer;
  /** Why the dialer's certificate was refused (missing, unknown CA, expired). */
  refused?: DistError;
}

/**
 * Runs the server side of a TLS handshake that asks for a client
 * certificate on an accepted TCP connection.
 * @param deadlineMs the handshake must finish within this, else the connection is closed
 * @throws the handshake's error (plain TCP, a bad alert, a timeout) once the connection is closed
 */
export function acceptNodeTls(
  tcp: Deno.TcpConn,
  settings: TlsSettings,
  deadlineMs: number,
): Promise<MutualTlsResult> {
  const mutual = settings.clientCa !== undefined;
  const seen: Seen = {};
  const gate = new ReadGate();
  const socket = new tls.TLSSocket(duplexOf(tcp, seen, gate), {
    isServer: true,
    secureContext: contextOf(settings),
    requestCert: mutual,
    rejectUnauthorized: false,
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      fail(new DistError("TIMEOUT", `TLS handshake not finished within ${deadlineMs} ms`));
    }, deadlineMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(notTls(seen) ? new Error("Not a TLS record: InvalidContentType") : err);
    };
    socket.once("error", fail);
    socket.once("close", () => fail(new Error("Connection closed during the TLS handshake")));
    socket.once("secure", () => {
      clearTimeout(timer);
      socket.removeListener("error", fail);
      socket.removeAllListeners("close");
      // FramedConn uses only read, write, closeWrite, close and the addresses.
      const conn = new NodeConn(socket, tcp, gate) as unknown as Deno.Conn;
      if (!mutual) return resolve({ conn });
      const cert = socket.getPeerCertificate(true);
      const error = verifyError(socket);
      if (cert?.raw && error === undefined) {
        resolve({ conn, peer: peerOf(cert) });
        return;
      }
      resolve({ conn, refused: refusalOf(cert, error) });
    });
  });
}

/**
 * The outcome of the handshake's check of the client's chain against the
 * client CA: undefined when it passed, else node's code. A TLSSocket made
 * by hand, as here, never sets `authorized` (node's tls.Server does, from
 * this same `verifyError()` of the socket's handle, which Deno provides);
 * where it is missing every certificate is refused (fail closed).
 */
function verifyError(socket: tls.TLSSocket): string | undefined {
  const handle = (socket as unknown as { _handle?: { verifyError?: () => unknown } })._handle;
  if (typeof handle?.verifyError !== "function") return "NO_VERIFY_RESULT";
  const error = handle.verifyError();
  if (error === undefined || error === null || error === "") return undefined;
  return typeof error === "string" ? error : String((error as { code?: string }).code ?? error);
}

function peerOf(cert: tls.PeerCertificate): TlsPeer {
  const subject = cert.subject as unknown as Record<string, string | string[]> | undefined;
  const cn = subject?.CN;
  return {
    subject: Object.entries(subject ?? {}).map(([k, v]) => `${k}=${v}`).join(", "),
    commonName: Array.isArray(cn) ? cn[0] : cn,
    fingerprint256: cert.fingerprint256,
  };
}

/**
 * Why a client certificate was refused, told by the certificate itself:
 * node's `authorizationError` says UNABLE_TO_VERIFY_LEAF_SIGNATURE for an
 * expired certificate and for one of another CA alike.
 */
function refusalOf(cert: tls.PeerCertificate | undefined, code?: string): DistError {
  if (!cert?.raw) {
    return new DistError(
      "UNAUTHORIZED",
      "A client certificate is required: give --tls-cert and --tls-key",
    );
  }
  let detail = "it is not signed by a CA of this listener's --tls-client-ca";
  try {
    const x = new X509Certificate(cert.raw);
    const now = Date.now();
    if (Date.parse(x.validTo) < now) detail = `it expired on ${x.validTo}`;
    else if (Date.parse(x.validFrom) > now) detail = `it is not valid before ${x.validFrom}`;
  } catch {
    // Unreadable: the generic reason stands.
  }
  if (code === "NO_VERIFY_RESULT") detail = "this runtime cannot verify client certificates";
  return new DistError("UNAUTHORIZED", `Client certificate refused: ${detail}`);
}

/** The first byte a dialer sent, once it has. */
interface Seen {
  first?: number;
}
/** Whether the dialer's first byte says it does not speak TLS. */
function notTls(seen: Seen): boolean {
  return seen.first !== undefined && seen.first !== TLS_HANDSHAKE;
}

/** A TLS record of the handshake (a ClientHello's) starts with this byte. */
const TLS_HANDSHAKE = 0x16;
/** A fatal TLS alert, decode_error: what a TLS listener answers to bytes that are not TLS. */
const PLAIN_ALERT = Uint8Array.of(0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32);

/**
 * Holds the TCP reads of a connection while what TLS decrypted of it waits
 * unread (NodeConn past MAX_CHUNKS). node's `socket.pause()` alone did not
 * stop them: under Deno the TLSSocket went on taking what the Duplex read,
 * so a client that wrote and never read had the process read and decrypt
 * all it sent (hostile review 36 J7: 576 MB in 10 s, a server from 63 to
 * 684 MiB, other clients' pings 1.5-4 s).
 */
class ReadGate {
  #closed = false;
  #open: (() => void) | undefined;

  get closed(): boolean {
    return this.#closed;
  }

  /** Resolves once the reads may go on. */
  opened(): Promise<void> {
    return new Promise((resolve) => this.#open = resolve);
  }

  close(): void {
    this.#closed = true;
  }

  open(): void {
    this.#closed = false;
    const open = this.#open;
    this.#open = undefined;
    open?.();
  }
}

/** A node Duplex over a Deno TCP connection, for node's TLSSocket to run on. */
function duplexOf(conn: Deno.TcpConn, seen: Seen, gate: ReadGate): Duplex {
  let reading = false;
  // One buffer per connection (an idle one waits in read with it); what is
  // read is copied out, node keeps the copy.
  const buf = new Uint8Array(READ_BYTES);
  const duplex: Duplex = new Duplex({
    read() {
      if (reading) return;
      reading = true;
      (async () => {
        try {
          while (true) {
            while (gate.closed) await gate.opened();
            const n = await conn.read(buf);
            if (n === null) {
              duplex.push(null);
              return;
            }
            seen.first ??= buf[0];
            // push() false: node's buffer is full; read() is called again once it drains.
            if (!duplex.push(buf.slice(0, n))) break;
          }
        } catch (err) {
          duplex.destroy(err as Error);
        } finally {
          reading = false;
        }
      })();
    },
    write(chunk: Uint8Array, _encoding, callback) {
      writeAll(conn, chunk).then(() => callback(), callback);
    },
    // The TLS records of one write of ours come together: one socket write.
    writev(chunks: { chunk: Uint8Array }[], callback) {
      const bytes = chunks.length === 1 ? chunks[0].chunk : concatBytes(chunks.map((c) => c.chunk));
      writeAll(conn, bytes).then(() => callback(), callback);
    },
    final(callback) {
      conn.closeWrite().then(() => callback(), () => callback());
    },
    destroy(_err, callback) {
      const close = () => {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      };
      // Not TLS (a plain dialer's hello): answer as Deno's and most TLS
      // listeners do, with an alert, which a dist dialer names ("speaks TLS").
      if (notTls(seen)) conn.write(PLAIN_ALERT).catch(() => 0).finally(close);
      else close();
      callback(null);
    },
  });
  return duplex;
}

/** A TLS record's most (16 KiB) plus its overhead. */
const READ_BYTES = 17 * 1024;

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/**
 * A node TLS socket seen as the `Deno.Conn` that FramedConn uses (read into
 * the caller's buffer, write, closeWrite, close, addresses). Reading is
 * bounded: past a few chunks node's socket is paused and the TCP reads
 * held (ReadGate) until they are taken.
 */
export class NodeConn {
  #socket: tls.TLSSocket;
  #tcp: Deno.TcpConn;
  #chunks: Uint8Array[] = [];
  #ended = false;
  #error: Error | undefined;
  #waiter: (() => void) | undefined;
  readonly #gate: ReadGate;

  constructor(socket: tls.TLSSocket, tcp: Deno.TcpConn, gate: ReadGate) {
    this.#socket = socket;
    this.#tcp = tcp;
    this.#gate = gate;
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      if (this.#chunks.length > MAX_CHUNKS) {
        socket.pause();
        gate.close();
      }
      this.#wake();
    });
    socket.on("end", () => this.#end());
    socket.on("close", () => {
      gate.open(); // the Duplex's read loop ends on its own
      this.#end();
    });
    socket.on("error", (err: Error) => {
      this.#error = err;
      this.#wake();
    });
  }

  get remoteAddr(): Deno.NetAddr {
    return this.#tcp.remoteAddr;
  }

  get localAddr(): Deno.NetAddr {
    return this.#tcp.localAddr;
  }

  #end(): void {
    this.#ended = true;
    this.#wake();
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }

  async read(buf: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error !== undefined) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#waiter = resolve);
    }
    const head = this.#chunks[0];
    const n = Math.min(head.length, buf.length);
    buf.set(head.subarray(0, n));
    if (n === head.length) this.#chunks.shift();
    else this.#chunks[0] = head.subarray(n);
    if (this.#chunks.length <= MAX_CHUNKS / 2 && this.#gate.closed) {
      this.#gate.open();
      this.#socket.resume();
    }
    return n;
  }

  write(buf: Uint8Array): Promise<number> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    // A copy: the caller reuses buf once this settles, and node may still hold it then.
    const copy = buf.slice();
    return new Promise((resolve, reject) => {
      const ok = this.#socket.write(copy, (err) => {
        if (err) reject(err);
      });
      if (ok) return resolve(buf.length);
      const drained = () => {
        this.#socket.removeListener("close", closed);
        resolve(buf.length);
      };
      const closed = () => {
        this.#socket.removeListener("drain", drained);
        reject(new Deno.errors.BrokenPipe("Connection closed"));
      };
      this.#socket.once("drain", drained);
      this.#socket.once("close", closed);
    });
  }

  closeWrite(): Promise<void> {
    this.#socket.end();
    return Promise.resolve();
  }

  /**
   * Closes now for dist (queued output of ours is dropped by FramedConn
   * anyway), but lets TLS say goodbye: node's pending records and a
   * close_notify go out, so the peer reads an end of stream rather than a
   * truncation error, within {@link CLOSE_GRACE_MS}, then the socket goes.
   */
  close(): void {
    const socket = this.#socket;
    if (socket.destroyed) return;
    if (!socket.writable) return void socket.destroy();
    const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
    socket.once("close", () => clearTimeout(timer));
    socket.end(() => socket.destroy());
  }
}

/** Chunks held before node's socket is paused. */
const MAX_CHUNKS = 16;
/** How long a closed connection may take to send its last records and close_notify (ms). */
const CLOSE_GRACE_MS = 1000;
