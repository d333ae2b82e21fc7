/** Full-disk tests: a small tmpfs mounted in a namespace of the test's own. */
import { waitUntil } from "./binder.ts";
import { distCommand } from "./dist.ts";

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

/** A role run twice on a small tmpfs: the first instance is to be SIGKILLed, the second restarts. */
export interface TmpfsRun {
  /** The mount point (an empty directory from outside the namespace). */
  readonly mnt: string;
  /** What the shell and the instances wrote to stderr so far. */
  stderr(): string;
  /** Waits for the `count`-th `Listening on` line and returns its address. */
  listening(count: number, timeoutMs?: number): Promise<string>;
  /** SIGKILLs the instance running now (the first). */
  killFirst(): void;
  /** Kills what is left and removes the mount point. */
  close(): Promise<void>;
}

/**
 * Runs `dist ...args --data-dir MNT/d` in a mount namespace of its own
 * where MNT is a tmpfs of `size` (`2m`), twice: once killed, again. `prelude`
 * is shell run after the mount, before the first instance (a filler file).
 */
export function runTwiceOnTmpfs(
  args: string[],
  options: { size: string; prelude?: (mnt: string) => string },
): TmpfsRun {
  const mnt = Deno.makeTempDirSync();
  const { exe, args: argv } = distCommand([...args, "--data-dir", `${mnt}/d`]);
  const run = [exe, ...argv].map((w) => `'${w}'`).join(" ");
  const script = `mount -t tmpfs -o size=${options.size} none '${mnt}' || exit 9
${options.prelude?.(mnt) ?? ""}
${run} & echo "pid $!" >&2; wait $!
${run} & echo "pid $!" >&2; wait $!`;
  const child = new Deno.Command("unshare", {
    args: ["-rm", "sh", "-c", script],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let stderr = "";
  const reader = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  return {
    mnt,
    stderr: () => stderr,
    async listening(count, timeoutMs = 30_000) {
      await waitUntil(
        () => (stderr.match(/Listening on [\d.]+:\d+/g) ?? []).length >= count,
        "listening",
        timeoutMs,
      );
      return [...stderr.matchAll(/Listening on ([\d.]+:\d+)/g)][count - 1][1];
    },
    killFirst() {
      Deno.kill(Number(stderr.match(/pid (\d+)/)![1]), "SIGKILL");
    },
    async close() {
      // The instances first: killing the shell leaves them running, holding stderr open.
      for (const [, pid] of stderr.matchAll(/pid (\d+)/g)) {
        try {
          Deno.kill(Number(pid), "SIGKILL");
        } catch {
          // Exited.
        }
      }
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited.
      }
      await child.status;
      await reader;
      await Deno.remove(mnt, { recursive: true });
    },
  };
}
