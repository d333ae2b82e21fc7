/**
 * The one-launcher lock: a second `dist up` of a topology on this machine is refused while the
 * first runs (two would fight over its ports).
 */
import { UsageError } from "../config/mod.ts";
import { dirProblem, ownStateDir, shortHash } from "./state.ts";

/**
 * Takes the one-launcher lock of a topology (`file`, `on`) on this machine: an exclusive `flock`
 * on a file in each of {@link lockDirs}, which needs no free space and which the kernel drops when
 * the launcher dies (hostile47 Q4: on a full disk no state file was written, and a second launcher
 * ran). Taken on the file's path as given and on its real path (one file through two names is
 * one topology here: hostile47 Q5). Held until the process ends.
 * @returns false when another launcher holds it in any of its places; true when taken in all
 * @throws {UsageError} when there is no folder of ours to lock in, or a lock file cannot be opened
 */
export async function lockLauncher(
  keys: readonly string[],
  on: string | undefined,
): Promise<boolean> {
  for (const dir of lockDirs()) {
    for (const key of new Set(keys)) {
      const path = `${dir}/up-${await shortHash([key, on ?? ""])}.lock`;
      let lock: Deno.FsFile;
      try {
        lock = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
      } catch (err) {
        // Not taken is not free (review h48b L4: skipped, a launcher ran with no lock at all).
        throw new UsageError(
          `Cannot open the one-launcher lock ${path}: ${(err as Error).message}`,
          { cause: err },
        );
      }
      if (!await lock.tryLock(true)) {
        lock.close();
        return false;
      }
      launcherLocks.push(lock); // Kept open: closing it would release the lock.
    }
  }
  return true;
}

/**
 * Where the one-launcher locks are: `~/.cache/dist` (made 0700, checked as the state directory
 * is), with HOME from the password database, not the environment, so that every launcher of this
 * user locks there whatever its environment (cron, `sudo -u`, ssh without a login session); and
 * the state directory, made first (a fresh /tmp after a boot has none yet: review r47 R7), when
 * it is ours. A launcher takes the lock in each and refuses when either is held, so two launchers
 * still meet when the state directory's trust changes between them (review h48b V3: the place was
 * the state directory when it was ours, else `$XDG_RUNTIME_DIR/dist`, else `~/.cache/dist`: one
 * started while the state directory was squatted, and one after the squatter removed it, or one
 * without `$XDG_RUNTIME_DIR`, locked in different places and ran side by side).
 * @throws {UsageError} when neither is a folder of ours
 */
function lockDirs(): string[] {
  const dirs: string[] = [];
  const home = passwdHome();
  const cache = home === undefined ? undefined : `${home}/.cache/dist`;
  let cacheProblem = home === undefined ? "this user has no home in the password database" : "";
  if (cache !== undefined) {
    try {
      Deno.mkdirSync(cache, { recursive: true, mode: 0o700 });
      cacheProblem = dirProblem(cache) ?? "";
    } catch (err) {
      cacheProblem = `${cache}: ${(err as Error).message}`;
    }
    if (cacheProblem === "") dirs.push(cache);
  }
  let stateProblem = "";
  try {
    dirs.push(ownStateDir());
  } catch (err) {
    stateProblem = (err as Error).message;
  }
  if (dirs.length > 0) return dirs;
  throw new UsageError(
    `${stateProblem}; nor is ~/.cache/dist a folder of yours for the one-launcher lock ` +
      `(${cacheProblem})`,
  );
}

/** This user's home folder by the password database (`getent passwd`, else /etc/passwd). */
function passwdHome(): string | undefined {
  const uid = Deno.uid();
  if (uid === null) return undefined;
  const field = (line: string | undefined) => {
    const parts = line?.trim().split(":");
    return parts !== undefined && parts.length >= 7 && parts[2] === String(uid) && parts[5]
      ? parts[5]
      : undefined;
  };
  try {
    const out = new Deno.Command("getent", { args: ["passwd", String(uid)], stderr: "null" })
      .outputSync();
    const home = out.success
      ? field(new TextDecoder("utf-8", { ignoreBOM: true }).decode(out.stdout))
      : undefined;
    if (home !== undefined) return home;
  } catch {
    // No getent (or no --allow-run): the file.
  }
  try {
    return Deno.readTextFileSync("/etc/passwd").split("\n").map(field).find((h) => h !== undefined);
  } catch {
    return undefined;
  }
}

const launcherLocks: Deno.FsFile[] = [];
