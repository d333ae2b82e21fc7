/**
 * Listening on a port a user gave with a flag: when the port cannot be
 * had, the error names the flag that chose it (a second balancer on one
 * machine fails on `--worker-port`, a port the user may never have typed).
 */
import { formatAddress } from "../config/mod.ts";
import { clientSource } from "../auth/sources.ts";
import type { Registry } from "../obs/mod.ts";
import {
  bind,
  type BoundPort,
  DistError,
  listen,
  type Listener,
  type ListenOptions,
  type TlsSettings,
} from "../wire/mod.ts";

/**
 * Listens as {@link listen} does, a connection's source (for the bounds by
 * source of wire/sources.ts) being auth's: its own user, else its address.
 * @param flag the flag that set the port (`--port`, `--worker-port`)
 * @throws {DistError} UNAVAILABLE naming `flag` (and `--host` when the address is the problem)
 */
export function listenOn(flag: string, options: ListenOptions): Listener {
  try {
    return listen({ source: clientSource, ...options });
  } catch (err) {
    throw explainListenError(err, flag, options.host ?? "127.0.0.1", options.port);
  }
}

/**
 * Binds as {@link bind} does (accepting starts later, with `start`), with
 * auth's sources as {@link listenOn}.
 * @throws {DistError} UNAVAILABLE naming `flag` (and `--host` when the address is the problem)
 */
export function bindOn(
  flag: string,
  options: { host: string; port: number; tls?: TlsSettings },
): BoundPort {
  let port: BoundPort;
  try {
    port = bind(options);
  } catch (err) {
    throw explainListenError(err, flag, options.host, options.port);
  }
  return { ...port, start: (o) => port.start({ source: clientSource, ...o }) };
}

/** The error of a failed listen, said in terms of the flags that chose the address. */
export function explainListenError(
  err: unknown,
  flag: string,
  host: string,
  port: number,
): unknown {
  if (!(err instanceof DistError)) return err;
  const where = formatAddress({ host, port });
  const cause = err.cause;
  let hint: string | undefined;
  if (cause instanceof Deno.errors.AddrInUse) {
    hint = `${flag} ${port} is in use: give another, or ${flag} 0 (a free one)`;
  } else if (cause instanceof Deno.errors.AddrNotAvailable) {
    hint = `--host ${host} is not an address of this machine: give one it has (127.0.0.1, 0.0.0.0)`;
  } else if (cause instanceof Deno.errors.PermissionDenied && port > 0 && port < 1024) {
    hint = `${flag} ${port} needs privileges (ports below 1024): give a port above 1023`;
  }
  if (hint === undefined) return err;
  return new DistError("UNAVAILABLE", `Cannot listen on ${where}: ${hint}`, { cause: err });
}

/**
 * The metrics of a port's bounds on connections (`dist_connections_refused_total`,
 * `dist_connections_closed_for_room_total`), read from `listener()` at scrape time.
 */
export function connectionMetrics(registry: Registry, listener: () => Listener | undefined): void {
  const stats = () => listener()?.connectionStats();
  registry.read(
    "counter",
    "dist_connections_refused_total",
    "Connections refused at accept or hello, by bound: limit (--max-connections, every source " +
      "within its share), source (its source held --max-connections-per-source, or its share while " +
      "full) or descriptors (the process's, every port's: ulimit -n less a reserve)",
    () => {
      const s = stats();
      return s === undefined ? [] : [
        [{ bound: "limit" }, s.refused_full],
        [{ bound: "source" }, s.refused_source],
        [{ bound: "descriptors" }, s.descriptors.refused],
      ];
    },
  );
  registry.read(
    "counter",
    "dist_connections_accepted_total",
    "Connections taken and read (past every bound, a paced source's turn included): with " +
      "dist_connections_refused_total, what the port took and turned away",
    () => {
      const s = stats();
      return s === undefined ? [] : [[{}, s.accepted]];
    },
  );
  registry.read(
    "counter",
    "dist_connections_closed_for_room_total",
    "Connections closed to make room for a new one at --max-connections, by why: no_hello " +
      "(none yet), source (past it, of a source holding more than its share) or descriptors " +
      "(past it, of a source holding more than its share of the process's descriptors)",
    () => {
      const s = stats();
      return s === undefined ? [] : [
        [{ why: "no_hello" }, s.closed_no_hello],
        [{ why: "source" }, s.closed_source],
        [{ why: "descriptors" }, s.descriptors.closed],
      ];
    },
  );
}
