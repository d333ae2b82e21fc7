/**
 * No product file parses JSON text into objects with bare JSON.parse: V8 in
 * Deno 2.9.6 misreads escaped keys after an earlier key with a backslash
 * (docs/v8_json_keys.md), so peer and file text goes through
 * wire/json_parse.ts parseJson. The calls left are of one string literal
 * (no object, no key), each counted here; a new one fails this test.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const SKIP = new Set(["tests", "bench", "docs", "node_modules", "test-artifacts", ".probe", ".ci"]);

/** File → the bare JSON.parse calls it may keep, and why. */
const ALLOWED: Record<string, { calls: number; why: string }> = {
  "wire/json_parse.ts": { calls: 3, why: "the workaround itself; string literals" },
  "wire/pubsub_json.ts": { calls: 1, why: "a topic: one string literal" },
  "roles/broker/json_to_msgpack.ts": { calls: 1, why: "one string literal" },
  "config/_locate.ts": { calls: 1, why: "a TOML key's escapes: one string literal" },
  "roles/_broker_link.ts": {
    calls: 1,
    why: "a reviver that reads each number's source text (h48 P6); the value is not kept",
  },
};

async function* productFiles(dir: string, rel = ""): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir + rel)) {
    const path = rel === "" ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory && !SKIP.has(path)) yield* productFiles(dir, path);
    else if (e.isFile && path.endsWith(".ts")) yield path;
  }
}

Deno.test("product files call JSON.parse only where a string literal is parsed", async () => {
  const found: Record<string, number> = {};
  for await (const path of productFiles(ROOT)) {
    const text = await Deno.readTextFile(ROOT + path);
    const calls = text.split("\n").filter((line) =>
      /JSON\.parse\s*\(/.test(line) && !/^\s*(\/\/|\*)/.test(line)
    ).length;
    if (calls > 0) {
      found[path] = calls;
    }
  }
  const allowed = Object.fromEntries(Object.entries(ALLOWED).map(([k, v]) => [k, v.calls]));
  assert.deepEqual(
    found,
    allowed,
    "use parseJson (wire/mod.ts) for JSON text from a peer or a file, not JSON.parse",
  );
});
