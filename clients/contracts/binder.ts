/**
 * The binder's methods for clients and servers (`binder.register`,
 * `binder.lookup` …) and its `binder.changed` event. Replication between
 * binders is the binder's own (roles/binder/peer_contract.ts).
 */
import { describe, DistError } from "../../wire/errors.ts";
import { jsonSize } from "../../wire/json_value.ts";
import {
  arrayOf,
  bool,
  int,
  literal,
  obj,
  type ObjectOptions,
  opt,
  type Parse,
  str,
} from "../../wire/check.ts";
import { type Contract, type Event, event, type Method, method } from "../../wire/contract.ts";
import type { Resource } from "../../wire/credentials.ts";

/** A service name: letters, digits, ".", "_", "-", up to 128 characters. */
export const SERVICE_NAME = /^[A-Za-z0-9][\w.-]{0,127}$/;
const HOST = /^(?:[\w.-]{1,253}|[0-9A-Fa-f:.]{2,45})$/;
/** Shortest and longest lease a registration may ask for (ms). */
export const MIN_TTL_MS = 100;
/** Longest lease (ms). */
export const MAX_TTL_MS = 3_600_000;
/** Largest `meta`, as JSON. */
export const MAX_META_BYTES = 4096;
/** Most instances in one `binder.list` answer (fewer when they would not fit a frame). */
export const MAX_LIST = 1000;

/** An instance of a service, as binders hand it out. */
export interface Instance {
  /** `service@host:port`. */
  id: string;
  /** The service it is an instance of. */
  service: string;
  /** Where to dial it. */
  host: string;
  /** Where to dial it. */
  port: number;
  /** What the server registered with it. */
  meta?: Record<string, unknown>;
  /**
   * In `binder.watch` lists and `binder.changed`: who registered it on the
   * binder that sends the list, as an opaque tag (`r1`, `r2`, …) the same
   * for every instance one client (its user, else its address) holds there;
   * left out when that binder does not know (an instance replicated from a
   * peer, or registered before a restart). A balancer tries the instances
   * of each registrant in turn.
   */
  registrant?: string;
}

/** `binder.register` params. */
export interface Registration {
  /** The service to register under. */
  service: string;
  /** The address clients should dial. */
  host: string;
  /** The port clients should dial. */
  port: number;
  /** The lease (ms); the binder's `--ttl` when left out. */
  ttl_ms?: number;
  /** At most MAX_META_BYTES of JSON, handed out with the instance. */
  meta?: Record<string, unknown>;
}

/** A lease: renew it with `binder.renew {id}` within `ttl_ms`. */
export interface Lease {
  /** The instance's id. */
  id: string;
  /** The lease (ms). */
  ttl_ms: number;
}

/** What `binder.report_down` answers. */
export interface ReportAnswer {
  /** The instance reported. */
  id: string;
  /** The binder found it answering. */
  alive: boolean;
  /** It is no longer registered. */
  removed: boolean;
}

/** A page of `binder.list`: pass `next` as `after` for the next page. */
export interface ListPage {
  /** This page's instances. */
  instances: Instance[];
  /** Where the next page starts, when there is one. */
  next?: string;
}

/** A service's live instances (`binder.watch`'s answer, `binder.changed`). */
export interface InstanceList {
  /** The service. */
  service: string;
  /** Its live instances. */
  instances: Instance[];
}

function bad(message: string): DistError {
  return new DistError("BAD_REQUEST", message);
}

/** A service name. */
export const serviceName: Parse<string> = (v): string => {
  if (typeof v !== "string" || !SERVICE_NAME.test(v)) {
    throw bad(
      `"service" must be a name of letters, digits, ".", "_", "-" (up to 128), got ${describe(v)}`,
    );
  }
  return v;
};

/** An instance id as `binder.register` returns it: a non-empty string of sane length. */
export const instanceId: Parse<string> = (v, field = "id"): string => {
  if (typeof v !== "string" || v.length === 0 || v.length > 512) {
    throw bad(
      `"${field}" must be an instance id as returned by binder.register, got ${describe(v)}`,
    );
  }
  return v;
};

/** A host name or IP address. */
export const hostName: Parse<string> = (v): string => {
  if (typeof v !== "string" || !HOST.test(v)) {
    throw bad(`"host" must be a host name or IP address, got ${describe(v)}`);
  }
  return v;
};

/**
 * The size of `meta` as JSON text (JSON.stringify's length), measured by a
 * walk that stops past MAX_META_BYTES (never JSON.stringify: a binary member would be
 * written `{"0":…}`, 11 times its size, before any check).
 * @throws {DistError} BAD_REQUEST when it is not meta
 */
export function metaSize(v: unknown): number {
  if (ArrayBuffer.isView(v) || v instanceof Date) {
    throw bad(`"meta" must be an object, got ${v instanceof Date ? "a date" : "binary"}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw bad(`"meta" must be an object, got ${describe(v)}`);
  }
  let size: number;
  try {
    size = jsonSize(v, { limit: MAX_META_BYTES, exact: true });
  } catch {
    throw bad(`"meta" must be plain JSON`);
  }
  if (size > MAX_META_BYTES) {
    throw bad(`"meta" is more than ${MAX_META_BYTES} bytes of JSON`);
  }
  return size;
}

const meta: Parse<Record<string, unknown>> = (v) => (metaSize(v), v as Record<string, unknown>);
const port = int(1, 65535);
const ttl = int(1, MAX_TTL_MS);

/** An instance. */
export const instance: Parse<Instance> = obj({
  id: instanceId,
  service: serviceName,
  host: hostName,
  port,
  meta: opt(meta),
});
const instances = arrayOf(instance, 100_000);

/** Params of binder methods: an object, or nothing (as `{}`). */
function params(name: string): ObjectOptions {
  return { omittable: true, notObject: () => `${name} takes an object of parameters` };
}

/** `binder.register` params. */
export const registration: Parse<Registration> = obj({
  service: serviceName,
  host: hostName,
  port,
  ttl_ms: opt(int(MIN_TTL_MS, MAX_TTL_MS)),
  meta: opt(meta),
}, params("binder.register"));
const byService = (name: string) => obj({ service: serviceName }, params(name));
const byId = (name: string) => obj({ id: instanceId }, params(name));

/** The service of an instance id (`service@host:port`), for permissions. */
export function serviceOfId(id: string): string {
  const at = id.lastIndexOf("@");
  return at <= 0 ? id : id.slice(0, at);
}
const resolves = (p: { service: string }): Resource => ({ action: "resolve", name: p.service });
const registers = (p: { id: string }): Resource => ({
  action: "register",
  name: serviceOfId(p.id),
});
const lease: Parse<Lease> = obj({ id: instanceId, ttl_ms: ttl });

/** The binder's methods for clients and servers. */
export interface BinderContract extends Contract {
  /** The service's name. */
  readonly service: "binder";
  /** Its methods, by short name. */
  readonly methods: {
    /** The next live instance of a service, cyclically. @throws NOT_FOUND when it has none */
    readonly lookup: Method<"binder.lookup", { service: string }, Instance>;
    /** Registers an instance (again: a new lease). @throws OVERLOADED when the binder is full */
    readonly register: Method<"binder.register", Registration, Lease>;
    /** Renews a lease. @throws NOT_FOUND when the binder has forgotten it: register again */
    readonly renew: Method<"binder.renew", { id: string }, Lease>;
    /** Removes an instance now. @throws NOT_FOUND */
    readonly deregister: Method<"binder.deregister", { id: string }, { id: string; removed: true }>;
    /** Live instances, of one service or all, a page at a time. */
    readonly list: Method<
      "binder.list",
      { service?: string; after?: string; limit?: number },
      ListPage
    >;
    /** The binder checks the instance and removes it if dead. @throws NOT_FOUND, OVERLOADED */
    readonly report_down: Method<"binder.report_down", { id: string }, ReportAnswer>;
    /**
     * The service's instances now, then `binder.changed` at every change.
     * @throws FRAME_TOO_LARGE when the list does not fit a frame; OVERLOADED past the watches
     * a connection may hold
     */
    readonly watch: Method<"binder.watch", { service: string }, InstanceList>;
    /** Stops a watch. */
    readonly unwatch: Method<
      "binder.unwatch",
      { service: string },
      { service: string; watching: false }
    >;
  };
  /** What it sends unasked. */
  readonly events: {
    /** A watched service's instances changed: the whole list. */
    readonly changed: Event<"binder.changed", InstanceList>;
  };
}

const instanceList: Parse<InstanceList> = obj({ service: serviceName, instances });

/** The binder's methods for clients and servers, and its event. */
export const binder: BinderContract = {
  service: "binder",
  prefix: "binder.",
  methods: {
    lookup: method("binder.lookup", {
      params: byService("binder.lookup"),
      resource: resolves,
      result: instance,
      errors: ["BAD_REQUEST", "NOT_FOUND"],
    }),
    register: method("binder.register", {
      params: registration,
      resource: (p) => ({ action: "register", name: p.service }),
      result: lease,
      errors: ["BAD_REQUEST", "OVERLOADED"],
    }),
    renew: method("binder.renew", {
      params: byId("binder.renew"),
      resource: registers,
      result: lease,
      errors: ["BAD_REQUEST", "NOT_FOUND"],
    }),
    deregister: method("binder.deregister", {
      params: byId("binder.deregister"),
      resource: registers,
      result: obj({ id: instanceId, removed: literal(true) }),
      errors: ["BAD_REQUEST", "NOT_FOUND"],
    }),
    list: method("binder.list", {
      params: obj({
        service: opt(serviceName),
        after: opt((v: unknown) => instanceId(v, "after")),
        limit: opt(int(1, MAX_LIST)),
      }, params("binder.list")),
      // Every service's instances when none is named: only `resolve = ["*"]` covers that.
      resource: (p) => ({ action: "resolve", name: p.service ?? "*" }),
      result: obj({ instances, next: opt(str) }),
      errors: ["BAD_REQUEST"],
    }),
    report_down: method("binder.report_down", {
      params: byId("binder.report_down"),
      resource: (p) => ({ action: "resolve", name: serviceOfId(p.id) }),
      result: obj({ id: instanceId, alive: bool, removed: bool }),
      errors: ["BAD_REQUEST", "NOT_FOUND", "OVERLOADED"],
    }),
    watch: method("binder.watch", {
      params: byService("binder.watch"),
      resource: resolves,
      result: instanceList,
      errors: ["BAD_REQUEST", "FRAME_TOO_LARGE", "OVERLOADED"],
    }),
    unwatch: method("binder.unwatch", {
      params: byService("binder.unwatch"),
      result: obj({ service: serviceName, watching: literal(false) }),
      errors: ["BAD_REQUEST"],
    }),
  },
  events: {
    changed: event("binder.changed", instanceList),
  },
};
