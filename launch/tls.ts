/**
 * A topology's `[security] tls` made real (config/_security.ts reads it):
 *
 * - {@link applyTls}: every instance gets `--tls-ca`, and every instance
 *   that listens `--tls-cert`/`--tls-key` (its own, where it set none), as
 *   absolute paths: `dist up` passes them on command lines, `dist status`
 *   and the dashboard dial with the CA;
 * - {@link ensureTlsFiles} (`dist up` only, `tls = "auto"`): on first run
 *   a cluster CA, then a certificate per listening instance for the
 *   addresses it is dialed at; kept for the next runs, made again when an
 *   instance's addresses change or its certificate nears its end;
 * - {@link launcherTls}: what the launcher's own dials trust.
 *
 * Dialers do not present certificates here (mutual TLS is by flags only):
 * a dialer with one dials through `Deno.connectTls`, which keeps Nagle on.
 */
import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import { join, resolve } from "node:path";
import {
  type Instance,
  KEY_RULE,
  PEM_RULE,
  readUserFile,
  type RoleInfo,
  type Topology,
  UsageError,
} from "../config/mod.ts";
import { type CertAndKey, certNames, readTlsFiles } from "../cert/mod.ts";
import type { TlsSettings } from "../wire/mod.ts";
import { listens } from "./plan.ts";
import { dirProblem, ownStateDir } from "./state.ts";

/** Host values that mean "every address": not a name a dialer uses. */
const WILDCARDS = new Set(["0.0.0.0", "::", "[::]", ""]);
/** A certificate this close to its end is made again (ms). */
const RENEW_BEFORE_MS = 30 * 86_400_000;

/** The folder of a `tls = "auto"` topology's CA and certificates. */
export function autoTlsDir(topology: Topology, key: string): string {
  if (topology.tls?.dir !== undefined) return resolve(topology.tls.dir);
  const hash = createHash("sha256").update(key).digest("hex").slice(0, 16);
  return join(ownStateDir(), `tls-${hash}`);
}

/**
 * Where `tls = "auto"` keeps an instance's certificate and key: in the
 * folder's `instances/`, apart from the CA's `ca.crt` and `ca.key`, so no
 * instance name (`ca`) can be the CA's file.
 */
function instanceFiles(dir: string, name: string): { cert: string; key: string } {
  return {
    cert: join(dir, "instances", `${name}.crt`),
    key: join(dir, "instances", `${name}.key`),
  };
}

/**
 * Sets every instance's `--tls-*` options from `[security] tls` (nothing
 * without it). An option the instance set itself stays.
 * @param key the topology's state key (launch/state.ts topologyKey)
 */
export function applyTls(topology: Topology, roles: Record<string, RoleInfo>, key: string): void {
  const tls = topology.tls;
  if (tls === undefined) return;
  const dir = tls.mode === "auto" ? autoTlsDir(topology, key) : undefined;
  const ca = dir !== undefined ? join(dir, "ca.crt") : resolve(tls.ca!);
  for (const instance of topology.instances) {
    const o = instance.options;
    o.tlsCa ??= ca;
    if (!listens(instance, roles) || o.tlsCert !== undefined || o.tlsKey !== undefined) continue;
    const files = dir !== undefined ? instanceFiles(dir, instance.name) : {
      cert: resolve(tls.cert!.replaceAll("{name}", instance.name)),
      key: resolve(tls.key!.replaceAll("{name}", instance.name)),
    };
    if (files.cert === ca) {
      // `ca = "pki/ca.crt"`, `cert = "pki/{name}.crt"` and an instance named ca.
      throw new UsageError(
        `[security] tls: ${instance.name}'s certificate would be the CA's ${ca}: rename the instance or change cert`,
      );
    }
    o.tlsCert = files.cert;
    o.tlsKey = files.key;
  }
}

/** The names and addresses dialers reach `instance` at: its certificate's. */
export function hostsOf(instance: Instance): string[] {
  const hosts = [instance.host];
  const listen = instance.options.host;
  if (typeof listen === "string" && !WILDCARDS.has(listen)) hosts.push(listen);
  const advertise = instance.options.advertise;
  if (typeof advertise === "string" && advertise !== "") {
    hosts.push(advertise.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1"));
  }
  // The launcher, dist status and local dialers reach local instances so.
  hosts.push("127.0.0.1", "localhost");
  return [...new Set(hosts.filter((h) => !WILDCARDS.has(h)))];
}

/**
 * `tls = "auto"`: makes what is missing in the topology's folder (the CA
 * on first run; each listening instance's certificate when missing, for
 * other addresses, or within 30 days of its end).
 * @returns the lines worth telling the user (what was made)
 */
export async function ensureTlsFiles(
  topology: Topology,
  roles: Record<string, RoleInfo>,
  key: string,
): Promise<string[]> {
  if (topology.tls?.mode !== "auto") return [];
  const { ca, dir, made: madeCa } = await clusterCa(topology, key);
  const said = madeCa === undefined ? [] : [madeCa];
  const { issueCert } = await import("../cert/mod.ts");
  const made: string[] = [];
  await Deno.mkdir(join(dir, "instances"), { recursive: true, mode: 0o700 });
  trustedDir(join(dir, "instances"));
  for (const instance of topology.instances) {
    if (!listens(instance, roles)) continue;
    const files = instanceFiles(dir, instance.name);
    // Only the files this folder holds: an instance given its own keeps them.
    if (instance.options.tlsCert !== files.cert) continue;
    const hosts = hostsOf(instance);
    const pair = await readPair(files);
    if (pair !== undefined && current(pair.cert, hosts, ca.cert) && ownKey(pair)) continue;
    await writePair(files, await issueCert(ca, { name: instance.name, hosts }));
    made.push(instance.name);
  }
  if (made.length > 0) said.push(`Made TLS certificates for ${made.join(", ")}`);
  return said;
}

/**
 * The cluster CA of a `tls = "auto"` topology (`dist up` and `dist export`
 * sign with it), made on first use and when it nears its end.
 * @returns the CA, its folder, and what to tell the user when it was made
 */
export async function clusterCa(
  topology: Topology,
  key: string,
): Promise<{ ca: CertAndKey; dir: string; made?: string }> {
  const dir = autoTlsDir(topology, key);
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  trustedDir(dir);
  const caFiles = { cert: join(dir, "ca.crt"), key: join(dir, "ca.key") };
  const ca = await readPair(caFiles);
  if (ca !== undefined) {
    const problem = notACa(ca);
    if (problem !== undefined) {
      throw new UsageError(
        `${caFiles.cert} ${problem}: dist up signs with no other; remove ${caFiles.cert} and ${caFiles.key} to make a new CA (dialers then trust the new ca.crt)`,
      );
    }
    if (current(ca.cert, [])) return { ca, dir };
  }
  const { makeCa } = await import("../cert/mod.ts");
  const made = await makeCa({ name: `dist CA (${topology.file})`.slice(0, 64) });
  await writePair(caFiles, made);
  return {
    ca: made,
    dir,
    made: `Made a cluster CA in ${dir} (dialers outside dist up trust ${caFiles.cert})`,
  };
}

/**
 * Refuses a TLS folder another user made or others may write, as the state
 * directory is: it could hold their CA, which dist up signed with, or a link
 * where a key is written, which dist up wrote through (hostile46c F7).
 * @throws {UsageError} naming what is wrong
 */
function trustedDir(dir: string): void {
  const problem = dirProblem(dir);
  if (problem !== undefined) {
    throw new UsageError(
      `tls = "auto" keeps no keys where others may plant them: ${problem}; give a folder of your own`,
    );
  }
}

/** Why a pair cannot sign certificates (not a CA, or a key not its own), or undefined. */
function notACa(pair: CertAndKey): string | undefined {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pair.cert);
  } catch {
    return "is not a certificate";
  }
  if (!cert.ca) return "is not a CA certificate (basicConstraints CA:FALSE)";
  try {
    if (cert.checkPrivateKey(createPrivateKey(pair.key))) return undefined;
  } catch {
    // Not a key: said below.
  }
  return "does not match its key ca.key";
}

/**
 * A pair as kept, or undefined when there is none yet: no certificate, or an
 * empty one beside its key (what a full disk or a kill left between the two
 * plain writes of an older dist (h47 Q24): nobody can have been given it).
 */
async function readPair(files: { cert: string; key: string }) {
  try {
    // Bounded (h48 P1): the state directory's files are checked, not their size.
    const cert = await readUserFile("certificate", files.cert, PEM_RULE);
    if (cert.trim() === "") return undefined;
    return { cert, key: await readUserFile("key", files.key, { ...KEY_RULE, secret: undefined }) };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/**
 * Writes a pair as one (h47 Q24): both to `.new` names beside them, then the
 * old certificate goes, the key is renamed, the certificate last. A pair
 * counts only once its certificate exists (readPair), so a full disk or a
 * kill at any step leaves the old pair, or none (made again at the next
 * run), never a key beside a certificate that is not its own.
 */
async function writePair(
  files: { cert: string; key: string },
  pair: { cert: string; key: string },
) {
  const temp = { cert: `${files.cert}.new`, key: `${files.key}.new` };
  try {
    await writeNew(temp.key, pair.key, 0o600);
    await writeNew(temp.cert, pair.cert, 0o644);
  } catch (err) {
    await removeIfThere(temp.key);
    await removeIfThere(temp.cert);
    throw err;
  }
  await removeIfThere(files.cert);
  await Deno.rename(temp.key, files.key);
  await Deno.rename(temp.cert, files.cert);
}

/** Writes a file that does not exist (a left-over one goes first: no write through a link). */
async function writeNew(path: string, text: string, mode: number): Promise<void> {
  await removeIfThere(path);
  await Deno.writeTextFile(path, text, { mode, createNew: true });
  await Deno.chmod(path, mode); // the umask may have taken bits
}

async function removeIfThere(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** Whether a pair's key is its certificate's (one torn by an older dist may not be). */
function ownKey(pair: CertAndKey): boolean {
  try {
    return new X509Certificate(pair.cert).checkPrivateKey(createPrivateKey(pair.key));
  } catch {
    return false;
  }
}

/** Whether a certificate is valid for a while yet, for every host, and signed by `caPem`. */
function current(pem: string, hosts: string[], caPem?: string): boolean {
  try {
    const cert = new X509Certificate(pem);
    if (Date.parse(cert.validTo) - Date.now() < RENEW_BEFORE_MS) return false;
    if (caPem !== undefined && !cert.verify(new X509Certificate(caPem).publicKey)) return false;
    // Not checkHost: in Deno it also takes the common name, the instance's own.
    return hosts.every((h) => certNames(cert, h));
  } catch {
    return false;
  }
}

/**
 * What the launcher trusts when it dials `instance` (probes, dist status,
 * the dashboard): the instance's own `--tls-ca`. Undefined when it has
 * none, or the file cannot be used yet (dist status before any dist up).
 */
export function launcherTls(instance: Instance | undefined): TlsSettings | undefined {
  const ca = instance?.options.tlsCa;
  if (typeof ca !== "string") return undefined;
  try {
    return readTlsFiles({ tlsCa: ca });
  } catch {
    return undefined;
  }
}
