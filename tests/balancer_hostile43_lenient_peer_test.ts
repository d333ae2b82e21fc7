/**
 * hostile43a A7: error answers judged by replay (verify.ts) let one client
 * take out the backends it chooses whenever backends differ in what they
 * accept, as in a rolling upgrade where the new version checks its params
 * and the old one does not. A client sends, one at a time, requests the
 * strict server refuses BAD_REQUEST and a lenient worker answers: each
 * refusal is replayed on the worker, answered there with a result, so it
 * "answered an error others did not"; 5 in a row take the server out (10 s,
 * then 20 s … up to 5 min), and every client's calls go to the worker
 * alone. hostile36 J1's rule (a failure is the backend's only if another
 * backend succeeds) holds only for backends that agree on what a bad
 * request is; BAD_REQUEST blames the request by the protocol's own word.
 *
 * A user checks that one client's bad requests leave the server in rotation.
 */
import assert from "node:assert/strict";
import { dial, type Peer } from "../wire/mod.ts";
import { backendsOf, connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";

Deno.test("one client's requests a strict server refuses BAD_REQUEST and a lenient worker answers leave the server in rotation", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers);
  const client = await connectTo(lb.address, 10_000);
  const [host, port] = lb.workerAddress.split(":");
  // An older, lenient implementation of add: no check of its params.
  const worker: Peer = await dial({ host, port: Number(port) }, {
    role: "worker",
    name: "lenient",
    onRequest: (method, params) => {
      if (method === "sys.ping") return { pong: true };
      const { a, b } = params as { a: unknown; b: unknown };
      return String(a) + String(b);
    },
  });
  try {
    await worker.call("worker.register", { name: "lenient", capacity: 16 });
    // Both serve: the worker is proven by its first task.
    for (let i = 0; i < 20; i++) await client.call("add", { a: 1, b: i });
    const served = (await backendsOf(client)).map((b) => `${b.name}:${b.served}`);
    const codes = new Map<string, number>();
    // 60, 100 ms apart: replays are sampled (at most one a second per backend), and 20 were
    // too few to be sure of five verdicts (c43 b3a9db5 passed with 20 by chance; 80: down).
    for (let i = 0; i < 60; i++) {
      const code = await client.call("add", { a: "x", b: i }).then(() => "result", (e) => e.code);
      codes.set(code, (codes.get(code) ?? 0) + 1);
      await sleep(100);
    }
    const server = (await backendsOf(client)).find((b) => b.name !== "lenient")!;
    const summary = `served before ${served.join(", ")}; answers ${
      JSON.stringify([...codes])
    }; server ${server.state} (${server.reason}); load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.equal(server.state, "up", summary);
  } finally {
    client.close();
    worker.close();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
});
