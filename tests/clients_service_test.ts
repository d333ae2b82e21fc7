/**
 * connect({ binders, service }): a connection to some instance of a service
 * found through a real binder, that moves to another instance when the one
 * in use is SIGKILLed (idempotent requests in flight are sent again there;
 * non-idempotent ones fail UNAVAILABLE with `mayHaveRun`), and a clear
 * NOT_FOUND for a service without instances.
 */
import assert from "node:assert/strict";
import { connect, DistError, ops } from "../clients/mod.ts";
import { type LocalBinder, startBinder } from "./helpers/binder.ts";
import { type DistProcess, startDist } from "./helpers/dist.ts";
import { within } from "./helpers/raw.ts";

/** Waits (up to 5 s) until the binder lists `count` instances. */
async function registered(binder: LocalBinder, count: number): Promise<void> {
  const end = performance.now() + 5000;
  for (;;) {
    const page = await binder.call("binder.list", {}) as { instances: unknown[] };
    if (page.instances.length === count) return;
    if (performance.now() > end) throw new Error(`${page.instances.length} instances registered`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function startServers(binder: string, names: string[]): Promise<Map<string, DistProcess>> {
  const servers = new Map<string, DistProcess>();
  for (const name of names) {
    servers.set(
      name,
      await startDist([
        "server",
        "--port",
        "0",
        "--name",
        name,
        "--binders",
        binder,
        "--service",
        "compute",
        "--ttl",
        "5000",
      ]),
    );
  }
  return servers;
}

Deno.test("connect({ binders, service }): the instance in use SIGKILLed, requests go on on the other", async () => {
  const binder = await startBinder();
  const servers = await startServers(binder.address, ["one", "two"]);
  const conn = await connect({ binders: [binder.address], service: "compute" }, {
    timeout: 8000,
  });
  try {
    await registered(binder, 2);
    const first = await conn.exchange(ops.methods.echo, { text: "hi" });
    assert.equal(first.result, "hi");
    const used = first.by!;
    const other = used === "one" ? "two" : "one";
    assert.equal(conn.remote?.name, used);
    assert.equal(conn.instance?.port, conn.address.port);

    // In flight when the server dies: the idempotent one is sent again on the
    // other instance, the non-idempotent one is not (it may have run).
    const retried = conn.exchange(ops.methods.sleep, { ms: 300 });
    const once = conn.request("sleep", { ms: 300 }, { idempotent: false }).then(
      () => undefined,
      (err) => err,
    );
    await new Promise((r) => setTimeout(r, 50));
    await servers.get(used)!.stop("SIGKILL");

    const again = await within(retried, 8000, "the retried request");
    assert.deepEqual(again, { result: 300, by: other });
    const refused = await once;
    assert.ok(refused instanceof DistError, String(refused));
    assert.equal(refused.code, "UNAVAILABLE");
    assert.match(refused.message, /lost with sleep in flight; not sent again/);
    assert.deepEqual(refused.data, { mayHaveRun: true });

    for (let i = 0; i < 20; i++) {
      const r = await conn.exchange(ops.methods.add, { a: i, b: 1 });
      assert.deepEqual(r, { result: i + 1, by: other });
    }
    assert.equal(conn.remote?.name, other);
    assert.equal(conn.instance?.id, `compute@127.0.0.1:${conn.address.port}`);
  } finally {
    conn.close();
    for (const s of servers.values()) await s.stop();
    await binder.stop();
  }
});

Deno.test("connect({ binders, service }): a service without instances is NOT_FOUND, naming it", async () => {
  const binder = await startBinder();
  const servers = await startServers(binder.address, ["solo"]);
  try {
    await registered(binder, 1);
    await assert.rejects(
      connect({ binders: [binder.address], service: "nothing" }, { connectTimeout: 2000 }),
      (err) => {
        assert.ok(err instanceof DistError);
        assert.equal(err.code, "NOT_FOUND");
        assert.match(err.message, /No instance of service "nothing"/);
        assert.match(err.message, /services registered: compute/);
        return true;
      },
    );
    // Waiting for one: the wait ends with the same error, not an address never dialed.
    await assert.rejects(
      connect({ binders: [binder.address], service: "nothing" }, {
        connectTimeout: 300,
        waitOnFirstConnect: true,
      }),
      (err) =>
        err instanceof DistError && err.code === "NOT_FOUND" && /"nothing"/.test(err.message),
    );
    // No binder at all: the same code, saying no binder answered.
    await assert.rejects(
      connect({ binders: ["127.0.0.1:1"], service: "compute" }, { connectTimeout: 2000 }),
      (err) =>
        err instanceof DistError && err.code === "NOT_FOUND" &&
        /no binder answered/.test(err.message),
    );
  } finally {
    for (const s of servers.values()) await s.stop();
    await binder.stop();
  }
});
