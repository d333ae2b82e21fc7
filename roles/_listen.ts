/**
 * Listening on a port a user gave with a flag: when the port cannot be
 * had, the error names the flag that chose it (a second balancer on one
 * machine fails on `--worker-port`, a port the user may never have typed).
 */
import { formatAddress } from "../config/mod.ts";
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
 * Listens as {@link listen} does.
 * @param flag the flag that set the port (`--port`, `--worker-port`)
 * @throws {DistError} UNAVAILABLE naming `flag` (and `--host` when the address is the problem)
 */
export function listenOn(flag: string, options: ListenOptions): Listener {
  try {
    return listen(options);
  } catch (err) {
    throw explainListenError(err, flag, options.host ?? "127.0.0.1", options.port);
  }
}

/**
 * Binds as {@link bind} does (accepting starts later, with `start`).
 * @throws {DistError} UNAVAILABLE naming `flag` (and `--host` when the address is the problem)
 */
export function bindOn(
  flag: string,
  options: { host: string; port: number; tls?: TlsSettings },
): BoundPort {
  try {
    return bind(options);
  } catch (err) {
    throw explainListenError(err, flag, options.host, options.port);
  }
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
