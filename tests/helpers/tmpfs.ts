/** Full-disk tests: a small tmpfs mounted in a namespace of the test's own. */

/** Whether this machine lets a test mount a tmpfs in a namespace of its own. */
export async function canMountTmpfs(): Promise<boolean> {
  try {
    const out = await new Deno.Command("unshare", {
      args: ["-rm", "sh", "-c", "mount -t tmpfs -o size=1m none /mnt"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}
