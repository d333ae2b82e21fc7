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
import { withHungInstance } from "./helpers/hung_instance.ts";

Deno.test("r47 R3: dist status says hung, not down, for a hung instance whose backlog is full", () =>
  withHungInstance("dist-r47-r3-", async ({ port, pid, status }) => {
    const conns: Deno.Conn[] = [];
    try {
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
      const { row, stdout } = await status();
      assert.equal(row.pid, pid, stdout);
      assert.equal(
        row.state,
        "hung",
        `after ${conns.length} unaccepted connections, the hung instance (pid ${pid}, holding ` +
          `port ${port}) is said to be: ${stdout}`,
      );
    } finally {
      for (const c of conns) c.close();
    }
  }));
