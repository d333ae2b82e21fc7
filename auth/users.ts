/**
 * The users file (`--users FILE`): who may connect and what each may do.
 *
 * ```toml
 * [users.alice]
 * password = "$scrypt$ln=14,r=8,p=1$…"   # written by dist passwd
 * methods = ["echo", "add", "sys.*"]      # a list is an allow list
 * subscribe = { allow = ["/telephony"], deny = ["/telephony/secret"] }
 *
 * [users.worker-7]
 * token = "$sha256$…"                     # dist passwd --token: its SHA-256's keys
 * roles = ["worker"]
 * ```
 *
 * Every problem is a `dist:` error naming the file, the line and the key;
 * nothing is half loaded.
 */
import { parse as parseToml } from "smol-toml";
import {
  LineLocator,
  readUserFileSync,
  throwProblems,
  type TopologyProblem,
  UsageError,
  USERS_RULE,
} from "../config/mod.ts";
import {
  DEFAULT_COST,
  parsePasswordHash,
  parseTokenHash,
  type PasswordHash,
  type ScryptCost,
  type TokenHash,
} from "./passwords.ts";
import {
  checkPattern,
  noPermissions,
  type Permissions,
  PRIVILEGED_ROLES,
  RULE_KINDS,
  type RuleKind,
} from "./permissions.ts";

/** One user. */
export interface UserEntry {
  name: string;
  /** The password's hash, and its text (part of the key of remembered successes). */
  password?: PasswordHash;
  passwordText?: string;
  /** The keys of the user's token. */
  token?: TokenHash;
  permissions: Permissions;
}

/** A loaded users file. */
export interface Users {
  file: string;
  entries: Map<string, UserEntry>;
  /** The cost of the first password in the file (an unknown user's check costs as much). */
  cost: ScryptCost;
  /**
   * Entries stored as before the challenge hello (`users.NAME.password`):
   * they check a proof but, stolen, make one too (see passwords.ts).
   */
  legacy: string[];
}

/** The keys an entry may have. */
const ENTRY_KEYS = ["password", "token", ...RULE_KINDS, "roles"] as const;

/** A user name: printable, no spaces, at most 128 characters (a certificate's CN fits). */
// deno-lint-ignore no-control-regex
const USER_NAME = /^[^\s\u0000-\u001f\u007f]{1,128}$/;

/** Whether `name` may name a user. */
export function isUserName(name: string): boolean {
  return USER_NAME.test(name);
}

/**
 * Reads and checks a users file.
 * @throws {UsageError} naming the file (and line and key) of every problem
 */
export function loadUsers(file: string): Users {
  // Whoever may write it picks the passwords (N9).
  let text: string;
  try {
    // Read once at start, before anything listens (main.ts reads it ahead,
    // asynchronously); bounded (h48 P1).
    text = readUserFileSync("Users file", file, USERS_RULE);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`Cannot read users file ${file}: ${(err as Error).message}`);
  }
  return parseUsers(text, file);
}

/** Checks the text of a users file (see {@link loadUsers}). */
export function parseUsers(text: string, file: string): Users {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    const m = /line (\d+)/.exec((err as Error).message);
    throw new UsageError(
      `Cannot load ${file}: ${m ? `line ${m[1]}: ` : ""}${(err as Error).message.split("\n")[0]}`,
    );
  }
  const where = new LineLocator(text);
  const problems: TopologyProblem[] = [];
  const entries = new Map<string, UserEntry>();
  let cost: ScryptCost | undefined;
  const legacy: string[] = [];
  for (const key of Object.keys(doc)) {
    if (key !== "users") {
      problems.push({
        line: where.key("", key) ?? where.header(key),
        text: `${key}: unknown key (a users file has [users.NAME] tables)`,
      });
    }
  }
  const users = doc.users ?? {};
  if (!isTable(users)) {
    problems.push({ line: where.key("", "users"), text: "users: must be tables [users.NAME]" });
  } else {
    for (const [name, raw] of Object.entries(users)) {
      const section = `users.${name}`;
      const line = (key?: string) =>
        (key === undefined ? undefined : where.key(section, key)) ?? where.header(section);
      const problem = (text: string, key?: string) =>
        problems.push({ line: line(key), text: `${section}${key ? `.${key}` : ""}: ${text}` });
      if (!isUserName(name)) {
        problem("a user name is 1 to 128 printable characters without spaces");
        continue;
      }
      if (!isTable(raw)) {
        problem("must be a table");
        continue;
      }
      const entry: UserEntry = { name, permissions: noPermissions() };
      for (const [key, value] of Object.entries(raw)) {
        if (!(ENTRY_KEYS as readonly string[]).includes(key)) {
          problem(`unknown key (expected one of ${ENTRY_KEYS.join(", ")})`, key);
          continue;
        }
        if (key === "password") {
          const hash = typeof value === "string" ? parsePasswordHash(value) : "must be a string";
          if (typeof hash === "string") problem(hash, key);
          else {
            entry.password = hash;
            entry.passwordText = value as string;
            cost ??= hash.cost;
            if (hash.legacy) legacy.push(`${section}.${key}`);
          }
        } else if (key === "token") {
          const digest = typeof value === "string" ? parseTokenHash(value) : "must be a string";
          if (typeof digest === "string") problem(digest, key);
          else {
            entry.token = digest;
            if (digest.legacy) legacy.push(`${section}.${key}`);
          }
        } else if (key === "roles") {
          const roles = stringList(value);
          const bad = roles?.find((r) => !PRIVILEGED_ROLES.includes(r));
          if (roles === undefined) problem("must be a list of role names", key);
          else if (bad !== undefined) {
            problem(
              `${JSON.stringify(bad)} is not a role that needs granting (${
                PRIVILEGED_ROLES.join(", ")
              }; other roles grant nothing)`,
              key,
            );
          } else entry.permissions.roles = roles;
        } else {
          const kind = key as RuleKind;
          const rule = readRule(kind, value);
          if (typeof rule === "string") problem(rule, key);
          else entry.permissions[kind] = rule;
        }
      }
      entries.set(name, entry);
    }
  }
  throwProblems(file, problems);
  return { file, entries, cost: cost ?? DEFAULT_COST, legacy };
}

/** `["a", "b"]` (an allow list) or `{allow = […], deny = […]}`, each pattern checked. */
function readRule(kind: RuleKind, value: unknown): { allow: string[]; deny: string[] } | string {
  const shape = `must be a list of patterns or { allow = [...], deny = [...] }`;
  let allow: string[] | undefined;
  let deny: string[] | undefined = [];
  if (Array.isArray(value)) allow = stringList(value);
  else if (isTable(value)) {
    const extra = Object.keys(value).find((k) => k !== "allow" && k !== "deny");
    if (extra !== undefined) return `unknown key ${JSON.stringify(extra)}: ${shape}`;
    allow = value.allow === undefined ? [] : stringList(value.allow);
    deny = value.deny === undefined ? [] : stringList(value.deny);
  }
  if (allow === undefined || deny === undefined) return shape;
  const normal = (patterns: string[]) => {
    const out: string[] = [];
    for (const p of patterns) {
      const checked = checkPattern(kind, p);
      if (typeof checked !== "string") return checked.error;
      out.push(checked);
    }
    return out;
  };
  const a = normal(allow);
  if (!Array.isArray(a)) return a;
  const d = normal(deny);
  if (!Array.isArray(d)) return d;
  return { allow: a, deny: d };
}

function stringList(value: unknown): string[] | undefined {
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) return undefined;
  return value as string[];
}

function isTable(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value) &&
    !(value instanceof Date);
}
