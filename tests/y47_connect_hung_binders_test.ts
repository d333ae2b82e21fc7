/**
 * connect({ binders, service }) through binders that hang (accept, never
 * answer) ends within its `connectTimeout` with the documented NOT_FOUND
 * naming the service and the binders (h47 Q19: `UNAVAILABLE: No connection
 * to :0 within 2000 ms` for 1,000 ms given: each binder call waited the
 * binder client's own 2 s, so the lookup never ended before the
 * connection's own wait did). NOT_FOUND (not TIMEOUT) is the outcome that
 * says the lookup ended first: the connection's own wait is a second longer.
 */
import assert from "node:assert/strict";
import { connect, DistError } from "../clients/mod.ts";

async function hungBinders<T>(n: number, body: (addresses: string[]) => Promise<T>): Promise<T> {
  const listeners = Array.from(
    { length: n },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const held: Deno.Conn[] = [];
  const accepting = listeners.map(async (l) => {
    try {
      for await (const c of l) held.push(c);
    } catch { /* closed */ }
  });
  try {
    return await body(listeners.map((l) => `127.0.0.1:${(l.addr as Deno.NetAddr).port}`));
  } finally {
    for (const l of listeners) l.close();
    for (const c of held) c.close();
    await Promise.all(accepting);
  }
}

for (const connectTimeout of [1000, 3000]) {
  Deno.test(`connect() through 3 hung binders ends within connectTimeout ${connectTimeout} ms, NOT_FOUND`, async () => {
    await hungBinders(3, async (binders) => {
      const err = await connect({ binders, service: "y47-hung" }, { connectTimeout }).then(
        (c) => (c.close(), undefined),
        (e) => e as DistError,
      );
      assert.ok(err instanceof DistError, "connected to nothing?");
      assert.equal(err.code, "NOT_FOUND", err.message);
      assert.match(err.message, /service "y47-hung"/);
      assert.match(err.message, new RegExp(`asked ${binders.join(", ")}: no binder answered`));
    });
  });
}
