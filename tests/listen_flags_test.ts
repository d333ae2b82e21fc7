/**
 * Issue 13 item 2: a port that cannot be had is reported with the flag that
 * chose it, so a second balancer on one machine says `--worker-port 8889 is
 * in use` instead of failing on a port the user never typed.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { assertUserError } from "./helpers/cli.ts";
import { startBalancer } from "./helpers/balancer.ts";

Deno.test("a busy port is reported with the flag that chose it, for every listening role", async () => {
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (held.addr as Deno.NetAddr).port;
  try {
    const cases: [string[], string][] = [
      [["server", "--port", `${port}`], "--port"],
      [["broker", "--port", `${port}`], "--port"],
      [["binder", "--port", `${port}`], "--port"],
      [["balancer", "--port", `${port}`, "--worker-port", "0"], "--port"],
      [["balancer", "--port", "0", "--worker-port", `${port}`], "--worker-port"],
    ];
    const results = await Promise.all(cases.map(([args]) => runDist(args)));
    cases.forEach(([args, flag], i) => {
      const line = assertUserError(results[i], 1, args.join(" "));
      assert.equal(
        line,
        `dist: UNAVAILABLE: Cannot listen on 127.0.0.1:${port}: ${flag} ${port} is in use: ` +
          `give another, or ${flag} 0 (a free one)`,
      );
    });
  } finally {
    held.close();
  }
});

Deno.test("a second balancer on the first one's worker port names --worker-port", async () => {
  const first = await startBalancer([]);
  try {
    const workerPort = first.workerAddress.split(":")[1];
    const second = await runDist(["balancer", "--port", "0", "--worker-port", workerPort]);
    assert.match(
      assertUserError(second, 1, "second balancer"),
      new RegExp(`--worker-port ${workerPort} is in use: give another, or --worker-port 0`),
    );
  } finally {
    await first.stop();
  }
});

Deno.test("--host that is not an address of this machine says so", async () => {
  const r = await runDist(["server", "--host", "192.0.2.1", "--port", "0"]);
  assert.match(
    assertUserError(r, 1, "foreign host"),
    /--host 192\.0\.2\.1 is not an address of this machine/,
  );
});
