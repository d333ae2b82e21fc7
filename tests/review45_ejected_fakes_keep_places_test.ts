/**
 * review45 R12 (80c8f64, hostile45a K-A6's fix): past `--max-backends`, an
 * instance that has served now keeps its place while it is out for its
 * answers. A fake that answered one request and then holds every request
 * has served, and is out for its answers for good (found out each time it
 * comes back): it now keeps its place for good, where before it gave it,
 * 5 s out, to an instance waiting. A stranger's two such fakes registered
 * at the open binder take the two free places of `--max-backends 3`, and a
 * real server registered after them waits for a place forever, while
 * clients' calls on the fakes' trials fail.
 */
import assert from "node:assert/strict";
import { backendsOf, connectTo, startBalancer, stopAll } from "./helpers/balancer.ts";
import { connectTo as binderConn, startService } from "./helpers/binder.ts";
import { type DistProcess, startDist } from "./helpers/dist.ts";
import { sleep } from "./helpers/raw.ts";
import { listen, type Listener } from "../wire/mod.ts";

/** An instance that answers its first request and then holds every request but pings. */
function provenThenHolding(name: string): Listener {
  let answered = 0;
  return listen({
    port: 0,
    role: "server",
    name,
    by: name,
    onRequest: (method, params) => {
      if (method === "sys.ping") return { pong: true };
      if (answered++ === 0) {
        const p = params as { a: number; b: number };
        return p.a + p.b;
      }
      return new Promise(() => {});
    },
  });
}

Deno.test("review45 R12: past --max-backends, fakes out for their answers do not keep their places from a real server for good", async () => {
  const binder = await startDist(["binder", "--port", "0"]);
  const servers: DistProcess[] = [await startService("compute", binder.address, ["--name", "s1"])];
  const service = ["--service", "compute", "--binders", binder.address];
  const balancer = await startBalancer([], [...service, "--max-backends", "3", "--timeout", "1s"]);
  const fakes: Listener[] = [];
  const client = await connectTo(balancer.address, 10_000);
  let stop = false;
  try {
    for (let i = 0; i < 20; i++) assert.equal(await client.call("add", { a: i, b: 1 }), i + 1);
    const mallory = await binderConn(binder.address);
    for (const name of ["f1", "f2"]) {
      const fake = provenThenHolding(name);
      fakes.push(fake);
      await mallory.call("binder.register", {
        service: "compute",
        host: "127.0.0.1",
        port: fake.addr.port,
        ttl_ms: 600_000,
      });
    }
    mallory.close();
    // Traffic until both fakes have served their one answer.
    const traffic = Array.from({ length: 8 }, async (_, k) => {
      while (!stop) await client.call("add", { a: k, b: 1 }, { timeout: 10_000 }).catch(() => 0);
    });
    for (let i = 0; i < 100; i++) {
      const view = await backendsOf(client);
      if (["f1", "f2"].every((n) => view.some((b) => b.peer === n && b.served > 0))) break;
      await sleep(100);
    }
    // Now the real s2 registers: the pool is pressed (4 instances, 3 places).
    servers.push(await startService("compute", binder.address, ["--name", "s2"]));
    let s2 = 0;
    const end = performance.now() + 18_000;
    while (performance.now() < end && s2 === 0) {
      await sleep(500);
      s2 = (await backendsOf(client)).find((b) => b.peer === "s2")?.served ?? 0;
    }
    stop = true;
    await Promise.all(traffic);
    const view = (await backendsOf(client)).map((b) =>
      `${b.peer}:${b.state}:${b.served}${b.state === "up" ? "" : `(${b.reason})`}`
    ).join(" ");
    assert.ok(s2 > 0, `the real s2 is dialed and serves within 18 s; backends: ${view}`);
  } finally {
    stop = true;
    client.close();
    for (const f of fakes) await f.close(0);
    await stopAll([balancer, ...servers, binder]);
  }
});
