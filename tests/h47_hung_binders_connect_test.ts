/**
 * Hostile review h47 Q19 (medium): `connect({ binders, service })` when the
 * binders hang (accept, never answer: a frozen binder's kernel still
 * accepts) fails with `UNAVAILABLE: No connection to :0 within 6000 ms`: an
 * address that was never dialed (":0", the dialer's placeholder), no word of
 * the service or the binders asked, and neither of the codes its doc comment
 * promises (`TIMEOUT when connecting takes longer than connectTimeout,
 * NOT_FOUND when the service has no instance (or no binder answers)`; README:
 * "fails connect() with NOT_FOUND naming the service and what the binders
 * know"). With refusing binders the same call says `NOT_FOUND: No instance
 * of service "x" (asked …: no binder answered)` in 6 ms. It also overruns
 * `connectTimeout` (1,000 ms given: 2,000 ms; each binder call waits the
 * binder client's own 2 s).
 *
 * Expected: the error names the service and the binders asked, with
 * NOT_FOUND (or TIMEOUT), never ":0".
 */
import assert from "node:assert/strict";
import { connect, DistError } from "../clients/mod.ts";

Deno.test("h47 Q19: connect() to a service through hung binders says which service and binders", async () => {
  const listeners = [0, 1, 2].map(() => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const held: Deno.Conn[] = [];
  const accepting = listeners.map(async (l) => {
    try {
      for await (const c of l) held.push(c);
    } catch { /* closed */ }
  });
  const binders = listeners.map((l) => `127.0.0.1:${(l.addr as Deno.NetAddr).port}`);
  try {
    const err = await connect({ binders, service: "h47-q19" }, { connectTimeout: 2000 }).then(
      (c) => {
        c.close();
        return undefined;
      },
      (e) => e as DistError,
    );
    assert.ok(err !== undefined, "connected to nothing?");
    assert.doesNotMatch(err.message, /:0\b/, `names an address never dialed: ${err.message}`);
    assert.match(err.message, /h47-q19/, `does not name the service: ${err.code}: ${err.message}`);
    assert.ok(["NOT_FOUND", "TIMEOUT"].includes(err.code), `code ${err.code}: ${err.message}`);
  } finally {
    for (const l of listeners) l.close();
    for (const c of held) c.close();
    await Promise.all(accepting);
  }
});
