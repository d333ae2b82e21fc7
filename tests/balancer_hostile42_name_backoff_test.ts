/**
 * hostile42a Y5: a worker that served and leaves backed off passes its
 * backoff to the next worker registered under its name (workers.ts
 * `#forget`/`#kept`); hostile39a P8's guard ("one that never served
 * passes none on") asks only for one task served. A fake that takes a free
 * name, answers one task right (any fake can add), then answers INTERNAL
 * (out after 5, for 10 s) and leaves, made the real worker of that name
 * wait 7 s for its first task (104 ms after a fake that served none); a
 * second round doubled it: the real one registered "out for 20 s more".
 * Here the fake comes from another address (127.0.0.2) than the real one.
 */
import assert from "node:assert/strict";
import net from "node:net";
import type { Peer } from "../wire/mod.ts";
import {
  backendsOf,
  connectTo,
  eventually,
  startBalancer,
  startServers,
  stopAll,
} from "./helpers/balancer.ts";
import { addingWorker, onJsonFrames } from "./helpers/hostile42.ts";
import { HELLO, jsonFrame } from "./helpers/raw.ts";

/**
 * A fake worker `name` from 127.0.0.2: answers its first task with the sum,
 * every later one INTERNAL, and checks; resolves once registered.
 */
function fake(address: string, name: string): Promise<net.Socket> {
  const [host, port] = address.split(":");
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port: Number(port), localAddress: "127.0.0.2" });
    let welcomed = false;
    let tasks = 0;
    socket.on("error", reject);
    socket.on("connect", () => socket.write(jsonFrame({ ...HELLO, role: "worker", name })));
    onJsonFrames(socket, (msg) => {
      if (!welcomed) {
        welcomed = true;
        socket.write(
          jsonFrame({ id: 1, method: "worker.register", params: { name, capacity: 16 } }),
        );
      } else if (msg.id === 1 && msg.method === undefined) {
        if (msg.error !== undefined) reject(new Error(JSON.stringify(msg.error)));
        else resolve(socket);
      } else if (msg.method === "sys.ping") {
        socket.write(jsonFrame({ id: msg.id, result: { pong: true } }));
      } else if (msg.method !== undefined && msg.id !== undefined) {
        const { a, b } = msg.params as { a: number; b: number };
        socket.write(jsonFrame(
          ++tasks === 1
            ? { id: msg.id, result: a + b }
            : { id: msg.id, error: { code: "INTERNAL", message: "no" } },
        ));
      }
    });
  });
}

Deno.test("a fake that served one task and left taken out passes no backoff to the real worker of its name (hostile42a Y5)", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers);
  const client = await connectTo(lb.address);
  let stop = false;
  const loops = Array.from({ length: 4 }, async () => {
    for (let i = 0; !stop; i++) await client.call("add", { a: i, b: 1 }).catch(() => {});
  });
  const peers: Peer[] = [];
  let holder: net.Socket | undefined;
  try {
    holder = await fake(lb.workerAddress, "w1");
    const w1 = async () => (await backendsOf(client)).find((b) => b.name === "w1");
    await eventually(async () => (await w1())?.state === "down", 10_000, "the fake taken out");
    const out = await w1();
    holder.destroy();
    await eventually(async () => (await w1()) === undefined, 5_000, "the fake gone");
    const t0 = performance.now();
    peers.push(await addingWorker(lb.workerAddress, "w1"));
    let served = -1;
    while (performance.now() - t0 < 4_000) {
      if (((await w1())?.served ?? 0) > 0) {
        served = performance.now() - t0;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const summary = `fake: ${out?.reason} (served ${out?.served}); real w1: ${
      served < 0 ? "no task in 4 s" : `first task after ${served.toFixed(0)} ms`
    }, ${(await w1())?.reason}`;
    console.log(summary);
    // main: no task in 4 s ("back within its backoff").
    assert.ok(served >= 0 && served < 2_000, summary);
  } finally {
    stop = true;
    await Promise.all(loops);
    for (const p of peers) p.close();
    holder?.destroy();
    client.close();
    await stopAll([lb, ...servers]);
  }
});
