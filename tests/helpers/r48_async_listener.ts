/**
 * For tests/r48_registrar_async_listener_test.ts: a Registrar whose binder is down, with an async
 * onFailure listener that rejects (an application's alert that fails). Prints `alive after N`
 * once it has heard N >= 2 failures and is still running, then stops. Deno.args[0]: the binder.
 */
import { binders, register } from "../../clients/mod.ts";

const r = register(binders([Deno.args[0]]), {
  service: "r48",
  host: "127.0.0.1",
  port: 5998,
  ttl_ms: 600,
});
let heard = 0;
r.onFailure(async (f) => {
  heard++;
  await Promise.resolve();
  throw new Error(`the alert failed (${f.failures})`);
});
const end = performance.now() + 10_000;
while (heard < 2 && performance.now() < end) await new Promise((res) => setTimeout(res, 50));
await new Promise((res) => setTimeout(res, 200));
console.log(`alive after ${heard}`);
await r.stop();
