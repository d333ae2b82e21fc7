/**
 * README's library examples (the ```ts blocks under "## Library"), run as
 * they are written (and type-checked), as programs of their own against real roles: only the
 * import (`@dist/dist/client` is this repository's clients/mod.ts) and the
 * addresses change. Each must exit 0 and print what its comments say.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { startServerRole } from "./helpers/server_role.ts";
import { startBroker } from "./helpers/broker.ts";
import { startBalancer } from "./helpers/balancer.ts";
import { startBinder } from "./helpers/binder.ts";

/** Polls `cond` every 20 ms, up to 5 s. */
async function waitFor(cond: () => Promise<boolean>): Promise<void> {
  const end = performance.now() + 5000;
  while (!(await cond())) {
    if (performance.now() > end) throw new Error("Timed out waiting for the registrations");
    await new Promise((r) => setTimeout(r, 20));
  }
}

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const README = await Deno.readTextFile(`${ROOT}README.md`);

/** The ```ts blocks of the "## Library" section, in order. */
function blocks(): string[] {
  const start = README.indexOf("\n## Library\n");
  assert.ok(start >= 0, 'README has no "## Library" section');
  const end = README.indexOf("\n## ", start + 1);
  const section = README.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
}

const asProgram = (code: string) =>
  code.replaceAll('"@dist/dist/client"', JSON.stringify(`${ROOT}clients/mod.ts`));

/** Runs one block as a program, with `addresses` replaced. */
async function run(code: string, addresses: Record<string, string>): Promise<string> {
  let program = asProgram(code);
  for (const [from, to] of Object.entries(addresses)) {
    assert.ok(program.includes(from), `the example dials ${from}`);
    program = program.replaceAll(from, to);
  }
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/example.ts`, program);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--config", `${ROOT}deno.json`, `${dir}/example.ts`],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000),
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `the example failed:\n${program}\n${stdout}\n${stderr}`);
    return stdout;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("README's library examples: four of them, and they type-check", async () => {
  assert.equal(blocks().length, 4);
  const dir = await Deno.makeTempDir();
  try {
    const files = blocks().map((code, i) => {
      Deno.writeTextFileSync(`${dir}/example_${i}.ts`, asProgram(code));
      return `${dir}/example_${i}.ts`;
    });
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["check", "--config", `${ROOT}deno.json`, ...files],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("README's library example: requests, typed and by name, a timeout, drain", async () => {
  const server = await startServerRole({ name: "server-5557" });
  try {
    const out = await run(blocks()[0], { "127.0.0.1:5556": `127.0.0.1:${server.port}` });
    assert.equal(out.trim(), "7 hi server-5557 object");
  } finally {
    await server.stop();
  }
});

Deno.test("README's library example: a service's instance found through a binder", async () => {
  const binder = await startBinder();
  const servers = [
    await startServerRole({ name: "compute-1", binders: [binder.address], service: "compute" }),
    await startServerRole({ name: "compute-2", binders: [binder.address], service: "compute" }),
  ];
  try {
    await waitFor(async () => {
      const page = await binder.call("binder.list", {}) as { instances: unknown[] };
      return page.instances.length === 2;
    });
    const out = await run(blocks()[1], { "127.0.0.1:5555": binder.address });
    assert.equal(out.trim(), "3 true compute");
  } finally {
    for (const s of servers) await s.stop();
    await binder.stop();
  }
});

Deno.test("README's library example: publish, then a subscription's retained and live messages", async () => {
  const broker = await startBroker();
  try {
    const out = await run(blocks()[2], { "127.0.0.1:8000": broker.address });
    assert.deepEqual(out.trim().split("\n"), [
      "/telephony/orange { calls: 3 } true",
      "/telephony/tim { calls: 5 } false",
    ]);
  } finally {
    await broker.stop();
  }
});

Deno.test("README's library example: a program serving its own contract through a balancer", async () => {
  const lb = await startBalancer([]);
  try {
    const out = await run(blocks()[3], {
      "127.0.0.1:8889": lb.workerAddress,
      "127.0.0.1:5556": lb.address,
    });
    assert.equal(out.trim(), "Hello, Ada");
  } finally {
    await lb.stop();
  }
});
