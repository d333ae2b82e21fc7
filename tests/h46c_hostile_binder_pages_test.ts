/**
 * hostile46c F3: what a hostile binder can make a library user hold. A
 * watch the binder refuses `FRAME_TOO_LARGE` is paged with `binder.list`,
 * up to 200 pages; the library took any page its frame limit let in (1 MiB,
 * where an honest binder sends at most a quarter of its frame) whose
 * instances carry 4 KB of metadata each (the limit) made of empty arrays.
 * So 199 pages were 200 MB of JSON and 2.7 GiB of heap for one list:
 * `watchService` over such a binder took an app from 220 MiB to 3.1 GiB of
 * RSS in 60 s (the list kept, the next poll building another). A list the
 * library builds from pages must stay within a budget of bytes an honest
 * binder's whole list fits in (200 pages of a quarter frame, 50 MiB), not
 * 200 frames.
 */
import assert from "node:assert/strict";
import { binders, watchService } from "../clients/mod.ts";
import { DistError } from "../wire/mod.ts";
import { server } from "./helpers/rpc.ts";

/** Bytes of pages an app may be made to read for one list (an honest binder's 50 MiB, and some). */
const BUDGET = 64 * 2 ** 20;

Deno.test("hostile46c F3: a binder's list pages cannot make watchService read past a bound", async () => {
  // 4 KB of metadata (MAX_META_BYTES) that costs the most heap: empty arrays.
  const meta = { a: Array.from({ length: 1355 }, () => []) };
  const instances: unknown[] = [];
  let bytes = 0;
  for (let i = 0; bytes < 990_000; i++) {
    const instance = {
      id: `svc@10.0.0.1:${1000 + i}`,
      service: "svc",
      host: "10.0.0.1",
      port: 1000 + i,
      meta,
    };
    bytes += JSON.stringify(instance).length + 1;
    instances.push(instance);
  }
  let served = 0;
  let pages = 0;
  const evil = server({
    name: "evil-binder",
    onRequest: (method, params) => {
      if (method === "binder.watch") throw new DistError("FRAME_TOO_LARGE", "too many instances");
      if (method !== "binder.list") throw new DistError("UNKNOWN_METHOD", method);
      const after = (params as { after?: string }).after;
      // Bytes of one list: a new listing (no `after`) starts again, a poll every 3 s.
      if (after === undefined) served = pages = 0;
      pages++;
      served += bytes;
      const k = after === undefined ? 0 : Number(after.split("#")[1]) + 1;
      return { instances, next: `svc@p#${k}` };
    },
  });
  const heap0 = Deno.memoryUsage().heapUsed;
  const b = binders([`127.0.0.1:${evil.addr.port}`]);
  const w = watchService(b, "svc", () => {});
  try {
    const t0 = performance.now();
    // Until the app has read past the budget for one list, or 30 s have passed.
    while (served <= BUDGET && performance.now() - t0 < 30_000) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const heap = Math.round((Deno.memoryUsage().heapUsed - heap0) / 2 ** 20);
    assert.ok(
      served <= BUDGET,
      `watchService read ${pages} pages (${Math.round(served / 2 ** 20)} MiB) of one hostile ` +
        `binder's list and kept asking; heap +${heap} MiB`,
    );
  } finally {
    // stop() waits for a paging in progress: closing the binder connection ends it.
    const stopped = w.stop();
    b.close();
    await stopped;
    await evil.close();
  }
});
