/**
 * Whether an instance can listen where it is told to, checked by the
 * launcher just before it starts the instance: a port another process holds
 * is then reported once, by name, instead of the instance starting, failing
 * on it and being restarted in a loop. (The launcher, not a role, binds
 * here: for an instant, then lets go, so the instance binds it next.)
 */
import {
  type Address,
  hostsClash,
  type Instance,
  LISTEN_ADDRESSES,
  listenHost,
  listensAt,
  portKeysOf,
  type RoleInfo,
} from "../config/mod.ts";

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
  for (const key of listenKeys(instance, context.roles)) {
    const listen = listensAt(key, instance.options[key]);
    let port = listen?.port;
    if (key === "port" && instance.options.port === 0) port = context.learned;
    if (port === undefined || port === 0) continue;
    const host = listen?.host ?? hostOf(instance);
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

/** Where an instance listens: its port options and its listening addresses (`metrics`). */
function listenKeys(instance: Instance, roles: Record<string, RoleInfo>): string[] {
  return [...portKeysOf(roles[instance.role], instance.options), ...LISTEN_ADDRESSES];
}

function hostOf(instance: Instance): string {
  return String(instance.options.host ?? instance.host);
}

/** An instance's listener at an address the launcher was asked to serve on. */
export interface PlanListener {
  instance: Instance;
  /** The option that gives it: "port", "metrics" … */
  key: string;
}

/**
 * The listener of `instances` that `address` (the launcher's `--dashboard`
 * or `--metrics`) would take, if any: the launcher binds first, so the
 * instance would then fail on its own port (hostile h48 P8). Port 0 (a free
 * one) clashes with nothing.
 */
export function listenerAt(
  address: Address,
  instances: Instance[],
  roles: Record<string, RoleInfo>,
): PlanListener | undefined {
  if (address.port === 0) return undefined;
  const host = listenHost(address.host);
  for (const instance of instances) {
    for (const key of listenKeys(instance, roles)) {
      const listen = listensAt(key, instance.options[key]);
      if (listen === undefined || listen.port !== address.port) continue;
      if (hostsClash(listenHost(listen.host ?? hostOf(instance)), host)) return { instance, key };
    }
  }
  return undefined;
}
