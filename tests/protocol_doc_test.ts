/**
 * docs/protocol.md is a page a user can implement a client from: its
 * Python client, run as written (standard library only) against a real
 * server and through a balancer, prints what the page says it prints.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { startBalancer } from "./helpers/balancer.ts";

const PAGE = await Deno.readTextFile(new URL("../docs/protocol.md", import.meta.url));

async function python(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("python3", { args: ["--version"] }).output();
    return out.success ? undefined : "python3 does not run";
  } catch {
    return "python3 is not installed";
  }
}
const NO_PYTHON = await python();
if (NO_PYTHON) console.warn(`protocol_doc_test: the Python client is not run: ${NO_PYTHON}`);

Deno.test("README links the protocol page inside the repository, not a file outside it", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  assert.match(readme, /\]\(docs\/protocol\.md\)/);
  assert.doesNotMatch(readme, /\.\.\/shared\/DESIGN\.md/);
});

Deno.test({
  name: "docs/protocol.md's Python client works as written, straight and through a balancer",
  ignore: NO_PYTHON !== undefined,
  async fn() {
    const code = /```python\n([\s\S]*?)```/.exec(PAGE)?.[1];
    assert.ok(code, "the page has a python block");
    const dir = await Deno.makeTempDir({ prefix: "dist_protocol_" });
    const script = `${dir}/client.py`;
    await Deno.writeTextFile(script, code);
    const server = await startDist(["server", "--port", "0", "--name", "server-doc"]);
    const balancer = await startBalancer([server]);
    try {
      for (const address of [server.address, balancer.address]) {
        const [host, port] = address.split(":");
        const out = await new Deno.Command("python3", { args: [script, host, port] }).output();
        const stderr = new TextDecoder().decode(out.stderr);
        assert.equal(out.code, 0, stderr);
        assert.equal(new TextDecoder().decode(out.stdout), "7 server-doc\n6.283185307179586\n");
      }
    } finally {
      await balancer.stop();
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
