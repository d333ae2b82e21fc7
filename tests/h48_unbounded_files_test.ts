/**
 * hostile h48 P1: every file a user names is read whole, with no bound on
 * its size: `--token-file`, `--password-file`, `--users`, `--tls-cert`,
 * `--config`, `dist up FILE`, `dist export … FILE`, `dist status FILE`.
 * Named `/dev/zero` (or a pipe that never ends, or a log file by mistake),
 * `dist server --token-file /dev/zero` grew to 23 GB of RSS in two minutes
 * on the 23 GB test machine, until the kernel's OOM killer ended it (exit
 * 137), ignoring SIGTERM all along (the secret files are read with
 * readTextFileSync: the event loop never turns, so the signal is never
 * taken). A token is at most a few KiB, a topology at most 256 instances:
 * a bounded read refuses such a file at its bound, as `dist:` + exit 2.
 *
 * Here each command runs under `ulimit -d` (1 GiB of data segment): the
 * read then fails for want of memory at about 330 MB of RSS instead of
 * taking the machine, and says `out of memory`. The test asks for a refusal
 * for the file's size, before any such failure: exit 2, and not
 * `out of memory`.
 */
import assert from "node:assert/strict";
import { distCommand } from "./helpers/dist.ts";

/** The safety net: the data segment a child may have (KiB), so a read without bound fails early. */
const DATA_LIMIT_KB = 1 << 20;
const RUN_MS = 20_000;

async function runLimited(args: string[]): Promise<{ code: number; stderr: string }> {
  const { exe, args: argv } = distCommand(args);
  const child = new Deno.Command("sh", {
    args: ["-c", `ulimit -d ${DATA_LIMIT_KB} && exec "$0" "$@"`, exe, ...argv],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Exited just now.
    }
  }, RUN_MS);
  try {
    const { code, stderr } = await child.output();
    return { code, stderr: new TextDecoder().decode(stderr).slice(-2000) };
  } finally {
    clearTimeout(timer);
  }
}

const CASES: string[][] = [
  ["server", "--port", "0", "--token-file", "/dev/zero"],
  ["server", "--port", "0", "--users", "/dev/zero"],
  ["client", "--user", "alice", "--password-file", "/dev/zero", "add", "1", "2"],
  ["server", "--port", "0", "--tls-cert", "/dev/zero", "--tls-key", "/dev/zero"],
  ["server", "--port", "0", "--config", "/dev/zero", "--name", "server"],
  ["up", "--dry-run", "/dev/zero"],
  ["export", "k8s", "/dev/zero"],
];

Deno.test("a file without end (/dev/zero) is refused at a bound, not read until memory runs out (h48 P1)", async () => {
  const unbounded: string[] = [];
  for (const args of CASES) {
    const run = await runLimited(args);
    const line = run.stderr.trim().split("\n").at(-1) ?? "";
    if (run.code !== 2 || /out of memory|memory allocation/i.test(run.stderr)) {
      unbounded.push(`dist ${args.join(" ")}: exit ${run.code}: ${line}`);
    }
  }
  assert.deepEqual(unbounded, [], "read until the 1 GiB data limit ran out");
});
