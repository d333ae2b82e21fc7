/**
 * Who may read or plant what dist keeps or reads: one check for the
 * folders it keeps data and keys in (launch/state.ts `dirProblem`) and the
 * secrets files it reads (N9: the users file, `--token-file`,
 * `--password-file`, `--tls-key`, a CA's key), as ssh and PostgreSQL check
 * theirs. A file or folder of another user's may be rewritten by them, one
 * others may write may be replaced by them, and a private one (a key, a
 * password, a token) others may read is theirs to use.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { UsageError } from "./errors.ts";

/** What the check asks of a path. */
export interface OwnerRule {
  /** Owned by root is fine too (`/etc/dist/users.toml`, a Kubernetes Secret's files). */
  root?: boolean;
  /** Others may not read it either (group may: a Secret given to a pod's fsGroup). */
  private?: boolean;
}

/**
 * Why `path` (its `info`, from lstat or stat) may be read or planted by
 * others under `rule`: another user's, writable by group or others, or
 * (private) readable by others; undefined when it may be trusted, and where
 * the system has no owners and modes (Windows).
 */
export function ownerProblem(
  path: string,
  info: Deno.FileInfo,
  rule: OwnerRule = {},
): string | undefined {
  const uid = Deno.uid();
  if (
    uid !== null && info.uid !== null && info.uid !== uid && !(rule.root && info.uid === 0)
  ) {
    return `${path} belongs to another user (uid ${info.uid})`;
  }
  const mode = info.mode === null ? undefined : (info.mode & 0o777).toString(8);
  if (info.mode !== null && (info.mode & 0o022) !== 0) {
    return `${path} may be written by others (mode ${mode})`;
  }
  if (rule.private && info.mode !== null && (info.mode & 0o004) !== 0) {
    return `${path} may be read by others (mode ${mode})`;
  }
  return undefined;
}

/** The real path of `path` (links followed), or `path` where it cannot be had. */
function realOr(path: string): string {
  try {
    const real = Deno.realPathSync(path);
    return isAbsolute(real) ? real : path; // A pipe's "pipe:[N]" is no path.
  } catch {
    return path;
  }
}

let trustSaid = false;

/**
 * The folder whose files are taken whatever their owner and mode
 * (`DIST_SECRETS_DIR`, its real path): docker compose mounts a secret file
 * as it is on the host, its owner and mode unchangeable (compose issue
 * 9648), so `dist export compose` sets it to its `/run/secrets`. Said once
 * on stderr when first in force (review r48 R6).
 * @throws {UsageError} for a relative value (each process would resolve it
 * against its own working directory) or `/` (every file)
 */
function trustedFolder(): string | undefined {
  let dir: string | undefined;
  try {
    dir = Deno.env.get("DIST_SECRETS_DIR");
  } catch {
    return undefined; // No --allow-env: none.
  }
  if (!dir) return undefined;
  if (!isAbsolute(dir)) {
    throw new UsageError(
      `DIST_SECRETS_DIR ${dir} is not an absolute path: name the folder the secrets are mounted in (/run/secrets)`,
    );
  }
  const real = realOr(resolve(dir));
  if (real === "/") {
    throw new UsageError(
      `DIST_SECRETS_DIR ${dir} would take every file whatever its owner and mode: name the folder the secrets are mounted in (/run/secrets)`,
    );
  }
  if (!trustSaid) {
    trustSaid = true;
    console.error(
      `dist: DIST_SECRETS_DIR ${real} is in force: secrets files in it are taken whatever their owner and mode`,
    );
  }
  return real;
}

/**
 * Refuses a secrets file others could plant or read: another user's (root's
 * is fine), writable by group or others, or for a `private` one (a key, a
 * password, a token) readable by others; or in a folder others could plant
 * it in ({@link folderProblem}). A link is followed (a Kubernetes Secret's
 * files are links); a file that cannot be found is left to its reader to
 * say so.
 * @param what how the user gave it (`--token-file`, `users file`)
 * @throws {UsageError} naming the file and the fix
 */
export function checkSecretFile(what: string, path: string, rule: { private: boolean }): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    return; // Its reader says why it cannot be read.
  }
  checkSecretInfo(what, path, info, rule);
}

/**
 * {@link checkSecretFile} of a file already opened (`info` from its handle):
 * what config/user_files.ts checks between opening and reading. `mounted`: a
 * file compose mounts from the host, as it is, outside DIST_SECRETS_DIR (the
 * topology at /etc/dist): taken whatever its owner and mode when that is set.
 * @throws {UsageError} naming the file and the fix
 */
export function checkSecretInfo(
  what: string,
  path: string,
  info: Deno.FileInfo,
  rule: { private: boolean; mounted?: boolean },
): void {
  const trusted = trustedFolder();
  if (trusted !== undefined && (rule.mounted || realOr(resolve(path)).startsWith(`${trusted}/`))) {
    return;
  }
  const problem = ownerProblem(path, info, { root: true, private: rule.private });
  if (problem !== undefined) {
    throw new UsageError(`${what} ${problem}: ${fixOf(path, info, problem, rule)}`);
  }
  const folder = folderProblem(path);
  if (folder !== undefined) {
    throw new UsageError(
      `${what} ${path}: ${folder.problem}: others could replace it; ${folder.fix}`,
    );
  }
}

const MOUNT_FIX = "on a read-only mount: the volume's mode (a Kubernetes Secret's " +
  "defaultMode: 0440) or DIST_SECRETS_DIR (README Security)";

/** Who could do what with a file refused for `problem`, and the fix that fits it (review r48 R5). */
function fixOf(
  path: string,
  info: Deno.FileInfo,
  problem: string,
  rule: { private: boolean },
): string {
  const mode = rule.private ? "600" : "go-w";
  if (problem.includes("another user")) {
    return `its owner could ${rule.private ? "read or replace" : "replace"} it; ` +
      `make it yours (chown) and chmod ${mode} ${path}, or root's`;
  }
  const rootsFile = info.uid === 0 && Deno.uid() !== 0;
  const could = problem.includes("may be read")
    ? "others could read it"
    : "others could replace it";
  const fix = rootsFile
    ? `as root: chmod ${rule.private ? "640" : "go-w"} ${path}${
      rule.private ? " (root and its group may read it)" : ""
    }`
    : `chmod ${mode} ${path}`;
  return `${could}; ${fix}; ${MOUNT_FIX}`;
}

/**
 * Why the folders that lead to a secrets file let others replace it (review
 * r48 R1): each folder from the file up to `/`, on the path as given and on
 * its real path, must be this user's or root's, and not writable by group or
 * others unless sticky (`/tmp`, a Kubernetes Secret's volume): as ssh's
 * StrictModes checks the folders above a key. Undefined when they may be
 * trusted, or where the system has no owners (Windows).
 */
function folderProblem(path: string): { problem: string; fix: string } | undefined {
  const uid = Deno.uid();
  if (uid === null) return undefined;
  const folders = new Set<string>();
  for (const start of [resolve(path), realOr(resolve(path))]) {
    for (let dir = dirname(start); !folders.has(dir); dir = dirname(dir)) folders.add(dir);
  }
  for (const dir of folders) {
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(dir);
    } catch {
      continue; // The file was found through it: nothing to say.
    }
    if (info.uid !== null && info.uid !== uid && info.uid !== 0) {
      return {
        problem: `its folder ${dir} belongs to another user (uid ${info.uid})`,
        fix: "move it to a folder of yours",
      };
    }
    if (info.mode !== null && (info.mode & 0o022) !== 0 && (info.mode & 0o1000) === 0) {
      return {
        problem: `its folder ${dir} may be written by others (mode ${
          (info.mode & 0o777).toString(8)
        })`,
        fix: `chmod go-w ${dir}, or move it to a folder of yours`,
      };
    }
  }
  return undefined;
}
