/**
 * Relative paths in a topology file are taken from the file's folder, as
 * docker-compose and Consul read theirs (F7: they were taken from wherever
 * `dist up` ran, so `users = "users.toml"` beside the topology was another
 * file, or none, when it was started from elsewhere). A path option is one
 * whose definition says `path` (spec.ts): the users file, token and
 * password files, TLS files, the log file and the data folder; and
 * `[security]`'s `dir`, `ca`, `cert` and `key`. An absolute path, and a
 * word the option keeps (`data_dir = "auto"`), stay as written.
 */
import { isAbsolute, resolve } from "node:path";
import type { Options, OptionSpec } from "./spec.ts";
import type { TopologyTls } from "./_security.ts";

/** Where relative paths are taken from, and which. */
export interface PathBase {
  /** The topology file's folder. */
  folder: string;
  /**
   * Whether paths an instance writes (`data_dir`, `log_file`) are taken from
   * it too: `dist export` leaves them as written (they name places on the
   * target, where the instance runs), and reads only the files it carries.
   */
  written: boolean;
}

/** `value` taken from `base`'s folder when it is relative. */
function anchored(value: string, base: PathBase): string {
  return isAbsolute(value) ? value : resolve(base.folder, value);
}

/** Anchors the path options of `options` (an instance's, as `spec` defines them) in place. */
export function anchorOptions(options: Options, spec: OptionSpec, base: PathBase): void {
  for (const [key, def] of Object.entries(spec)) {
    const value = options[key];
    if (def.path === undefined || typeof value !== "string" || def.keep?.includes(value)) continue;
    if (def.path === "write" && !base.written) continue;
    options[key] = anchored(value, base);
  }
}

/** `[security]`'s files and folder, anchored. */
export function anchorTls(tls: TopologyTls, base: PathBase): TopologyTls {
  const out: TopologyTls = { ...tls };
  for (const key of ["dir", "ca", "cert", "key"] as const) {
    if (out[key] !== undefined) out[key] = anchored(out[key]!, base);
  }
  return out;
}
