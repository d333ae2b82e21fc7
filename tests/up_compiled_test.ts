/**
 * `dist up` from a compiled `dist`: the launcher starts copies of the binary
 * itself (Deno.execPath() is `dist`, not `deno`). Needs DENORT_BIN, like
 * compile_test.ts: `deno compile` cannot download its runtime base here.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { linesOf, stopCleanly, withUp } from "./helpers/up.ts";

const DENORT = Deno.env.get("DENORT_BIN");
const ROOT = fileURLToPath(new URL("..", import.meta.url));

Deno.test({
  name: DENORT
    ? "a compiled dist runs dist up with copies of itself"
    : "a compiled dist runs dist up with copies of itself (skipped: DENORT_BIN not set, denort cannot be downloaded here)",
  ignore: !DENORT,
  async fn() {
    const dir = await Deno.makeTempDir();
    const bin = `${dir}/dist`;
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["compile", "-A", "--output", bin, "main.ts"],
        cwd: ROOT,
      }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const topology = '[[server]]\nport = 0\n[[client]]\nconnect = "server"\nrandom = 5\n';
      await withUp(topology, [], async (up) => {
        await up.waitFor(/client exited \(exit code 0\)/);
        const [, pid] = (await up.waitFor(/server started, pid (\d+)/)).map(Number);
        // The child is the binary itself, not deno running main.ts.
        const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
        assert.deepEqual(argv.slice(0, 2), [bin, "server"]);
        const { stdout } = await stopCleanly(up);
        assert.match(stdout, /^dist up: server ready at 127\.0\.0\.1:\d+/m);
        assert.match(linesOf(stdout, "client").at(-1)!, /^5 requests: 5 ok, 0 errors/);
      }, { bin });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
