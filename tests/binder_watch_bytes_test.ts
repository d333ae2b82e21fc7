/**
 * binder.watch answers with the service's whole list: one that cannot go in
 * a frame is refused before the watch is kept (hostile33 Y13: meta sized in
 * characters went out as 3 bytes each, the answer was refused and the watch
 * stayed).
 */
import assert from "node:assert/strict";
import { reg, startBinder } from "./helpers/binder.ts";
import { DistError } from "../wire/mod.ts";

const META = { m: "€".repeat(4080) }; // 4,088 characters of JSON: 12 KB of UTF-8

Deno.test("binder.watch of a list past the frame in UTF-8 is refused and not kept; one that fits is answered", async () => {
  const b = await startBinder();
  try {
    for (let i = 0; i < 60; i++) {
      await b.call("binder.register", reg(2000 + i, { service: "w", meta: META }));
    }
    // 60 × 12 KB: within 1 MiB, past a quarter of it: measured, and answered.
    const ok = await b.call("binder.watch", { service: "w" }) as { instances: unknown[] };
    assert.equal(ok.instances.length, 60);
    await b.call("binder.unwatch", { service: "w" });
    for (let i = 60; i < 250; i++) {
      await b.call("binder.register", reg(2000 + i, { service: "w", meta: META }));
    }
    // 250 × 12 KB = 3 MB of UTF-8 (1 MB of characters).
    await assert.rejects(
      () => b.call("binder.watch", { service: "w" }),
      (err) =>
        err instanceof DistError && err.code === "FRAME_TOO_LARGE" &&
        /binder\.list/.test(err.message),
    );
    const stats = await b.call("sys.stats", {}) as { watchers: number };
    assert.equal(stats.watchers, 0);
  } finally {
    await b.stop();
  }
});
