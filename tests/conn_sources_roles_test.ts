/**
 * Connections by source in the roles (hostile34 Z1), as a user sees them:
 * a broker whose every connection is held, past its hello, by one address
 * still lets a client from another in (the hog's newest connection is
 * closed, told why), says so in `sys.stats` and its metrics; a balancer with
 * `--max-connections-per-source` refuses one address past it and lets
 * another in.
 */
import assert from "node:assert/strict";
import type { DistError } from "../wire/mod.ts";
import { startDist } from "./helpers/dist.ts";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { helloFrom } from "./helpers/from.ts";
import { waitFor } from "./helpers/raw.ts";
import { metricsUrl, promtoolCheck, sample, scrape } from "./helpers/metrics.ts";

Deno.test("broker --max-connections 8: an address holding all 8 past their hello does not keep another client out", async () => {
  const broker = await startDist([
    "broker",
    "--port",
    "0",
    "--max-connections",
    "8",
    "--metrics",
    "127.0.0.1:0",
  ]);
  const hog = Array.from({ length: 8 }, () => helloFrom(broker.port, "127.0.0.2"));
  try {
    for (const h of hog) assert.equal((await h.first())?.op, "welcome");
    const client = await connectTo(broker.address); // was OVERLOADED: Connection limit of 8 reached
    const stats = await client.call("sys.stats") as { connection_limits: Record<string, number> };
    // The process's descriptors (every port's) are far from used up here: only the port's limit.
    assert.deepEqual({ ...stats.connection_limits, descriptors: undefined }, {
      connections: 8,
      max_connections: 8,
      max_per_source: 0,
      share_when_full: 2,
      refused_full: 0,
      refused_source: 0,
      closed_no_hello: 0,
      closed_source: 1,
      descriptors: undefined,
      // The hog's 8, one closed to make room for the 9th, and this client's: every one taken.
      accepted: 9,
    });
    await waitFor(() => hog.some((h) => h.closed), 2000, "one of the hog's connections closed");
    const told = hog.flatMap((h) => h.frames).filter((f) => f.error?.code === "OVERLOADED");
    assert.equal(told.length, 1);
    assert.match(
      told[0].error!.message,
      /127\.0\.0\.2 held 8, more than the 2 one source may hold/,
    );
    assert.match(broker.stderr(), /Connection closed to make room: .* \(from 127\.0\.0\.2:\d+\)/);
    const text = await scrape(await metricsUrl(broker.stderr));
    assert.equal(sample(text, 'dist_connections_closed_for_room_total{why="source"}'), 1);
    assert.equal(sample(text, "dist_connections_accepted_total"), 9);
    assert.equal(sample(text, 'dist_connections_refused_total{bound="source"}'), 0);
    assert.equal(sample(text, 'dist_connections_refused_total{bound="descriptors"}'), 0);
    assert.equal(await promtoolCheck(text), "");
    client.close();
  } finally {
    for (const h of hog) h.socket.destroy();
    await broker.stop();
  }
});

Deno.test("balancer --max-connections-per-source 2: a third connection from one address is refused naming the bound; another address gets in", async () => {
  const servers = await startServers(1);
  const balancer = await startBalancer(servers, ["--max-connections-per-source", "2"]);
  const other = helloFrom(balancer.port, "127.0.0.2");
  try {
    const a = await connectTo(balancer.address);
    const b = await connectTo(balancer.address);
    await assert.rejects(
      connectTo(balancer.address),
      (e: DistError) =>
        e.code === "OVERLOADED" &&
        e.message === "Connection limit of 2 per source reached: 127.0.0.1 holds 2",
    );
    assert.equal((await other.first())?.op, "welcome");
    const stats = await a.call("sys.stats") as { connection_limits: Record<string, number> };
    assert.equal(stats.connection_limits.refused_source, 1);
    assert.equal(stats.connection_limits.max_per_source, 2);
    a.close();
    b.close();
  } finally {
    other.socket.destroy();
    await stopAll([balancer, ...servers]);
  }
});
