/**
 * What a user may do, as a users file says it, and the checks made where a
 * request is dispatched. Every kind of permission is an allow list and a
 * deny list; deny beats allow, and what no allow pattern names is denied
 * (nats-server's publish/subscribe permissions, mosquitto's ACLs).
 *
 * - `roles`: the roles that carry rights which the user may claim in its
 *   hello: `binder` (replication) and `worker` (taking tasks on a worker
 *   port). Other role names grant nothing and are not checked.
 * - `methods`: method names, `*` matching any run of characters (`sys.*`).
 * - `publish`, `subscribe`: topics in the broker's syntax; a pattern covers
 *   its subtree, `+` one segment, `/` everything.
 * - `register`, `resolve`: service names, `*` as in methods.
 */
import { normalizeTopic, topicSegments } from "../clients/contracts/broker.ts";
import { DistError } from "../wire/mod.ts";

/** The permission kinds of a users file entry besides `roles`. */
export const RULE_KINDS = ["methods", "publish", "subscribe", "register", "resolve"] as const;
export type RuleKind = typeof RULE_KINDS[number];

/** The roles whose claim in a hello gives rights, so a users file must grant them. */
export const PRIVILEGED_ROLES: readonly string[] = ["binder", "worker"];

/** An allow list and a deny list of patterns, as written. */
export interface Rule {
  allow: string[];
  deny: string[];
}

/** A users file entry's permissions, as written. */
export interface Permissions {
  roles: string[];
  methods: Rule;
  publish: Rule;
  subscribe: Rule;
  register: Rule;
  resolve: Rule;
}

/** An entry that may do nothing. */
export function noPermissions(): Permissions {
  const none = () => ({ allow: [], deny: [] });
  return {
    roles: [],
    methods: none(),
    publish: none(),
    subscribe: none(),
    register: none(),
    resolve: none(),
  };
}

/**
 * Checks one pattern of `kind` as written in a users file.
 * @returns the pattern in its normal form, or a sentence saying what is wrong
 */
export function checkPattern(kind: RuleKind, pattern: string): string | { error: string } {
  if (kind === "publish" || kind === "subscribe") {
    try {
      return normalizeTopic(pattern, { pattern: true });
    } catch (err) {
      return { error: (err as Error).message };
    }
  }
  // deno-lint-ignore no-control-regex
  if (pattern === "" || /[\s\u0000-\u001f]/.test(pattern)) {
    return { error: `${JSON.stringify(pattern)} is not a ${kind} pattern` };
  }
  return pattern;
}

/** A glob where `*` matches any run of characters, as a test. */
function glob(pattern: string): (name: string) => boolean {
  if (!pattern.includes("*")) return (name) => name === pattern;
  if (pattern === "*") return () => true;
  const parts = pattern.split("*");
  const source = parts.map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*");
  const re = new RegExp(`^${source}$`, "s");
  return (name) => re.test(name);
}

/** Whether a permission pattern (segments) covers every topic a subscription pattern can match. */
function covers(permission: readonly string[], sub: readonly string[]): boolean {
  if (sub.length < permission.length) return false;
  for (let i = 0; i < permission.length; i++) {
    if (permission[i] !== "+" && permission[i] !== sub[i]) return false;
  }
  return true;
}

/** Whether two subtree patterns have a topic in common. */
function overlaps(a: readonly string[], b: readonly string[]): boolean {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== "+" && b[i] !== "+" && a[i] !== b[i]) return false;
  }
  return true;
}

type Test = (subject: string) => boolean;

interface CompiledRule {
  allow: Test;
  /** The first deny pattern that refuses the subject, if any. */
  denied: (subject: string) => string | undefined;
}

/** The name a request for every name (binder.list of every service) is checked as. */
const EVERY_NAME = "*";

function compileNames(rule: Rule): CompiledRule {
  const allow = rule.allow.map(glob);
  const deny = rule.deny.map((p) => ({ p, test: glob(p) }));
  return {
    allow: (s) => allow.some((t) => t(s)),
    // EVERY_NAME (binder.list of every service) overlaps any deny at all: refused, as a
    // subscription overlapping a denied topic is, never filtered (hostile46c F2: the deny
    // globs were tested against the text "*", and `secret*` let it list secret-db).
    denied: (s) => s === EVERY_NAME ? rule.deny[0] : deny.find((d) => d.test(s))?.p,
  };
}

/**
 * Topics: a publish is to one topic, which an allow pattern must cover and
 * no deny pattern may; a subscription is a pattern, which must lie wholly
 * inside an allow pattern and may not overlap a deny pattern at all (so
 * `/` with `/admin` denied is refused: the subscriber asks for the parts it
 * may see, and no delivery is ever filtered).
 */
function compileTopics(rule: Rule, subscriptions: boolean): CompiledRule {
  const allow = rule.allow.map(topicSegments);
  const deny = rule.deny.map((p) => ({ p, s: topicSegments(p) }));
  const hits = subscriptions ? overlaps : covers;
  return {
    allow: (t) => {
      const s = topicSegments(t);
      return allow.some((a) => covers(a, s));
    },
    denied: (t) => {
      const s = topicSegments(t);
      return deny.find((d) => hits(d.s, s))?.p;
    },
  };
}

/** Most decisions on method names kept (emptied when full). */
const DECISIONS_KEPT = 1024;
/**
 * Most decisions on topics kept, and the longest name kept: at most some
 * 64 KiB a user (emptied when full; a longer name is decided each time).
 */
const TOPICS_KEPT = 256;
const CACHED_TOPIC_LENGTH = 256;

/** A resource a method acts on, which a permission kind governs. */
export type Action = "publish" | "subscribe" | "register" | "resolve";

/** A user's permissions, compiled for the checks made at every request. */
export class Grants {
  readonly user: string;
  #roles: ReadonlySet<string>;
  #rules: Record<RuleKind, CompiledRule>;
  /** Decisions on method names (few, and asked at every request), bounded. */
  #methodCache = new Map<string, string | undefined>();
  /**
   * Decisions on the topics published to, as sent (asked at every publish:
   * a decision costs about 1 µs, a lookup a tenth of it), bounded in
   * entries and in the length of the names kept.
   */
  #publishCache = new Map<string, string | undefined>();

  constructor(user: string, permissions: Permissions) {
    this.user = user;
    this.#roles = new Set(permissions.roles);
    this.#rules = {
      methods: compileNames(permissions.methods),
      publish: compileTopics(permissions.publish, false),
      subscribe: compileTopics(permissions.subscribe, true),
      register: compileNames(permissions.register),
      resolve: compileNames(permissions.resolve),
    };
  }

  /** Whether the user may claim `role` in its hello (other roles give no rights). */
  mayActAs(role: string): boolean {
    return !PRIVILEGED_ROLES.includes(role) || this.#roles.has(role);
  }

  /**
   * Why `kind` refuses `subject`, or undefined when it is allowed.
   * @returns e.g. `publish /admin/x (denied by "/admin")`
   */
  refusal(kind: RuleKind, subject: string): string | undefined {
    if (kind === "methods") {
      if (this.#methodCache.has(subject)) return this.#methodCache.get(subject);
      const why = this.#decide(kind, subject);
      if (this.#methodCache.size >= DECISIONS_KEPT) this.#methodCache.clear();
      this.#methodCache.set(subject, why);
      return why;
    }
    if (kind === "publish") {
      const cached = this.#publishCache.get(subject);
      if (cached !== undefined || this.#publishCache.has(subject)) return cached;
    }
    // A topic is checked as the topic it names: `secret` is `/secret`, and
    // `+` is `/+`. Segmented as sent, `secret` read as the segment `ecret`
    // and passed a deny of `/secret` (the broker normalizes after the check).
    const topic = kind === "publish" || kind === "subscribe"
      ? normalizeTopic(subject, { pattern: kind === "subscribe" })
      : subject;
    const why = this.#decide(kind, topic);
    if (kind === "publish" && subject.length <= CACHED_TOPIC_LENGTH) {
      if (this.#publishCache.size >= TOPICS_KEPT) this.#publishCache.clear();
      this.#publishCache.set(subject, why);
    }
    return why;
  }

  #decide(kind: RuleKind, subject: string): string | undefined {
    const rule = this.#rules[kind];
    const what = `${kind === "methods" ? "call" : kind} ${subject}`;
    if (!rule.allow(subject)) return `${what} (not allowed)`;
    const deny = rule.denied(subject);
    return deny === undefined ? undefined : `${what} (denied by ${JSON.stringify(deny)})`;
  }

  /** @throws {DistError} UNAUTHORIZED naming the role missing from `roles` */
  requireRole(role: string): void {
    if (!this.#roles.has(role)) throw unauthorized(this.user, `act as ${role} (roles)`);
  }

  /** @throws {DistError} UNAUTHORIZED naming the permission missing */
  require(kind: RuleKind, subject: string): void {
    const why = this.refusal(kind, subject);
    if (why !== undefined) throw unauthorized(this.user, why);
  }
}

/** The UNAUTHORIZED error of a permission denied. */
export function unauthorized(user: string, why: string): DistError {
  return new DistError("UNAUTHORIZED", `User ${JSON.stringify(user)} may not ${why}`);
}
