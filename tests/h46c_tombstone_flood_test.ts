/**
 * hostile46c F9: one client within its `--max-per-source` fills every peer
 * binder with tombstones, and the peers then skip what real servers register.
 * Short leases (`ttl_ms` 100, the minimum) of new ids, never more live at
 * once than the client's share, each leave a tombstone for a minute; a
 * registration made on a full binder takes the oldest tombstone's place
 * (README), but entries new to a peer may fill only nine tenths of it, and
 * past that they are skipped (`overflow`): tombstones included. With the
 * default settings and `--users`, a user allowed to register only `junk`
 * made 124,000 short leases in 45 s; the other binder held 90,000 of its
 * tombstones, and a `compute` server registered on the first binder was
 * `NOT_FOUND` on the second (overflow 82,226) for as long as it went on.
 * What a server registers on one binder must reach its peers whatever
 * tombstones a client made.
 */
import assert from "node:assert/strict";
import { connectTo, type LocalBinder, startBinder, waitUntil } from "./helpers/binder.ts";
import { freePort } from "./helpers/dist.ts";

const TOKEN = "cluster-token-for-h46c-f9";

async function pair(maxInstances: number): Promise<[LocalBinder, LocalBinder]> {
  const [pa, pb] = [freePort(), freePort()];
  const peers = [`127.0.0.1:${pa}`, `127.0.0.1:${pb}`];
  return await Promise.all([
    startBinder({ port: pa, peers, token: TOKEN, maxInstances }),
    startBinder({ port: pb, peers, token: TOKEN, maxInstances }),
  ]);
}

Deno.test("hostile46c F9: short leases of one client do not hide a real server from the peer binders", async () => {
  // --max-instances 400: each source may hold 100 live; peers may fill 360 of each binder.
  const [a, b] = await pair(400);
  const mallory = await connectTo(a.address, "client", undefined, TOKEN);
  try {
    let n = 0;
    // 600 short leases, 100 at a time (each batch gone before the next): within the share.
    for (let round = 0; round < 6; round++) {
      await Promise.all(Array.from({ length: 100 }, () =>
        mallory.call("binder.register", {
          service: "junk",
          host: `10.0.${Math.floor(n / 250)}.${n++ % 250}`,
          port: 1000,
          ttl_ms: 100,
        })));
      await new Promise((r) => setTimeout(r, 150));
    }
    // Every tombstone has reached b by now (pushes, then a round of anti-entropy).
    await new Promise((r) => setTimeout(r, 1500));
    const { id } = await a.call("binder.register", {
      service: "compute",
      host: "127.0.0.1",
      port: 5557,
      ttl_ms: 30_000,
    }) as { id: string };
    let found: unknown;
    try {
      await waitUntil(
        async () => {
          try {
            found = await b.call("binder.lookup", { service: "compute" });
            return true;
          } catch {
            return false;
          }
        },
        "the server on the peer",
        4000,
      );
    } catch {
      // reported below
    }
    const stats = await b.call("sys.stats", {}) as { tombstones: number; overflow: number };
    assert.equal(
      (found as { id?: string } | undefined)?.id,
      id,
      `a server registered on one binder was not found on its peer within 4 s: the peer holds ` +
        `${stats.tombstones} tombstones of one client's short leases, overflow ${stats.overflow}`,
    );
  } finally {
    mallory.close();
    await Promise.all([a.stop(), b.stop()]);
  }
});
