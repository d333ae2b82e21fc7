/**
 * What a server or a worker was asked and what it answered, at debug level
 * (the labs' servers printed every message they received): one line per
 * request with the caller, the method, the params and the result or the
 * error code, each cut to 200 characters. Below debug the handler is used
 * as it is, so the lines cost nothing when they are not wanted.
 */
import type { Logger } from "@logtape/logtape";
import { DistError, type RequestHandler } from "../wire/mod.ts";
import { cut } from "../wire/_log.ts";

/** JSON text of a value for a log line, cut (undefined params show as nothing). */
function shown(value: unknown): string {
  if (value === undefined) return "";
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    text = String(value);
  }
  return cut(text ?? String(value));
}

/** `handler`, logging each request and its outcome at debug when `log` wants debug lines. */
export function loggedRequests(log: Logger, handler: RequestHandler): RequestHandler {
  if (!log.isEnabledFor("debug")) return handler;
  return (method, params, peer, meta) => {
    // Health checks come every second from each balancer: not what anyone asked.
    if (method === "sys.ping") return handler(method, params, peer, meta);
    const fields = { peer: peer.remote.name, method: cut(method), params: shown(params) };
    const ok = (result: unknown) => {
      log.debug("{peer}: {method} {params} -> {result}", { ...fields, result: shown(result) });
      return result;
    };
    const failed = (err: unknown): never => {
      const e = DistError.from(err);
      log.debug("{peer}: {method} {params} -> {code}: {message}", {
        ...fields,
        code: e.code,
        message: cut(e.message),
      });
      throw err;
    };
    let result: unknown;
    try {
      result = handler(method, params, peer, meta);
    } catch (err) {
      return failed(err);
    }
    return result instanceof Promise ? result.then(ok, failed) : ok(result);
  };
}
