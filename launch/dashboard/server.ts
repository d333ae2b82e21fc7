/**
 * The dashboard's HTTP side: the page and its assets (embedded, see
 * assets.ts), the cluster as JSON, one instance's `sys.stats`, and a
 * server-sent event stream that pushes every change of the
 * {@link ClusterView}. Instances are polled only while at least one event
 * stream is open (a page is looking). At most `maxClients` (32) streams are
 * open: one more takes the place of the oldest of the address holding the
 * most (a page that loses its stream reconnects by itself).
 *
 * Read-only, and for this machine by default (127.0.0.1). A request whose
 * Host is a name other than this machine's is refused (a web page elsewhere
 * must not read the cluster through DNS rebinding); the page may load
 * nothing but what this server serves (Content-Security-Policy).
 */
import type { ClusterEvent, ClusterView } from "../observe/mod.ts";
import { type Asset, ASSETS } from "./assets.ts";
import { METRICS_CONTENT_TYPE, type Registry } from "../../obs/mod.ts";
import { type GuardedServer, serveGuarded } from "../../obs/http_guarded.ts";

/** What the page shows besides the view: the launcher and the layout of the graph. */
export interface DashboardInfo {
  /** The topology file's name. */
  file: string;
  pid: number;
  started_ms: number;
  /** Each instance's start step (a column of the graph). */
  steps: Record<string, number>;
}

/** How a {@link Dashboard} serves. */
export interface DashboardOptions {
  hostname: string;
  port: number;
  view: ClusterView;
  info: DashboardInfo;
  /**
   * Most event streams open at once; one more takes the place of the oldest
   * of the address holding the most.
   */
  maxClients?: number;
  /** The launcher's metrics, served at `/metrics`. */
  metrics?: Registry;
  /** Says a failure of the server (it serves again by itself); default: the logger. */
  warn?: (message: string) => void;
}

/** Events a slow page may have queued before it is cut off (it reconnects and starts over). */
const MAX_QUEUED_EVENTS = 64;
const DEFAULT_MAX_CLIENTS = 32;
/** A comment line on an otherwise quiet stream, so a vanished page is noticed. */
const KEEPALIVE_MS = 15_000;

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; " +
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

const encoder = new TextEncoder();

/** Whether `host` (a Host header, port and all) names this machine or an IP address. */
export function allowedHost(host: string | null, listening: string): boolean {
  if (host === null) return false;
  const name = host.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (name === "localhost" || name === listening.toLowerCase()) return true;
  if (/^[\d.]+$/.test(name) || name.includes(":")) return true; // an IPv4 or IPv6 literal
  try {
    return name === Deno.hostname().toLowerCase();
  } catch {
    return false;
  }
}

/** The page of a cluster, served over HTTP. See the module comment. */
export class Dashboard {
  readonly url: string;
  #server: GuardedServer;
  #options: DashboardOptions;
  /** Each open event stream's closer and its peer's address, oldest first. */
  #streams = new Map<() => void, string>();

  /** @throws {Deno.errors.AddrInUse} (and other bind errors) when it cannot listen */
  constructor(options: DashboardOptions) {
    this.#options = options;
    // Bounded (256 connections, 10 s for a request header) and kept serving
    // when accepting fails (a flood past the file limit): see http_guarded.ts.
    this.#server = serveGuarded(
      { hostname: options.hostname, port: options.port, what: "dashboard", warn: options.warn },
      (request, peer) => this.#handle(request, peer.address),
    );
    const { hostname, port } = this.#server.addr;
    const host = hostname.includes(":") ? `[${hostname}]` : hostname;
    const shown = host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host;
    this.url = `http://${shown}:${port}/`;
  }

  /** Event streams open now. */
  get clients(): number {
    return this.#streams.size;
  }

  async #handle(request: Request, address: string): Promise<Response> {
    const url = new URL(request.url);
    if (!allowedHost(request.headers.get("host"), this.#options.hostname)) {
      return text(403, "Unexpected Host header");
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return text(405, "Read-only: GET only", { allow: "GET, HEAD" });
    }
    const path = url.pathname;
    if (path === "/events") return this.#events(address);
    if (path === "/api/cluster") return json(this.#snapshot());
    if (path === "/metrics" && this.#options.metrics !== undefined) {
      const body = this.#options.metrics.render();
      return new Response(request.method === "HEAD" ? null : body, {
        headers: { ...SECURITY_HEADERS, "content-type": METRICS_CONTENT_TYPE },
      });
    }
    if (path.startsWith("/api/stats/")) {
      let name: string;
      try {
        name = decodeURIComponent(path.slice("/api/stats/".length));
      } catch {
        return text(400, "Bad instance name");
      }
      const result = await this.#options.view.stats(name);
      if (result === undefined) return text(404, `No instance ${name} here`);
      return json({ name, ...result });
    }
    const asset = ASSETS.get(path);
    if (asset !== undefined) return serveAsset(asset, request);
    return text(404, "Not found");
  }

  /** Everything the page needs to draw the cluster from scratch. */
  #snapshot() {
    const { view, info } = this.#options;
    return {
      file: info.file,
      launcher: { pid: info.pid, started_ms: info.started_ms },
      now: Date.now(),
      steps: info.steps,
      instances: view.instances(),
      edges: view.edges,
      history: view.history(),
    };
  }

  /**
   * Ends the oldest event stream of the address holding the most, to make
   * room for one more. Refusing the newest instead let a few connections
   * that never read (cut only once the kernel's buffers fill: hours at
   * these rates) keep every page out; a page whose stream ends reconnects.
   */
  #replaceOne(): void {
    const held = new Map<string, number>();
    for (const address of this.#streams.values()) held.set(address, (held.get(address) ?? 0) + 1);
    let victim: (() => void) | undefined;
    let most = 0;
    for (const [close, address] of this.#streams) {
      const n = held.get(address)!;
      if (n > most) [victim, most] = [close, n]; // The first seen of an address is its oldest.
    }
    victim?.();
  }

  #events(address: string): Response {
    const max = this.#options.maxClients ?? DEFAULT_MAX_CLIENTS;
    if (this.#streams.size >= max) this.#replaceOne();
    const view = this.#options.view;
    let close = () => {};
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        let done = false;
        const send = (event: string, data: unknown) => {
          if (done) return;
          if ((controller.desiredSize ?? 0) <= -MAX_QUEUED_EVENTS) {
            // The page does not read: drop it rather than queue without bound.
            close();
            return;
          }
          controller.enqueue(encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
        };
        const unsubscribe = view.subscribe((e: ClusterEvent) => {
          if (e.type === "instance") send("instance", e.instance);
          else send("round", { at: e.at, instances: e.instances });
        });
        const release = view.watch();
        const keepalive = setInterval(() => {
          if (!done) controller.enqueue(encoder.encode(": keepalive\n\n"));
        }, KEEPALIVE_MS);
        close = () => {
          if (done) return;
          done = true;
          clearInterval(keepalive);
          unsubscribe();
          release();
          this.#streams.delete(close);
          try {
            controller.close();
          } catch {
            // Cancelled already.
          }
        };
        this.#streams.set(close, address);
        send("hello", this.#snapshot());
      },
      cancel: () => close(),
    }, { highWaterMark: 1 });
    return new Response(body, {
      headers: {
        ...SECURITY_HEADERS,
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
      },
    });
  }

  /** Ends every event stream and stops listening. */
  async close(): Promise<void> {
    for (const close of [...this.#streams.keys()]) close();
    await this.#server.shutdown();
  }
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body + "\n", {
    status,
    headers: { ...SECURITY_HEADERS, "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

function json(value: unknown): Response {
  return new Response(JSON.stringify(value), {
    headers: {
      ...SECURITY_HEADERS,
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
    },
  });
}

function serveAsset(asset: Asset, request: Request): Response {
  const headers = {
    ...SECURITY_HEADERS,
    "content-type": asset.type,
    "cache-control": "no-cache",
    etag: asset.etag,
  };
  if (request.headers.get("if-none-match") === asset.etag) {
    return new Response(null, { status: 304, headers });
  }
  return new Response(request.method === "HEAD" ? null : asset.body, { headers });
}
