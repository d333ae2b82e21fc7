import type { Options } from "../config/mod.ts";
import type { ConnSettings } from "../wire/mod.ts";

/**
 * The wire settings every role takes from the common options (`--heartbeat`,
 * `--liveness`, `--max-frame`, `--write-timeout`), for `listen` and `dial`.
 */
export function connSettings(options: Options): ConnSettings {
  return {
    maxFrame: options.maxFrame as number,
    heartbeatMs: options.heartbeat as number,
    liveness: options.liveness as number,
    writeTimeoutMs: options.writeTimeout as number,
  };
}
