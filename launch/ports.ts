/**
 * Whether an instance can listen where it is told to, checked by the
 * launcher just before it starts the instance: a port another process holds
 * is then reported once, by name, instead of the instance starting, failing
 * on it and being restarted in a loop. (The launcher, not a role, binds
 * here: for an instant, then lets go, so the instance binds it next.)
 */
import { type Instance, portKeysOf, type RoleInfo } from "../config/mod.ts";

/** A port an instance cannot listen on. */
export interface BusyPort {
  /** The option that gives it: "port", "workerPort". */
  key: string;
  host: string;
  port: number;
  /** "in use by another process", "permission denied" … */
  reason: string;
}

/**
 * The first fixed port of `instance` it could not listen on now, if any.
 *
 * @param learned the port an instance configured with port 0 got the first
 *   time (it keeps it across restarts)
 */
export function busyPort(
  instance: Instance,
  context: { roles: Record<string, RoleInfo>; learned?: number },
): BusyPort | undefined {
  const host = String(instance.options.host ?? instance.host);
  for (const key of portKeysOf(context.roles[instance.role], instance.options)) {
    let port = instance.options[key];
    if (key === "port" && port === 0 && context.learned !== undefined) port = context.learned;
    if (typeof port !== "number" || port === 0) continue;
    try {
      Deno.listen({ hostname: host, port }).close();
    } catch (error) {
      const reason = error instanceof Deno.errors.AddrInUse
        ? "in use by another process"
        : error instanceof Deno.errors.PermissionDenied
        ? "permission denied"
        : (error as Error).message;
      return { key, host, port, reason };
    }
  }
  return undefined;
}
