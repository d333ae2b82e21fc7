/**
 * The `/metrics` endpoint (`--metrics HOST:PORT`): Prometheus' text format
 * over HTTP, GET and HEAD only. Anything else is answered (404, 405) and
 * never reaches the role; malformed HTTP, a header slower than 10 s and
 * connections past 256 are refused by the server (http_guarded.ts).
 */
import type { Registry } from "./metrics.ts";
import { type GuardedServer, serveGuarded } from "./http_guarded.ts";

/** The content type of the text exposition format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** A running metrics endpoint. */
export interface MetricsServer {
  /** The address bound (the port that port 0 picked). */
  readonly addr: { hostname: string; port: number };
  /** Stops serving (scrapes under way finish). */
  close(): Promise<void>;
}

/** Why a metrics port could not be had, in the words of the flag that chose it. */
export class MetricsBindError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MetricsBindError";
  }
}

/**
 * Serves `registry` at `http://host:port/metrics`.
 * @throws {MetricsBindError} when the address cannot be had
 */
export function serveMetrics(
  address: { host: string; port: number },
  registry: Registry,
): MetricsServer {
  let server: GuardedServer;
  try {
    server = serveGuarded(
      { hostname: address.host, port: address.port, what: "metrics" },
      (request) => answer(request, registry),
    );
  } catch (err) {
    const where = `${address.host}:${address.port}`;
    const why = err instanceof Deno.errors.AddrInUse
      ? `port ${address.port} is in use: give another, or port 0 (a free one)`
      : (err as Error).message;
    throw new MetricsBindError(`--metrics ${where}: ${why}`, { cause: err });
  }
  return {
    addr: server.addr,
    close: () => server.shutdown(),
  };
}

async function answer(request: Request, registry: Registry): Promise<Response> {
  const path = new URL(request.url).pathname;
  if (path !== "/metrics") {
    return new Response("Not found: metrics are at /metrics\n", { status: 404 });
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response("Method not allowed: GET only\n", {
      status: 405,
      headers: { allow: "GET, HEAD" },
    });
  }
  const body = await registry.scrape();
  return new Response(request.method === "HEAD" ? null : body, {
    headers: { "content-type": METRICS_CONTENT_TYPE },
  });
}
