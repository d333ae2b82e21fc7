/**
 * h48 P12: `dist export` refuses a `--bin` or `--image` no target can run,
 * rather than write units systemd refuses (`--bin relative/dist`: "Neither
 * a valid executable name nor an absolute path"; `--bin ''`: "Empty path
 * in command line") or `image: ""`; a bare name and an absolute path pass.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";

const EXAMPLE = new URL("../examples/client_server.toml", import.meta.url).pathname;

for (
  const [target, flag, value] of [
    ["systemd", "--bin", "relative/dist"],
    ["systemd", "--bin", ""],
    ["compose", "--image", ""],
    ["k8s", "--image", "dist:1\nfoo: bar"],
  ]
) {
  Deno.test(`dist export ${target} ${flag} ${JSON.stringify(value)} is refused (h48 P12)`, async () => {
    const run = await runDist(["export", target, EXAMPLE, flag, value], { timeoutMs: 15_000 });
    assert.equal(run.code, 2, run.stdout.slice(0, 300));
    assert.match(run.stderr, new RegExp(`^dist: ${flag} `, "m"));
  });
}

Deno.test("dist export systemd takes an absolute --bin and a bare name (h48 P12)", async () => {
  for (const bin of ["/opt/dist 1/dist", "dist"]) {
    const run = await runDist(["export", "systemd", EXAMPLE, "--bin", bin], { timeoutMs: 15_000 });
    assert.equal(run.code, 0, run.stderr);
  }
});
