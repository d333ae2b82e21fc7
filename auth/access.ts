/**
 * A users file entry's rights as the dispatch point asks them: a request
 * that acts on a topic or a service needs that permission (publish,
 * subscribe, register, resolve), one that takes on or needs a role
 * (`worker.register`, `binder.sync`) needs the role granted, any other
 * needs its method allowed.
 */
import type { Access, Resource } from "../wire/mod.ts";
import type { Grants } from "./permissions.ts";
import { ops } from "../clients/contracts/ops.ts";

/**
 * Methods any authenticated user may call: they tell nothing but the
 * process's role and name (sys.ping, for health checks), or only undo what
 * the same connection did.
 */
export const OPEN_METHODS: ReadonlySet<string> = new Set([
  "sys.ping",
  "broker.unsubscribe",
  "binder.unwatch",
]);

/** The Access of a user's grants. */
export function userAccess(grants: Grants): Access {
  return {
    check(method: string, resource?: Resource): void {
      if (resource?.action === "role") return grants.requireRole(resource.name);
      if (resource !== undefined) return grants.require(resource.action, resource.name);
      if (!OPEN_METHODS.has(method)) grants.require("methods", canonical(method));
    },
  };
}

/**
 * The name a method is checked under: an operation's alias (`divisione`) is
 * the operation (`div`). A server's dispatch checks the operation it runs,
 * but a balancer checks what it forwards before any table has resolved the
 * alias: checked as sent, a user denied `div` got it as `divisione`.
 */
function canonical(method: string): string {
  return Object.hasOwn(ops.aliases, method) ? ops.aliases[method] : method;
}
