/**
 * The one-launcher lock: a second `dist up` of a topology on this machine is refused while the
 * first runs (two would fight over its ports).
 */
import { UsageError } from "../config/mod.ts";
import { dirProblem, ownStateDir, shortHash } from "./state.ts";

/**
 * Takes the one-launcher lock of a topology (`file`, `on`) on this machine: an exclusive `flock`
 * on a file beside the state files, which needs no free space and which the kernel drops when the
 * launcher dies (hostile47 Q4: on a full disk no state file was written, and a second launcher
 * ran). Taken on the file's path as given and on its real path (one file through two names is
 * one topology here: hostile47 Q5). Held until the process ends. Where the state directory is not
 * ours, in a folder that is ({@link lockDir}).
 * @returns false when another launcher holds it; true when taken
 * @throws {UsageError} when there is no folder of ours to lock in
 */
export async function lockLauncher(
  keys: readonly string[],
  on: string | undefined,
): Promise<boolean> {
  const dir = lockDir();
  for (const key of new Set(keys)) {
    let lock: Deno.FsFile;
    try {
      lock = await Deno.open(`${dir}/up-${await shortHash([key, on ?? ""])}.lock`, {
        read: true,
        write: true,
        create: true,
        mode: 0o600,
      });
    } catch {
      continue;
    }
    if (!await lock.tryLock(true)) {
      lock.close();
      return false;
    }
    launcherLocks.push(lock); // Kept open: closing it would release the lock.
  }
  return true;
}

/**
 * Where the one-launcher locks are: the state directory, made first (a fresh /tmp after a boot
 * has none yet: review r47 R7); where it is not ours (dist up says so and keeps no state there),
 * `$XDG_RUNTIME_DIR/dist` (the login session's, 0700), else `~/.cache/dist`, made 0700 and
 * checked as the state directory is (review R13: no lock was taken, so two launchers of one file
 * could run; every launcher of this user falls back alike, so they still meet).
 * @throws {UsageError} when none of them is a folder of ours
 */
function lockDir(): string {
  let problem: string;
  try {
    return ownStateDir();
  } catch (err) {
    problem = (err as Error).message;
  }
  const runtime = Deno.env.get("XDG_RUNTIME_DIR");
  const home = Deno.env.get("HOME");
  const folders = [runtime ? `${runtime}/dist` : "", home ? `${home}/.cache/dist` : ""];
  for (const dir of folders.filter((f) => f !== "")) {
    try {
      Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch {
      continue;
    }
    if (dirProblem(dir) === undefined) return dir;
  }
  throw new UsageError(
    `${problem}; nor is $XDG_RUNTIME_DIR/dist or ~/.cache/dist a folder of yours for the ` +
      `one-launcher lock`,
  );
}
const launcherLocks: Deno.FsFile[] = [];
