import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { runDist, startDist } from "./helpers/dist.ts";
import { checkCompiledUp } from "./helpers/up.ts";

const DENORT = Deno.env.get("DENORT_BIN");
const ROOT = fileURLToPath(new URL("..", import.meta.url));

// `deno compile` downloads its runtime base (denort) unless DENORT_BIN names
// one; these machines cannot reach the download server, so without it the
// test is skipped and its name says why.
Deno.test({
  name: DENORT
    ? "deno task compile builds a dist binary that serves, answers and runs dist up"
    : "deno task compile builds a dist binary (skipped: DENORT_BIN not set, denort cannot be downloaded here)",
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
      // The helpers run DIST_BIN instead of `deno run main.ts` when it is set.
      Deno.env.set("DIST_BIN", bin);
      const version = await runDist(["--version"]);
      assert.equal(version.code, 0);
      assert.match(version.stdout, /^dist \d+\.\d+\.\d+/);
      const server = await startDist(["server", "--port", "0"]);
      try {
        const res = await runDist(["client", "--connect", server.address, "add", "3", "4"]);
        assert.equal(res.stdout.trim(), "7");
      } finally {
        await server.stop();
      }
      // dist up starts copies of the binary itself.
      await checkCompiledUp(bin);
    } finally {
      Deno.env.delete("DIST_BIN");
      await Deno.remove(dir, { recursive: true });
    }
  },
});
