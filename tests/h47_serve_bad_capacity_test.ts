/**
 * Hostile review h47 Q22 (medium): `serve(balancer, service, { capacity })`
 * takes any capacity (0, -1, 1.5, NaN, 1e9) without a word; the balancer
 * refuses the registration (`BAD_REQUEST: worker.register: capacity must be
 * an integer from 1 to 10000`), the worker's onConnect throws it, the
 * connection closes and is dialed again, for ever: `ended` never settles,
 * `registered()` only times out, and the reason is in a log line a library
 * user's program does not configure. The one refusal that ends serving is
 * UNKNOWN_METHOD (not a worker port); a BAD_REQUEST about the worker's own
 * options cannot pass by dialing again either. (clients/worker.ts's comment
 * "it may cap a capacity above its own limit" is not what the balancer does:
 * 1e9 is refused.)
 *
 * Expected: a capacity the balancer cannot take ends serving with that
 * BAD_REQUEST (or serve() throws it at once).
 */
import assert from "node:assert/strict";
import { type Contract, DistError, method, obj, serve, str } from "../clients/mod.ts";
import { startDist } from "./helpers/dist.ts";

const greeter = {
  service: "greeter",
  prefix: "greet.",
  methods: { hello: method("greet.hello", { params: obj({ name: str }), result: str }) },
  events: {},
} as const satisfies Contract;

Deno.test("h47 Q22: serve() with a capacity the balancer refuses ends with its BAD_REQUEST", async () => {
  const balancer = await startDist(["balancer", "--port", "0", "--worker-port", "0"]);
  try {
    let workerPort = 0;
    for (let i = 0; i < 100 && workerPort === 0; i++) {
      workerPort = Number(
        /Listening for workers on [\d.]+:(\d+)/.exec(balancer.stderr())?.[1] ?? 0,
      );
      if (workerPort === 0) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(workerPort > 0, balancer.stderr());
    let outcome: unknown;
    try {
      const w = serve(`127.0.0.1:${workerPort}`, {
        contracts: [greeter],
        handlers: { "greet.hello": (p) => p.name },
      }, { capacity: 0, name: "h47-q22" });
      outcome = await Promise.race([
        w.ended,
        new Promise((r) => setTimeout(() => r("still dialing"), 8000)),
      ]);
      await w.stop();
    } catch (err) {
      outcome = err;
    }
    assert.ok(
      outcome instanceof DistError && outcome.code === "BAD_REQUEST",
      `serve() with capacity 0: ${outcome instanceof Error ? outcome.message : String(outcome)} ` +
        `after 8 s`,
    );
  } finally {
    await balancer.stop();
  }
});
