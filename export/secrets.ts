/**
 * The security material of an export: what an instance reads from files
 * or is given as a secret value, carried as each target carries secrets
 * (Kubernetes Secrets, Compose `secrets:`, systemd `LoadCredential=`),
 * never in the topology file, a command line or an environment.
 *
 * - The file's `token` and `password` values are taken out of the exported
 *   topology ({@link redactTopology}); each instance is given
 *   `--token-file`/`--password-file` instead.
 * - `[security] tls = "files"`, and an instance's own `tls_cert`,
 *   `tls_key`, `tls_ca`, `tls_client_ca` and `users`: the files are read at
 *   export time (a relative path from the topology file's folder, as
 *   `dist up` reads them: config/_paths.ts), and a listener's certificate must name what the target dials it
 *   at, and 127.0.0.1 (the health checks ask it there).
 * - `tls = "auto"`: signed by the topology's cluster CA, the one `dist up`
 *   keeps (launch/tls.ts: made on first use; its key never leaves this
 *   machine), a certificate per listening instance for the names the target
 *   dials it at, made anew at each export.
 *
 * Each carried file has an id (its file name where it is mounted): `ca.crt`,
 * `client-ca.crt`, `users.toml`, `token`, `password` (`token-2`… when
 * instances differ), and `NAME.crt`, `NAME.key` per instance.
 */
import { X509Certificate } from "node:crypto";
import { resolve } from "node:path";
import {
  DEFAULT_TOPOLOGY_FILE,
  type Instance,
  type Options,
  parseTopology,
  readUserFileSync,
  type RoleInfo,
  type Topology,
  toSnake,
} from "../config/mod.ts";
import { clusterCa, listens, topologyKey } from "../launch/mod.ts";
import { certNames } from "../cert/mod.ts";
import type { Findings } from "./model.ts";
import { type AuthOptions, checksCredentials } from "../auth/options.ts";

/** Values written in a topology that are secrets, and the flag that reads each from a file. */
const VALUES: ReadonlyMap<string, string> = new Map([
  ["token", "tokenFile"],
  ["password", "passwordFile"],
]);

/** Options naming files carried as secrets, and the id each is given. */
const FILES: ReadonlyMap<string, (name: string) => string> = new Map([
  ["tlsCa", () => "ca.crt"],
  ["tlsClientCa", () => "client-ca.crt"],
  ["users", () => "users.toml"],
  ["tlsCert", (name: string) => `${name}.crt`],
  ["tlsKey", (name: string) => `${name}.key`],
]);

/** Ids of one instance's own files (its certificate and key), named after it. */
const OWN = new Set(["tlsCert", "tlsKey"]);

/** The names the health checks dial an instance at, besides the target's. */
const PROBE_HOSTS = ["127.0.0.1"];

/** The files an export carries and which instance reads which, as which option. */
export class ExportSecrets {
  readonly #texts = new Map<string, string>();
  readonly #given = new Map<string, Map<string, string>>();

  /** Whether the export carries nothing. */
  get empty(): boolean {
    return this.#texts.size === 0;
  }

  /**
   * Gives `instance` the file `text` as option `key`. Instances given the same
   * text share one id; another text under a taken id is named `id-2`, `id-3`….
   */
  give(instance: string, key: string, text: string): void {
    const base = FILES.get(key)?.(instance) ?? key;
    let id = base;
    if (!OWN.has(key)) {
      const dot = base.indexOf(".");
      const [stem, ext] = dot < 0 ? [base, ""] : [base.slice(0, dot), base.slice(dot)];
      for (let n = 2; this.#texts.has(id) && this.#texts.get(id) !== text; n++) {
        id = `${stem}-${n}${ext}`;
      }
    }
    this.#texts.set(id, text);
    const mine = this.#given.get(instance) ?? new Map<string, string>();
    mine.set(key, id);
    this.#given.set(instance, mine);
  }

  /** The text of a carried file. */
  text(id: string): string {
    return this.#texts.get(id)!;
  }

  /** The ids the given instances read, sorted. */
  ids(names: readonly string[]): string[] {
    const ids = new Set(names.flatMap((n) => [...(this.#given.get(n)?.values() ?? [])]));
    return [...ids].sort();
  }

  /**
   * The options pointing `instance` at its files in `dir` (`--token-file`
   * for a token, `--tls-ca` for the CA…). With `self`, the instance's own
   * files are named after it (a StatefulSet's `$(DIST_NAME)`).
   */
  options(instance: string, dir: string, self?: string): Options {
    const out: Options = {};
    for (const [key, id] of this.#given.get(instance) ?? []) {
      const file = self !== undefined && OWN.has(key) ? self + id.slice(instance.length) : id;
      out[VALUES.get(key) ?? key] = `${dir}/${file}`;
    }
    return out;
  }

  /**
   * What a health check or a wait inside the instance's place dials with:
   * the instance's own trust and credentials, as flags of `dist client`.
   * Dialing the instance itself (`to` "self"), its credentials only when
   * its listeners check some: a dialer with credentials refuses a listener
   * that does not (h46d D6), and a server that registers with a password
   * but takes no `--users` would never be healthy. Waiting for what it
   * dials (`to` "dependency"), always: it dials them so itself.
   */
  dialFlags(
    instance: Instance,
    dir: string,
    self?: string,
    to: "self" | "dependency" = "self",
  ): string[] {
    const o = this.options(instance.name, dir, self);
    const flags: string[] = [];
    const credentials = to === "dependency" ||
      checksCredentials(instance.options as AuthOptions, () => undefined);
    for (const key of ["tlsCa", "tlsCert", "tlsKey", "tokenFile"]) {
      if (key === "tokenFile" && !credentials) continue;
      if (typeof o[key] === "string") flags.push(`--${kebab(key)}=${o[key]}`);
    }
    if (
      credentials && typeof o.passwordFile === "string" && typeof instance.options.user === "string"
    ) {
      flags.push(`--user=${instance.options.user}`, `--password-file=${o.passwordFile}`);
    }
    return flags;
  }
}

function kebab(key: string): string {
  return toSnake(key).replaceAll("_", "-");
}

/** What gathering the material needs. */
export interface GatherContext {
  topology: Topology;
  roles: Record<string, RoleInfo>;
  findings: Findings;
  /** The target, for messages. */
  target: string;
  /** The names the target's dialers reach a listening instance at. */
  dialNames: (instance: Instance) => string[];
}

/**
 * Reads (or, for `tls = "auto"`, makes) every file the export carries;
 * what cannot be read or would not work becomes a problem.
 */
export async function gatherSecrets(context: GatherContext): Promise<ExportSecrets> {
  const { topology, roles, findings } = context;
  const secrets = new ExportSecrets();
  const tls = topology.tls;
  const auto = tls?.mode === "auto" ? await autoMaterial(context) : undefined;
  // Each instance's files, then what instances share (so `NAME.crt` is never renamed).
  const shared: [Instance, string, string][] = [];
  for (const instance of topology.instances) {
    const o = instance.options;
    const listener = listens(instance, roles);
    const own = o.tlsCert !== undefined || o.tlsKey !== undefined;
    const paths = new Map<string, string>();
    for (const key of FILES.keys()) {
      if (typeof o[key] === "string") paths.set(key, o[key] as string);
    }
    if (tls?.mode === "files") {
      if (!paths.has("tlsCa")) paths.set("tlsCa", resolve(tls.ca!));
      if (listener && !own) {
        paths.set("tlsCert", resolve(tls.cert!.replaceAll("{name}", instance.name)));
        paths.set("tlsKey", resolve(tls.key!.replaceAll("{name}", instance.name)));
      }
    }
    const texts = new Map<string, string>();
    for (const [key, path] of paths) {
      const text = readFile(path, `${instance.role}.${toSnake(key)}`, { instance, findings });
      if (text !== undefined) texts.set(key, text);
    }
    if (auto !== undefined) {
      if (!texts.has("tlsCa") && !paths.has("tlsCa")) texts.set("tlsCa", auto.ca);
      if (listener && !own) {
        const pair = auto.certs.get(instance.name)!;
        texts.set("tlsCert", pair.cert);
        texts.set("tlsKey", pair.key);
      }
    }
    const cert = texts.get("tlsCert");
    if (listener && cert !== undefined) checkNames(instance, cert, context);
    for (const [key, text] of texts) {
      if (OWN.has(key)) secrets.give(instance.name, key, text);
      else shared.push([instance, key, text]);
    }
    for (const key of VALUES.keys()) {
      if (typeof o[key] === "string") shared.push([instance, key, o[key] as string]);
    }
  }
  for (const [instance, key, text] of shared) secrets.give(instance.name, key, text);
  return secrets;
}

function readFile(
  path: string,
  label: string,
  context: { instance: Instance; findings: Findings },
): string | undefined {
  try {
    // Bounded (h48 P1): a secret the export carries is at most a users file.
    return readUserFileSync(label, path, { max: 8 << 20, holds: "a secret the export carries" });
  } catch (err) {
    context.findings.problem(
      `${label}: cannot read ${path} for ${context.instance.name}, which the export carries ` +
        `as a secret: ${(err as Error).message}`,
    );
    return undefined;
  }
}

/** A listener's certificate must name every address it is dialed at. */
function checkNames(instance: Instance, pem: string, context: GatherContext): void {
  const hosts = [...new Set([...context.dialNames(instance), ...PROBE_HOSTS])];
  let missing: string[];
  try {
    const cert = new X509Certificate(pem);
    missing = hosts.filter((h) => !certNames(cert, h));
  } catch (err) {
    context.findings.problem(
      `${instance.name}'s certificate cannot be read: ${(err as Error).message}`,
    );
    return;
  }
  if (missing.length === 0) return;
  context.findings.problem(
    `${instance.name}'s certificate is not valid for ${missing.join(", ")}, where ` +
      `${context.target} dials it (the health checks at 127.0.0.1): issue one with ` +
      `dist cert issue ${instance.name} --host ${hosts.join(",")} (or use tls = "auto")`,
  );
}

/** `tls = "auto"`: the cluster CA, and a certificate per listener for the target's names. */
async function autoMaterial(
  context: GatherContext,
): Promise<{ ca: string; certs: Map<string, { cert: string; key: string }> }> {
  const { topology, roles } = context;
  const key = topology.file === DEFAULT_TOPOLOGY_FILE ? topologyKey(undefined) : topologyKey(
    topology.file,
  );
  const { ca, made } = await clusterCa(topology, key);
  if (made !== undefined) console.error(made);
  const { issueCert } = await import("../cert/mod.ts");
  const certs = new Map<string, { cert: string; key: string }>();
  for (const instance of topology.instances) {
    if (!listens(instance, roles)) continue;
    const hosts = [...new Set([...context.dialNames(instance), ...PROBE_HOSTS, "localhost"])];
    certs.set(instance.name, await issueCert(ca, { name: instance.name, hosts }));
  }
  return { ca: ca.cert, certs };
}

/** The lines of a topology that set a secret value: `token = "…"`, `password = '…'`. */
const SECRET_LINE = /^(\s*)(token|password|"token"|"password")\s*=.*$/gm;

/**
 * The topology's text without its secret values: each `token =` and
 * `password =` line made a comment saying where the value went. Checked by
 * loading it again: a value written another way (an inline table, a
 * multi-line string) is a problem, never left in.
 */
export function redactTopology(
  text: string,
  context: { topology: Topology; roles: Record<string, RoleInfo>; findings: Findings },
  where: string,
): string {
  const values = new Set<string>();
  for (const instance of context.topology.instances) {
    for (const key of VALUES.keys()) {
      if (typeof instance.options[key] === "string") values.add(instance.options[key] as string);
    }
  }
  if (values.size === 0) return text;
  const redacted = text.replace(
    SECRET_LINE,
    (_line, indent: string, key: string) =>
      `${indent}# ${key.replaceAll('"', "")}: taken out by dist export (${where})`,
  );
  let left = false;
  try {
    const again = parseTopology(redacted, { file: context.topology.file, roles: context.roles });
    left = again.instances.some((i) => [...VALUES.keys()].some((k) => i.options[k] !== undefined));
  } catch {
    left = true;
  }
  // A short value may be part of other words; one of 6 characters or more is not left in.
  left ||= [...values].some((v) => v.length >= 6 && redacted.includes(v));
  if (left) {
    context.findings.problem(
      `security: the file's token or password cannot be taken out of the export: write each ` +
        `as token = "…" or password = "…" on a line of its own`,
    );
  }
  return redacted;
}
