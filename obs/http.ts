/**
 * `Deno.serve`, kept serving. Deno's HTTP server ends its accept loop when
 * accept() fails (out of file descriptors: EMFILE) and rejects its
 * `finished` promise; unhandled, that rejection ends the process. Any peer
 * able to open a few hundred connections to an HTTP port (a role's
 * `--metrics`, `dist up`'s dashboard) could so kill the role, or the
 * launcher and with it the cluster. Here the failure is caught, said, and
 * the same address served again after a pause that grows while it keeps
 * failing (the flood holds the descriptors; once it lets go, serving
 * resumes).
 */
import { getLogger } from "@logtape/logtape";

/** A server that {@link serveKept} keeps serving. */
export interface KeptServer {
  /** The address bound (the port that port 0 picked, kept across restarts). */
  readonly addr: Deno.NetAddr;
  /** Stops serving for good (requests under way finish). */
  shutdown(): Promise<void>;
}

/** How {@link serveKept} serves. */
export interface KeptOptions {
  hostname: string;
  port: number;
  /** What serves, for the warning (`metrics`, `dashboard`). */
  what: string;
  /** Says a failure (default: a warning through the logger). */
  warn?: (message: string) => void;
  /** PEM certificate and key: serve HTTPS. */
  cert?: string;
  key?: string;
}

/** First pause before serving again, and the longest. */
const MIN_PAUSE_MS = 100;
const MAX_PAUSE_MS = 5000;
/** A server that ran this long before it failed starts over from the shortest pause. */
const STEADY_MS = 10_000;

const log = getLogger(["dist", "http"]);

/**
 * Serves `handler` at `hostname:port` like `Deno.serve`, serving again when
 * Deno's accept loop fails.
 * @throws {Deno.errors.AddrInUse} (or another bind error) when the address cannot be had at first
 */
export function serveKept(
  options: KeptOptions,
  handler: Deno.ServeHandler<Deno.NetAddr>,
): KeptServer {
  const warn = options.warn ?? ((message: string) => log.warn(message));
  let stopped = false;
  let pause = MIN_PAUSE_MS;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let port = options.port;

  const start = (): Deno.HttpServer<Deno.NetAddr> => {
    const started = performance.now();
    const tls = options.cert !== undefined && options.key !== undefined
      ? { cert: options.cert, key: options.key }
      : {};
    const server = Deno.serve({
      hostname: options.hostname,
      port,
      ...tls,
      onListen: () => {},
      onError: () => new Response("Internal error\n", { status: 500 }),
    }, handler);
    server.finished.catch(async (err) => {
      await server.shutdown().catch(() => {});
      if (stopped) return;
      if (performance.now() - started >= STEADY_MS) pause = MIN_PAUSE_MS;
      warn(`The ${options.what} server stopped (${errorText(err)}); serving again in ${pause} ms`);
      again();
    });
    return server;
  };

  const again = () => {
    timer = setTimeout(() => {
      timer = undefined;
      if (stopped) return;
      try {
        current = start();
      } catch (err) {
        warn(`The ${options.what} server cannot listen again yet (${errorText(err)})`);
        pause = Math.min(MAX_PAUSE_MS, pause * 2);
        again();
        return;
      }
      pause = Math.min(MAX_PAUSE_MS, pause * 2);
    }, pause);
  };

  let current = start();
  const addr = current.addr;
  port = addr.port;
  return {
    addr,
    async shutdown() {
      stopped = true;
      clearTimeout(timer);
      await current.shutdown().catch(() => {});
    },
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
