/**
 * Hostile review h47b N8 (stop 47's G8 fix, roles/balancer/msgpack_job.ts):
 * a MessagePack request whose params pass the frame as JSON is refused at
 * once "unless a backend speaks MessagePack (it takes params of any size
 * as JSON)". Admitted so, it is then dispatched by the policy to ANY
 * backend: on a JSON backend its send throws FRAME_TOO_LARGE
 * (writeRequest), answered to the client. In a mixed pool (a JSON server
 * and a worker that registered in MessagePack) half such calls fail,
 * though a backend that takes them is up and idle; and when the worker
 * port is open, any process that registers one MessagePack worker turns
 * G8's refusal and its tarpit off for every client.
 * Such a job must go only to a backend that decodes MessagePack.
 */
import assert from "node:assert/strict";
import { dial, DistError, msgpackCodec, type Peer } from "../wire/mod.ts";
import { startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";

Deno.test("h47b N8: a MessagePack request too large as JSON, admitted for a MessagePack backend, goes to that backend, not to a JSON one", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--max-frame", "262144"]);
  let worker: Peer | undefined, client: Peer | undefined;
  try {
    const [wh, wp] = lb.workerAddress.split(":");
    worker = await dial({ host: wh, port: Number(wp) }, {
      role: "worker",
      name: "mp",
      codec: msgpackCodec,
      onRequest: (method, params) =>
        method === "sys.ping"
          ? { pong: true }
          : (params as { text?: string } | undefined)?.text?.length ?? null,
    });
    await worker.call("worker.register", { name: "mp", capacity: 4 });
    const [h, p] = lb.address.split(":");
    client = await dial({ host: h, port: Number(p) }, {
      role: "client",
      name: "c",
      codec: msgpackCodec,
    });
    await sleep(1500); // both backends in rotation (checks every 200 ms)
    // 100,000 U+0001: 100 KB of MessagePack, 600 KB as JSON, past the 256 KB frame.
    const text = "\u0001".repeat(100_000);
    const failures: Record<string, number> = {};
    let ok = 0;
    for (let i = 0; i < 20; i++) {
      try {
        assert.equal(await client.call("echo", { text }, { timeout: 5000 }), text.length);
        ok++;
      } catch (e) {
        const k = e instanceof DistError ? `${e.code}: ${e.message}` : String(e);
        failures[k] = (failures[k] ?? 0) + 1;
      }
    }
    assert.equal(ok, 20, `${ok} of 20 answered; failed: ${JSON.stringify(failures)}`);
  } finally {
    client?.close();
    worker?.close();
    await stopAll([lb, ...servers]);
  }
});
