/** A small tmpfs for tests of a full data directory (mounting needs root: undefined without it). */

/** Runs `cmd`: whether it succeeded (false when it cannot be run). */
export function run(cmd: string, ...args: string[]): boolean {
  try {
    return new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

/** A 4 MiB tmpfs at a new directory, or undefined where mounting is not allowed. */
export function smallDisk(prefix = "dist-disk-"): string | undefined {
  const dir = Deno.makeTempDirSync({ prefix });
  if (Deno.build.os === "linux" && run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir)) {
    return dir;
  }
  Deno.removeSync(dir);
  return undefined;
}

/** Fills the filesystem of `dir` with one file (ENOSPC ends it). */
export async function fill(dir: string): Promise<void> {
  const file = await Deno.open(`${dir}/filler`, { write: true, create: true });
  const block = new Uint8Array(64 * 1024);
  try {
    while (true) await file.write(block);
  } catch {
    // Full.
  } finally {
    file.close();
  }
}

/** Whether a small tmpfs can be mounted here (root on Linux): one is mounted and taken down to see. */
export function canMount(prefix = "dist-disk-"): boolean {
  const d = smallDisk(prefix);
  if (d === undefined) return false;
  run("umount", "-l", d);
  Deno.removeSync(d, { recursive: true });
  return true;
}
