/**
 * Secrets of a topology's instances (`token`, `password`: options marked
 * `secret` in their spec): never on a child's command line, where `ps`
 * shows them to every user of the machine, but in its environment; and
 * the credentials the launcher itself dials an instance with (its probes,
 * `dist status`, the dashboard's polls).
 */
import { type Instance, type OptionSpec, type RoleInfo, roleSpec } from "../config/mod.ts";
import type { Credentials } from "../wire/mod.ts";
import { type AuthOptions, credentialsOf } from "../auth/options.ts";

/** Whether `key` of `spec` stays off command lines. */
export function isSecret(spec: OptionSpec, key: string): boolean {
  return spec[key]?.secret === true;
}

/** The environment that hands an instance its secret options (`DIST_TOKEN=…`). */
export function childEnv(
  instance: Instance,
  roles: Record<string, RoleInfo>,
): Record<string, string> {
  const spec = roleSpec(roles[instance.role]);
  const env: Record<string, string> = {};
  for (const [key, def] of Object.entries(spec)) {
    const value = instance.options[key];
    if (def.secret && def.env !== undefined && typeof value === "string") env[def.env] = value;
  }
  return env;
}

/**
 * What the launcher dials `instance` with: the credentials the instance
 * itself dials with (a cluster's shared token is accepted where it is
 * sent), or the launcher's own `DIST_TOKEN`, `DIST_USER`/`DIST_PASSWORD`.
 */
export function launcherCredentials(instance: Instance | undefined): Credentials | undefined {
  try {
    return credentialsOf((instance?.options ?? {}) as AuthOptions);
  } catch {
    return undefined; // A user without a password: that instance says so when it starts.
  }
}
