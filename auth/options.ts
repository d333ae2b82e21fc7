/**
 * What a role makes of the authentication options (config/spec.ts,
 * `AUTH_OPTIONS`): the credentials it dials with, and the authenticator
 * its listeners use. An option may come from its environment variable
 * (`DIST_TOKEN`, `DIST_USER`, `DIST_PASSWORD`) when not given, and the
 * token and the password from a file (`--token-file`, `--password-file`:
 * what orchestrators mount secrets as; `dist export` passes them).
 */
import {
  type AUTH_OPTIONS,
  type OptionsOf,
  readUserFileSync,
  SECRET_RULE,
  UsageError,
} from "../config/mod.ts";
import type { Credentials } from "../wire/mod.ts";
import { Gate } from "./gate.ts";
import { loadUsers } from "./users.ts";
import { log } from "../wire/_log.ts";

/** The options read here, as a role has them. */
export type AuthOptions = OptionsOf<typeof AUTH_OPTIONS>;

/** Reads an environment variable; none when unset, empty, or not permitted. */
export type EnvReader = (name: string) => string | undefined;

/**
 * A secret read from a file: its text without the final line break (as
 * `echo`, `kubectl create secret --from-file` and editors leave it).
 * @throws {UsageError} for a file that cannot be read, or is empty
 */
function readSecretFile(file: string | undefined, flag: string): string | undefined {
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = readUserFileSync(flag, file, SECRET_RULE); // Bounded (h48 P1), checked (N9).
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`Cannot read ${flag} ${file}: ${(err as Error).message}`);
  }
  const value = text.replace(/\r?\n$/, "");
  if (value === "") throw new UsageError(`${flag} ${file} is empty`);
  return value;
}

const processEnv: EnvReader = (name) => {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // No --allow-env: as if unset.
  }
};

/**
 * The credentials this instance dials with: `--user` and `--password`, or
 * `--token`; undefined for none.
 * @throws {UsageError} for a user without a password, or a password without a user
 */
export function credentialsOf(
  options: AuthOptions,
  env: EnvReader = processEnv,
): Credentials | undefined {
  const token = options.token ?? readSecretFile(options.tokenFile, "--token-file") ??
    env("DIST_TOKEN");
  const user = options.user ?? env("DIST_USER");
  const password = options.password ??
    readSecretFile(options.passwordFile, "--password-file") ?? env("DIST_PASSWORD");
  if (user !== undefined && password === undefined) {
    throw new UsageError(`--user ${user} needs --password (or DIST_PASSWORD)`);
  }
  if (user === undefined && password !== undefined) {
    throw new UsageError("--password needs --user (or DIST_USER)");
  }
  if (user !== undefined) return { user, password };
  return token === undefined ? undefined : { token };
}

/**
 * Whether this instance's listeners check credentials (`--token`, its file
 * or `DIST_TOKEN`, or `--users`): what {@link authenticatorOf} makes a
 * Gate for, without reading the users file.
 */
export function checksCredentials(options: AuthOptions, env: EnvReader = processEnv): boolean {
  return options.users !== undefined || options.token !== undefined ||
    options.tokenFile !== undefined || env("DIST_TOKEN") !== undefined;
}

/**
 * The authenticator of this instance's listeners: with `--token`, every
 * dialer must send it (and has every right); with `--users`, a dialer must
 * be one of the file's users (or hold the token) and may do only what its
 * entry grants. Undefined without either: anyone may connect and do
 * anything, as without security.
 * @throws {UsageError} naming the file, line and key of a bad users file
 */
export function authenticatorOf(
  options: AuthOptions,
  env: EnvReader = processEnv,
): Gate | undefined {
  const token = options.token ?? readSecretFile(options.tokenFile, "--token-file") ??
    env("DIST_TOKEN");
  const users = options.users === undefined ? undefined : loadUsers(options.users);
  if (users !== undefined && users.legacy.length > 0) {
    log.warn(
      "{file}: {entries} stored as before the challenge hello: a copy of the file proves them; run dist passwd for each",
      { file: users.file, entries: users.legacy.join(", ") },
    );
  }
  if (token === undefined && users === undefined) return undefined;
  return new Gate({ token, users });
}
