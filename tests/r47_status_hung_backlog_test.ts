/**
 * Review r47 R3: the Q2 fix says `hung` only when the probe's connection was accepted. A hung
 * instance with clients stops being accepted once its listen backlog is full (the clients'
 * connections and redials fill it; nobody accepts them), the kernel then drops new SYNs, the
 * probe's connect times out, and `dist status` says `down` — though the launcher's pid is alive
 * and holds the port in LISTEN (what /proc, which the fix already reads, tells at once).
 *
 * Expected: an instance whose own pid holds its listening port and does not answer is `hung`,
 * whether or not the kernel still accepts for it.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { freeRange, startUp, topologyFile } from "./helpers/up.ts";

Deno.test("r47 R3: dist status says hung, not down, for a hung instance whose backlog is full", async () => {
  const state = await Deno.makeTempDir({ prefix: "dist-r47-r3-" });
  await Deno.chmod(state, 0o700);
  const port = freeRange(1);
  const file = await topologyFile(`[[server]]\nname = "srv"\nport = ${port}\nrestart = "always"\n`);
  const env = { DIST_STATE_DIR: state };
  const up = startUp([file, "--no-dashboard"], { env });
  let pid: number | undefined;
  const conns: Deno.Conn[] = [];
  try {
    await up.waitFor(/All 1 ready/);
    pid = up.pids()[0];
    assert.ok(pid !== undefined, up.stdout());
    Deno.kill(pid, "SIGSTOP");
    // Its clients' connections pile up unaccepted (bounded: 5,000 at most, 500 ms each).
    let full = false;
    for (let i = 0; i < 5000 && !full; i++) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const attempt = Deno.connect({ hostname: "127.0.0.1", port });
      const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), 500));
      const got = await Promise.race([attempt, late]);
      clearTimeout(timer);
      if (got === "late") {
        full = true;
        attempt.then((c) => c.close(), () => {});
      } else conns.push(got);
    }
    assert.ok(full, `backlog never filled (${conns.length} connections)`);
    const r = await runDist(["status", file, "--json", "--timeout", "1s"], {
      env,
      timeoutMs: 30_000,
    });
    const row = JSON.parse(r.stdout.trim().split("\n")[0]);
    assert.equal(row.pid, pid, r.stdout);
    assert.equal(
      row.state,
      "hung",
      `after ${conns.length} unaccepted connections, the hung instance (pid ${pid}, holding ` +
        `port ${port}) is said to be: ${r.stdout}`,
    );
  } finally {
    for (const c of conns) c.close();
    if (pid !== undefined) {
      try {
        Deno.kill(pid, "SIGCONT");
      } catch { /* gone */ }
    }
    await up.stop();
    await Deno.remove(file);
    await Deno.remove(state, { recursive: true });
  }
});
