/**
 * The set-up of the tests of `dist status` on a hung instance (h47 Q2,
 * r47 R3): a one-server topology run by `dist up` with a state directory of
 * its own, the server stopped (SIGSTOP), and what `dist status` says of it.
 */
import assert from "node:assert/strict";
import { runDist } from "./dist.ts";
import { freeRange, startUp, topologyFile } from "./up.ts";

/** The hung instance {@link withHungInstance} gives its body. */
export interface HungInstance {
  /** The server's port and its (stopped) process. */
  port: number;
  pid: number;
  /** `dist status --json --timeout 1s`'s row for the server, and its whole output. */
  status(): Promise<{ row: { pid?: number; state?: string }; stdout: string }>;
}

/** Runs `body` with a hung instance; SIGCONT, stop and clean up after, whatever it did. */
export async function withHungInstance(
  prefix: string,
  body: (hung: HungInstance) => Promise<void>,
): Promise<void> {
  const state = await Deno.makeTempDir({ prefix });
  await Deno.chmod(state, 0o700);
  const port = freeRange(1);
  const file = await topologyFile(`[[server]]\nname = "srv"\nport = ${port}\nrestart = "always"\n`);
  const env = { DIST_STATE_DIR: state };
  const up = startUp([file, "--no-dashboard"], { env });
  let pid: number | undefined;
  try {
    await up.waitFor(/All 1 ready/);
    pid = up.pids()[0];
    assert.ok(pid !== undefined, up.stdout());
    Deno.kill(pid, "SIGSTOP");
    await body({
      port,
      pid,
      async status() {
        const r = await runDist(["status", file, "--json", "--timeout", "1s"], {
          env,
          timeoutMs: 30_000,
        });
        return { row: JSON.parse(r.stdout.trim().split("\n")[0]), stdout: r.stdout };
      },
    });
  } finally {
    if (pid !== undefined) {
      try {
        Deno.kill(pid, "SIGCONT");
      } catch { /* gone */ }
    }
    await up.stop();
    await Deno.remove(file);
    await Deno.remove(state, { recursive: true });
  }
}
