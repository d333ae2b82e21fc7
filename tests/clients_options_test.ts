/**
 * hostile47 Q23: the library's options were not checked. `connectTimeout:
 * NaN` gave `timed out after NaN ms`, `timeout: -1` failed every request
 * `timed out`, `wire.maxFrame: -1` refused a 105-byte message, and `codec:
 * "xml"` (past the type, from a configuration file) was JSON. Now
 * `connect()`, `binders()` and `serve()` refuse them at once: BAD_REQUEST
 * naming the option, as the CLI refuses its flags.
 */
import assert from "node:assert/strict";
import { binders, connect, type ConnectOptions, DistError, serve, sys } from "../clients/mod.ts";
import { startDist } from "./helpers/dist.ts";

/** Asserts `f` throws (or rejects) BAD_REQUEST matching `pattern`, before any dial. */
async function refused(f: () => unknown, pattern: RegExp): Promise<void> {
  await assert.rejects(async () => await f(), (err) => {
    assert.ok(err instanceof DistError, String(err));
    assert.equal(err.code, "BAD_REQUEST", err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

Deno.test("connect(), binders() and serve() refuse an option out of its range, naming it", async () => {
  const server = await startDist(["server", "--port", "0"]);
  try {
    const cases: [ConnectOptions, RegExp][] = [
      [{ connectTimeout: NaN }, /connect\(\): connectTimeout must be a duration .*got NaN/],
      [{ connectTimeout: -5 }, /connectTimeout must be .*got -5/],
      [{ timeout: -1 }, /timeout must be a duration from 1 ms .*got -1/],
      [{ timeout: Infinity }, /timeout must be .*got Infinity/],
      [{ wire: { maxFrame: -1 } }, /wire\.maxFrame must be an integer from 64 to 67108864, got -1/],
      [{ wire: { liveness: 1.5 } }, /wire\.liveness must be an integer/],
      [{ codec: "xml" as "json" }, /codec must be "json" or "msgpack", got "xml"/],
      [{ name: "" }, /name must be a non-empty string/],
    ];
    for (const [options, pattern] of cases) {
      await refused(() => connect(server.address, options), pattern);
    }
    await refused(
      () => connect({ binders: [server.address], service: "s", wait: -1 }),
      /wait must be a duration from 0 ms .*got -1/,
    );
    await refused(() => binders([server.address], { timeout: NaN }), /binders\(\): timeout/);
    await refused(
      () =>
        serve(server.address, { contracts: [sys], handlers: {} as never }, {
          capacity: 1,
          codec: "xml" as "json",
        }),
      /serve\(\): codec must be/,
    );
    // What is in range still connects.
    const conn = await connect(server.address, {
      connectTimeout: 2000,
      timeout: 2000,
      wire: { maxFrame: 64 * 1024, heartbeatMs: 0 },
      codec: "msgpack",
    });
    try {
      assert.equal(await conn.request("add", { a: 2, b: 3 }), 5);
    } finally {
      conn.close();
    }
  } finally {
    await server.stop();
  }
});
