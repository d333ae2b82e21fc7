/**
 * The topology's `[security]` table, TLS half (issue 15):
 *
 * ```toml
 * [security]
 * tls = "auto"        # dist up makes a cluster CA and a certificate per instance
 * # dir = "pki"       # where (default: a folder of this topology in dist's state directory)
 *
 * # or existing files, {name} being each instance's name:
 * # tls = "files"
 * # ca = "pki/ca.crt"
 * # cert = "pki/{name}.crt"
 * # key = "pki/{name}.key"
 * ```
 *
 * The launcher (launch/tls.ts) turns it into every instance's `--tls-*`
 * options; an instance's own `tls_cert`, `tls_key` or `tls_ca` wins.
 */
import { keyText } from "./_quote.ts";

/** The TLS settings of a topology. */
export interface TopologyTls {
  /** `auto`: made by dist up; `files`: named by the file; `off`: as the instances say. */
  mode: "auto" | "files" | "off";
  /** auto: the folder of the CA and certificates (else the launcher's default). */
  dir?: string;
  /** files: the CA certificate dialers trust. */
  ca?: string;
  /** files: each listening instance's certificate and key, `{name}` its name. */
  cert?: string;
  key?: string;
}

const KEYS = ["tls", "dir", "ca", "cert", "key"];
const MODES = ["auto", "files", "off"];

/**
 * Reads `[security]`; problems go to `problem(key, text)`.
 * @returns the settings, or undefined when TLS is not asked for
 */
export function readSecurity(
  table: Record<string, unknown>,
  problem: (key: string | undefined, text: string) => void,
): TopologyTls | undefined {
  // Keys of the authentication half may join this table: only TLS's are read here.
  for (const key of Object.keys(table)) {
    if (!KEYS.includes(key)) {
      problem(key, `security.${keyText(key)}: unknown key (security takes ${KEYS.join(", ")})`);
    }
  }
  const text = (key: string): string | undefined => {
    const value = table[key];
    if (value === undefined) return undefined;
    if (typeof value === "string" && value.trim() !== "") return value;
    problem(key, `security.${key}: must be a file name (a non-empty string)`);
    return undefined;
  };
  const mode = table.tls ?? "off";
  if (typeof mode !== "string" || !MODES.includes(mode)) {
    problem("tls", `security.tls: ${JSON.stringify(mode)} is not one of "auto", "files", "off"`);
    return undefined;
  }
  const tls: TopologyTls = {
    mode: mode as TopologyTls["mode"],
    dir: text("dir"),
    ca: text("ca"),
    cert: text("cert"),
    key: text("key"),
  };
  if (tls.mode === "files") {
    for (const key of ["ca", "cert", "key"] as const) {
      if (tls[key] === undefined && table[key] === undefined) {
        problem("tls", `security.tls = "files" needs security.${key}`);
      }
    }
    for (const key of ["cert", "key"] as const) {
      if (tls[key] !== undefined && !tls[key]!.includes("{name}")) {
        problem(key, `security.${key}: must contain {name} (each instance has its own)`);
      }
    }
  } else {
    for (const key of ["ca", "cert", "key"] as const) {
      if (table[key] !== undefined) {
        problem(key, `security.${key}: only with tls = "files"`);
      }
    }
  }
  if (tls.mode !== "auto" && table.dir !== undefined) {
    problem("dir", `security.dir: only with tls = "auto"`);
  }
  return tls.mode === "off" ? undefined : tls;
}
