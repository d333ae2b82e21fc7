/**
 * review r46 R3 (of hostile46c F3's fix): a paged binder list is now taken
 * within 32 MiB of its instances' JSON, counted as JSON.stringify's length.
 * A hostile binder that knows it sends metadata made of empty arrays: `[],`
 * is 3 characters of JSON and a JS array of its own once decoded, so 32 MiB
 * of it is hundreds of MiB of heap, built again at every 3 s poll. README
 * says a hostile binder's pages "cannot make it hold more"; the app's heap
 * must stay within a bound of the order of that budget.
 */
import assert from "node:assert/strict";
import { binders, watchService } from "../clients/mod.ts";
import { DistError } from "../wire/mod.ts";
import { server } from "./helpers/rpc.ts";

/** Most growth of the app's heap one hostile binder's list may cause (4× the JSON budget). */
const HEAP_BOUND = 128 * 2 ** 20;

Deno.test("a hostile binder's list pages cannot take watchService's heap past a bound (r46 R3)", async () => {
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
  let pages = 0;
  const evil = server({
    name: "evil-binder",
    onRequest: (method, params) => {
      if (method === "binder.watch") throw new DistError("FRAME_TOO_LARGE", "too many instances");
      if (method !== "binder.list") throw new DistError("UNKNOWN_METHOD", method);
      pages++;
      const after = (params as { after?: string }).after;
      const k = after === undefined ? 0 : Number(after.split("#")[1]) + 1;
      return { instances, next: `svc@p#${k}` };
    },
  });
  const heap0 = Deno.memoryUsage().heapUsed;
  let peak = heap0;
  const b = binders([`127.0.0.1:${evil.addr.port}`]);
  const w = watchService(b, "svc", () => {});
  try {
    const t0 = performance.now();
    while (performance.now() - t0 < 8_000) {
      peak = Math.max(peak, Deno.memoryUsage().heapUsed);
      await new Promise((r) => setTimeout(r, 20));
    }
    const grew = peak - heap0;
    assert.ok(
      grew <= HEAP_BOUND,
      `heap grew ${
        Math.round(grew / 2 ** 20)
      } MiB at its peak over ${pages} pages of one hostile ` +
        `binder's list (RSS now ${Math.round(Deno.memoryUsage().rss / 2 ** 20)} MiB)`,
    );
  } finally {
    const stopped = w.stop();
    b.close();
    await stopped;
    await evil.close();
  }
});
