/**
 * hostile32 X10, as a user sees it: a client that keeps many slow requests
 * out (`sleep`) over many connections from one address must not hold every
 * backend slot, during its attack nor after it left (its requests still run
 * on the servers: there is no cancel on the wire). Before the fix every
 * other client's request waited `--queue-timeout`, then failed OVERLOADED.
 */
import assert from "node:assert/strict";
import net from "node:net";
import type { DistError } from "../wire/mod.ts";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { concat, frame, jsonFrame } from "./helpers/raw.ts";

/** `conns` connections from `from`, each sending `each` `sleep` requests of `ms`; resolves once all are welcomed. */
async function slowHog(port: number, options: { conns: number; each: number; ms: number }) {
  const sockets: net.Socket[] = [];
  await Promise.all(Array.from({ length: options.conns }, () =>
    new Promise<void>((ready, fail) => {
      const socket = net.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.2" }, () => {
        socket.write(jsonFrame({ op: "hello", v: 1, codec: "json", role: "client", name: "hog" }));
      });
      sockets.push(socket);
      let welcomed = false;
      socket.on("error", (err) => welcomed ? undefined : fail(err));
      socket.on("data", () => {
        if (welcomed) return;
        welcomed = true;
        const requests = Array.from(
          { length: options.each },
          (_, i) =>
            frame(JSON.stringify({ id: i + 1, method: "sleep", params: { ms: options.ms } })),
        );
        socket.write(concat(requests));
        ready();
      });
    })));
  return { close: () => sockets.forEach((s) => s.destroy()) };
}

/** `n` `add` calls, four at a time, from 127.0.0.1: how many were answered, and the errors. */
async function legit(address: string, n: number): Promise<{ ok: number; errors: string[] }> {
  const client = await connectTo(address);
  let ok = 0;
  const errors: string[] = [];
  try {
    for (let i = 0; i < n; i += 4) {
      await Promise.all(
        [0, 1, 2, 3].map((k) =>
          client.call("add", { a: i + k, b: 1 }, { timeout: 10_000 }).then(
            (r) => r === i + k + 1 ? ok++ : errors.push(`wrong answer ${r}`),
            (e) => errors.push(`${(e as DistError).code}: ${(e as Error).message}`),
          )
        ),
      );
    }
  } finally {
    client.close();
  }
  return { ok, errors };
}

Deno.test("slow requests from many connections of one address leave slots for everyone else, during and after", async () => {
  const servers = await startServers(2);
  // 2 × 16 slots; the hog wants 64 of them.
  const lb = await startBalancer(servers, ["--max-inflight", "16", "--queue-timeout", "1s"]);
  let hog: { close(): void } | undefined;
  try {
    hog = await slowHog(lb.port, { conns: 8, each: 8, ms: 8000 });
    await new Promise((r) => setTimeout(r, 500));
    const during = await legit(lb.address, 40);
    assert.deepEqual(during, { ok: 40, errors: [] }, "served while the hog holds its slots");
    hog.close();
    await new Promise((r) => setTimeout(r, 300));
    const after = await legit(lb.address, 40);
    assert.deepEqual(
      after,
      { ok: 40, errors: [] },
      "served after it left, its sleeps still running",
    );
  } finally {
    hog?.close();
    await stopAll([lb, ...servers]);
  }
});
