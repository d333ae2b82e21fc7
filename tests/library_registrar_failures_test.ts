/**
 * A Registrar reports each passing failure to the application
 * (`onFailure`), not only its final refusal (`ended`) and the log: a binder
 * down while registering, and a binder that forgot the instance (restarted
 * without its data) while renewing.
 */
import assert from "node:assert/strict";
import { binders, DistError, register, type RegistrarFailure } from "../clients/mod.ts";
import { startBinder, waitUntil } from "./helpers/binder.ts";
import { freePort } from "./helpers/dist.ts";

Deno.test("Registrar.onFailure: each failed try is told, with what was tried and when it is tried again", async () => {
  const port = freePort();
  const r = register(binders([`127.0.0.1:${port}`]), {
    service: "m48",
    host: "127.0.0.1",
    port: 5998,
    ttl_ms: 600,
  });
  const failures: RegistrarFailure[] = [];
  const stop = r.onFailure((f) => failures.push(f));
  // A listener that throws is logged, and the others still hear.
  r.onFailure(() => {
    throw new Error("a listener's own bug");
  });
  try {
    // No binder yet: registering fails, and goes on.
    await waitUntil(() => failures.length >= 2, "two failed registrations", 10_000);
    assert.deepEqual(failures.slice(0, 2).map((f) => [f.action, f.failures]), [
      ["register", 1],
      ["register", 2],
    ]);
    assert.ok(failures.every((f) => f.error instanceof DistError), String(failures[0].error));
    assert.ok(
      failures[0].retryInMs > 0 && failures[0].retryInMs <= 200,
      String(failures[0].retryInMs),
    );
    // The binder comes: registered.
    let b = await startBinder({ port });
    try {
      assert.equal(await r.registered(10_000), true);
      // It restarts without the instance: the next renewal is told NOT_FOUND, then it registers again.
      failures.length = 0;
      await b.stop();
      b = await startBinder({ port });
      await waitUntil(
        () => failures.some((f) => f.action === "renew" && f.error.code === "NOT_FOUND"),
        "a renewal told NOT_FOUND",
        10_000,
      );
      await waitUntil(() => r.id !== undefined, "registered again", 10_000);
      stop();
      const heard = failures.length;
      await r.stop();
      assert.equal(failures.length, heard, "heard after it stopped listening");
      assert.equal(await r.ended, undefined);
    } finally {
      await b.stop();
    }
  } finally {
    await r.stop();
  }
});
