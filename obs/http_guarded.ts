/**
 * A small HTTP/1.1 server for the read-only HTTP ports (a role's
 * `--metrics`, `dist up`'s dashboard), written on `Deno.listen` because
 * `Deno.serve` bounds neither connections nor the time a client may take
 * to send its request header: one peer opening connections that never
 * finish a header (slowloris) held them, and their descriptors, forever.
 *
 * Here:
 * - at most {@link HttpLimits.maxConnections} connections (256) are open;
 *   one more takes the place of one that is stalled — waiting on its peer
 *   for a request header or for a body it announced, or on an answer (a
 *   handler, or a write the peer does not take) for 250 ms — of the address
 *   holding the most connections, the one stalled longest. It is answered
 *   503 only when every connection is an event stream between two events
 *   or an answer younger than 250 ms;
 * - a request header must arrive whole within {@link HttpLimits.headerTimeoutMs}
 *   (10 s) of the connection's opening or of the previous answer, and be at
 *   most 32 KiB; else the connection is closed (431 for too large);
 * - every write must be taken within the same time (a peer that does not
 *   read its answer is cut off);
 * - requests carry no body (these ports are GET and HEAD only): up to
 *   64 KiB of one is read and dropped, within the same time; a larger or
 *   chunked one is answered 413 and the connection closed.
 *
 * Answers are the handler's `Response`: its body read whole and sent with
 * a Content-Length, except `text/event-stream`, sent as it comes (chunked),
 * and cancelled when the peer goes. Accept failures (out of descriptors:
 * EMFILE) are said and retried after a growing pause, so a flood never ends
 * the process and serving resumes once it lets go. Every connection is also
 * charged to the process's descriptor account (http_descriptors.ts): when
 * the descriptors for connections of every port are in use, the address
 * holding the most gives way, here or on another port, and an address at
 * its share is answered 503.
 */
import { getLogger } from "@logtape/logtape";
import { type DistError, goneBeforeAccept } from "../wire/mod.ts";
import { Connection, Cut, type Head, parseHead } from "./http_conn.ts";
import { HttpDescriptors } from "./http_descriptors.ts";

/** The bounds of {@link serveGuarded}. */
export interface HttpLimits {
  /** Connections open at once (default 256). */
  maxConnections?: number;
  /** Longest wait for a whole request header, and for a write to be taken (ms, default 10 s). */
  headerTimeoutMs?: number;
}

/** How {@link serveGuarded} serves. */
export interface GuardedOptions extends HttpLimits {
  hostname: string;
  port: number;
  /** What serves, for warnings (`metrics`, `dashboard`). */
  what: string;
  /** Says a failure (default: a warning through the logger). */
  warn?: (message: string) => void;
}

/** Who sent a request. */
export interface GuardedPeer {
  /** The peer's address (its host, without the port). */
  address: string;
}

/** What answers a request. */
export type GuardedHandler = (
  request: Request,
  peer: GuardedPeer,
) => Response | Promise<Response>;

/** A running server. */
export interface GuardedServer {
  /** The address bound (the port that port 0 picked). */
  readonly addr: Deno.NetAddr;
  /** Connections open now. */
  readonly connections: number;
  /** Stops serving: no more connections; answers under way finish (at most 2 s). */
  shutdown(): Promise<void>;
}

export const DEFAULT_MAX_CONNECTIONS = 256;
export const DEFAULT_HEADER_TIMEOUT_MS = 10_000;
/** Largest request body read (and dropped: these ports take none); larger ones are refused 413. */
const MAX_BODY_BYTES = 64 * 1024;
/** How long an answer (its handler, or its write) must have waited before it may be closed to make room. */
const STALLED_ANSWER_MS = 250;
const MIN_PAUSE_MS = 100;
const MAX_PAUSE_MS = 5000;
/** How long shutdown waits for answers under way. */
const SHUTDOWN_GRACE_MS = 2000;

const log = getLogger(["dist", "http"]);
const encoder = new TextEncoder();

/** Headers this server writes itself. */
const FRAMING = new Set(["content-length", "transfer-encoding", "connection", "keep-alive"]);
/** Methods a `Request` cannot carry (and these ports never take). */
const FORBIDDEN_METHOD = /^(CONNECT|TRACE|TRACK)$/i;

const REASONS: Record<number, string> = {
  200: "OK",
  304: "Not Modified",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  413: "Content Too Large",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

function plain(status: number, text: string): Response {
  return new Response(text + "\n", {
    status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

/**
 * Serves `handler` at `hostname:port` within the bounds of the module
 * comment.
 * @throws {Deno.errors.AddrInUse} (or another bind error) when the address cannot be had
 */
export function serveGuarded(options: GuardedOptions, handler: GuardedHandler): GuardedServer {
  const warn = options.warn ?? ((message: string) => log.warn(message));
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const timeoutMs = options.headerTimeoutMs ?? DEFAULT_HEADER_TIMEOUT_MS;
  const listener = Deno.listen({ hostname: options.hostname, port: options.port });
  const addr = listener.addr as Deno.NetAddr;
  const open = new Set<Connection>();
  const descriptors = new HttpDescriptors();
  const tasks = new Set<Promise<void>>();
  let stopped = false;
  let refusedSaid = 0;

  /**
   * Makes room for one more by closing a connection that is stalled: one
   * waiting on its peer for a header or a body, or on an answer (a handler,
   * or a write the peer does not take) for 250 ms; of the address that holds
   * the most connections, the longest stalled of them. A connection is never
   * kept just because its peer announced a body it does not send, stopped
   * reading its answers, or asks what takes long to answer: each holds a
   * slot as much as a slowloris does. Only event streams between two events
   * and answers younger than 250 ms are never closed to make room.
   * @returns false when every connection is one of those
   */
  const makeRoom = (): boolean => {
    const now = performance.now();
    const held = new Map<string, number>();
    for (const c of open) held.set(c.address, (held.get(c.address) ?? 0) + 1);
    let victim: Connection | undefined;
    let victimHeld = 0;
    for (const c of open) {
      if (c.stalledSince < 0) continue;
      // An answer under way is stalled only once it has waited a while: an
      // event stream's reader caught between two reads is not, nor is a
      // request being answered now.
      if (c.answering && now - c.stalledSince < STALLED_ANSWER_MS) continue;
      const n = held.get(c.address)!;
      if (
        victim === undefined || n > victimHeld ||
        (n === victimHeld && c.stalledSince < victim.stalledSince)
      ) {
        victim = c;
        victimHeld = n;
      }
    }
    if (victim === undefined) return false;
    victim.close();
    open.delete(victim);
    descriptors.leave(victim);
    return true;
  };

  const how = (head: Head) => ({
    head: head.method === "HEAD",
    keepAlive: head.keepAlive && !stopped,
    minor: head.minor,
  });

  const serveConnection = async (c: Connection): Promise<void> => {
    try {
      while (!stopped) {
        const bytes = await c.header(timeoutMs);
        if (bytes === null) return;
        const head = parseHead(bytes);
        if (typeof head === "number") {
          const why = head === 431 ? "Request header too large" : "Malformed request";
          await respond(c, plain(head, why), { head: false, keepAlive: false, minor: 1 });
          return;
        }
        if (head.bodyLength > MAX_BODY_BYTES) {
          const refused = plain(413, "This port takes no request bodies");
          await respond(c, refused, { ...how(head), keepAlive: false });
          return;
        }
        // A small body is read and dropped (the handlers take none), so the
        // answer is not lost to a reset when the connection closes.
        if (head.bodyLength > 0) await c.discard(head.bodyLength, timeoutMs);
        let response: Response;
        let keepAlive = true;
        if (FORBIDDEN_METHOD.test(head.method)) {
          await respond(c, plain(405, "Method not allowed"), { ...how(head), keepAlive: false });
          return;
        }
        try {
          const host = head.headers.get("host") ?? `${addr.hostname}:${addr.port}`;
          const url = head.target.startsWith("/")
            ? new URL(head.target, `http://${host.includes("/") ? "invalid" : host}`)
            : new URL(head.target);
          const request = new Request(url, { method: head.method, headers: head.headers });
          c.stalledSince = performance.now();
          c.answering = true;
          try {
            response = await handler(request, { address: c.address });
          } catch {
            response = plain(500, "Internal error");
          } finally {
            c.stalledSince = -1;
            c.answering = false;
          }
        } catch {
          // Closed after, as a malformed header is (and as nginx does after a 400: h48 P13).
          response = plain(400, "Bad request target");
          keepAlive = false;
        }
        const kept = await respond(
          c,
          response,
          keepAlive ? how(head) : { ...how(head), keepAlive: false },
        );
        if (!kept) return;
      }
    } catch (err) {
      if (err instanceof Cut && err.status !== undefined && !c.closed) {
        const answer = plain(err.status, "Request header too large");
        await respond(c, answer, { head: false, keepAlive: false, minor: 1 }).catch(() => {});
      } else if (!(err instanceof Cut)) {
        warn(`The ${options.what} server: ${String(err)}`);
      }
    } finally {
      c.close();
      open.delete(c);
      descriptors.leave(c);
    }
  };

  /** Sends `response`. @returns whether the connection stays open for another request */
  const respond = async (
    c: Connection,
    response: Response,
    how: { head: boolean; keepAlive: boolean; minor: number },
  ): Promise<boolean> => {
    const status = response.status;
    const stream = (response.headers.get("content-type") ?? "").startsWith("text/event-stream");
    const noBody = how.head || status === 204 || status === 304;
    const lines = [`HTTP/1.1 ${status} ${response.statusText || REASONS[status] || "Status"}`];
    for (const [name, value] of response.headers) {
      if (!FRAMING.has(name)) lines.push(`${name}: ${value}`);
    }
    if (stream && !noBody) {
      const chunked = how.minor === 1;
      if (chunked) lines.push("transfer-encoding: chunked");
      lines.push("connection: close", "", "");
      await c.write(encoder.encode(lines.join("\r\n")), timeoutMs);
      await streamBody(c, response.body, chunked);
      return false;
    }
    const body = noBody ? new Uint8Array(0) : new Uint8Array(await response.arrayBuffer());
    if (noBody) await response.body?.cancel().catch(() => {});
    if (!noBody) lines.push(`content-length: ${body.length}`);
    lines.push(`connection: ${how.keepAlive ? "keep-alive" : "close"}`, "", "");
    const headBytes = encoder.encode(lines.join("\r\n"));
    const out = new Uint8Array(headBytes.length + body.length);
    out.set(headBytes);
    out.set(body, headBytes.length);
    await c.write(out, timeoutMs);
    return how.keepAlive;
  };

  /** Sends a stream's chunks as they come, until it ends or the peer goes. */
  const streamBody = async (
    c: Connection,
    body: ReadableStream<Uint8Array> | null,
    chunked: boolean,
  ): Promise<void> => {
    if (body === null) return;
    const reader = body.getReader();
    let done = false;
    c.gone().then(() => {
      if (!done) reader.cancel().catch(() => {});
      c.close();
    });
    try {
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        const chunk = r.value;
        if (chunk.length === 0) continue;
        if (!chunked) {
          await c.write(chunk, timeoutMs);
          continue;
        }
        const size = encoder.encode(`${chunk.length.toString(16)}\r\n`);
        const out = new Uint8Array(size.length + chunk.length + 2);
        out.set(size);
        out.set(chunk, size.length);
        out.set([13, 10], size.length + chunk.length);
        await c.write(out, timeoutMs);
      }
      done = true;
      if (chunked) await c.write(encoder.encode("0\r\n\r\n"), timeoutMs);
    } catch (err) {
      done = true;
      reader.cancel().catch(() => {});
      throw err;
    }
  };

  const refuse = (conn: Deno.Conn, why?: DistError) => {
    const now = performance.now();
    if (now - refusedSaid > 10_000) {
      refusedSaid = now;
      warn(
        why === undefined
          ? `The ${options.what} server has ${maxConnections} connections, all busy: refusing more (503)`
          : `The ${options.what} server refuses connections (503): ${why.message}`,
      );
    }
    const text = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n" +
      "retry-after: 5\r\nconnection: close\r\n\r\n";
    conn.write(encoder.encode(text)).catch(() => {}).finally(() => {
      try {
        conn.close();
      } catch {
        // Closed already.
      }
    });
  };

  const acceptLoop = async () => {
    let pause = MIN_PAUSE_MS;
    while (!stopped) {
      // Connections closed to make room (on any port) free their descriptors once the loop turns.
      const turn = descriptors.freed();
      if (turn !== undefined) await turn;
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (stopped) return;
        if (err instanceof Deno.errors.BadResource) return; // the listener was closed
        // A client that reset before its accept is no shortage: the next one goes on at once
        // (hostile45c K-C5: 5 resets every 100 ms paused accepts up to 5 s, scrapes failed).
        if (goneBeforeAccept(err)) continue;
        warn(
          `The ${options.what} server cannot accept (${
            err instanceof Error ? err.message : String(err)
          }); accepting again in ${pause} ms`,
        );
        await new Promise((r) => setTimeout(r, pause));
        pause = Math.min(MAX_PAUSE_MS, pause * 2);
        continue;
      }
      pause = MIN_PAUSE_MS;
      if (stopped) {
        conn.close();
        return;
      }
      if (open.size >= maxConnections && !makeRoom()) {
        refuse(conn);
        continue;
      }
      const c = new Connection(conn);
      const full = descriptors.admit(c);
      if (full !== undefined) {
        refuse(conn, full);
        continue;
      }
      open.add(c);
      const task = serveConnection(c);
      tasks.add(task);
      task.finally(() => tasks.delete(task));
    }
  };
  const accepting = acceptLoop();

  return {
    addr,
    get connections() {
      return open.size;
    },
    async shutdown() {
      if (stopped) return;
      stopped = true;
      try {
        listener.close();
      } catch {
        // Closed already.
      }
      await accepting;
      for (const c of open) if (c.waitingSince >= 0) c.close();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(tasks),
        new Promise<void>((r) => timer = setTimeout(r, SHUTDOWN_GRACE_MS)),
      ]);
      clearTimeout(timer);
      for (const c of open) c.close();
      await Promise.all(tasks);
    },
  };
}
