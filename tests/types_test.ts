/**
 * Typed options (config/spec.ts): a misspelt option does not compile.
 * `deno check` runs on two fixtures in tests/types/ (excluded from the
 * project's own check): the right spelling compiles, the misspelt one fails
 * with exactly one error, TS2551, at its marked line. A fixture named on
 * the command line of an excluded path would be checked for nothing, so the
 * check runs with a copy of deno.json without `exclude`.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

async function check(fixture: string): Promise<{ code: number; output: string }> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  delete config.exclude;
  config.lock = false;
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify(config));
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["check", "--config", `${dir}/deno.json`, `${ROOT}tests/types/${fixture}`],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decode = (b: Uint8Array) => new TextDecoder().decode(b);
    return { code: out.code, output: decode(out.stdout) + decode(out.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("deno check: the right option name compiles", async () => {
  const { code, output } = await check("right_option.ts");
  assert.equal(code, 0, output);
});

Deno.test("deno check: a misspelt option is one error, TS2551 at the marked line", async () => {
  const { code, output } = await check("misspelt_option.ts");
  assert.notEqual(code, 0, output);
  const errors = output.match(/TS\d+/g) ?? [];
  assert.deepEqual(errors, ["TS2551"], output);
  assert.match(output, /Property 'maxConection' does not exist/);
  assert.match(output, /Did you mean 'maxConnections'\?/);
  const lines = (await Deno.readTextFile(`${ROOT}tests/types/misspelt_option.ts`)).split("\n");
  const marked = lines.findIndex((l) => l.includes("FIXTURE-ERROR")) + 2; // 1-based, the next line
  assert.match(output, new RegExp(`misspelt_option\\.ts:${marked}:`), output);
});
