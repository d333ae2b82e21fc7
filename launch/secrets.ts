/**
 * Secrets of a topology's instances (`token`, `password`: options marked
 * `secret` in their spec): never on a child's command line, where `ps`
 * shows them to every user of the machine, but in its environment; and
 * the credentials the launcher itself dials an instance with (its probes,
 * `dist status`, the dashboard's polls).
 */
import {
  checkSecretFile,
  type Instance,
  type OptionSpec,
  type RoleInfo,
  roleSpec,
} from "../config/mod.ts";
import type { Credentials } from "../wire/mod.ts";
import { type AuthOptions, checksCredentials, credentialsOf } from "../auth/options.ts";

/** Whether `key` of `spec` stays off command lines. */
export function isSecret(spec: OptionSpec, key: string): boolean {
  return spec[key]?.secret === true;
}

/**
 * The environment that hands an instance its secret options (`DIST_TOKEN=…`).
 * In a topology none of whose instances checks credentials (`secured`
 * false: no `token`, `token_file` or `users`, no `DIST_TOKEN` the children
 * inherit) the launcher's own `DIST_USER` and `DIST_PASSWORD` are not
 * handed down (set empty: unset to the child): a dialer with credentials
 * refuses a listener that does not authenticate (h46d D6), so they would
 * keep such a topology from coming up.
 */
export function childEnv(
  instance: Instance,
  roles: Record<string, RoleInfo>,
  secured = true,
): Record<string, string> {
  const spec = roleSpec(roles[instance.role]);
  const env: Record<string, string> = secured ? {} : { DIST_USER: "", DIST_PASSWORD: "" };
  for (const [key, def] of Object.entries(spec)) {
    const value = instance.options[key];
    if (def.secret && def.env !== undefined && typeof value === "string") env[def.env] = value;
  }
  return env;
}

/** Whether any of a topology's instances checks credentials when it listens (see childEnv). */
export function checksAny(instances: Iterable<Instance>): boolean {
  for (const instance of instances) {
    if (checksCredentials(instance.options as AuthOptions)) return true;
  }
  return false;
}

/**
 * What the launcher dials `instance` with: the credentials the instance
 * itself dials with (a cluster's shared token is accepted where it is
 * sent), or the launcher's own `DIST_TOKEN`, `DIST_USER`/`DIST_PASSWORD`;
 * none when the instance's listeners check none (a dialer with credentials
 * refuses a listener that does not authenticate, h46d D6: a server that
 * dials a binder with a password but takes no `--token` or `--users`).
 */
export function launcherCredentials(instance: Instance | undefined): Credentials | undefined {
  const options = (instance?.options ?? {}) as AuthOptions;
  if (!checksCredentials(options)) return undefined;
  try {
    return credentialsOf(options);
  } catch {
    return undefined; // A user without a password: that instance says so when it starts.
  }
}

/** The secrets and trust files an instance reads, and whether others may not read them either (N9). */
const SECRET_FILES = [
  ["users", "users", false],
  ["tokenFile", "token_file", true],
  ["passwordFile", "password_file", true],
  ["tlsKey", "tls_key", true],
  ["tlsCa", "tls_ca", false],
  ["tlsClientCa", "tls_client_ca", false],
] as const;

/**
 * Refuses, before anything starts, the secrets files of `instances` that
 * others could plant or read (config/owner.ts): each instance would refuse
 * its own at start, and restart into the same refusal.
 * @throws {UsageError} naming the instance, the file and the fix
 */
export function checkSecretFiles(instances: readonly Instance[]): void {
  for (const instance of instances) {
    for (const [key, name, secret] of SECRET_FILES) {
      const file = instance.options[key];
      if (typeof file !== "string") continue;
      checkSecretFile(`${instance.name}: ${name}`, file, { private: secret });
    }
  }
}
