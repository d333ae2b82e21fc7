/**
 * review45 R2 (6cf545c, hostile45a K-A4's fix): with no users, a live
 * worker's name is now never another address's to take while its health
 * checks pass, and the silence rules that gave a name back to the real
 * worker (hostile39c R2, hostile40c V1/V8, hostile41a W6) hold only for a
 * newcomer of the holder's own address. So a squatter that registers the
 * name first from another address (any local process may dial from
 * 127.0.0.9: node's localAddress) and answers nothing but health checks
 * keeps it for good: `dist worker --name w1` (127.0.0.1) is refused
 * "taken by a live worker at another address" for as long as the squatter
 * stays connected. V8's attack, reopened by a change of source address.
 * Before 6cf545c the real w1 took the name about 10 s after the squatter
 * registered.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { startBalancer, stopAll } from "./helpers/balancer.ts";
import { rawPeer } from "./helpers/hostile44.ts";
import { sleep } from "./helpers/raw.ts";

/** Registers `name` from `from` on a raw peer answering health checks only; "registered" or the refusal's code. */
async function register(
  address: string,
  from: string,
  name: string,
  all: net.Socket[],
): Promise<string> {
  const call = await rawPeer(
    address,
    from,
    { role: "worker", name },
    (method, p) => method === "sys.ping" ? { pong: true } : (p.a as number) + (p.b as number),
    all,
  );
  const reg = await call({ method: "worker.register", params: { name, capacity: 4 } });
  return reg.error === undefined ? "registered" : String((reg.error as { code: string }).code);
}

Deno.test("review45 R2: a squatter from another loopback address that answers only health checks does not keep a real worker's name for good (hostile40c V8)", async () => {
  const lb = await startBalancer([], ["--timeout", "1s"]);
  const sockets: net.Socket[] = [];
  try {
    // The squatter registers first (the real worker restarting, or not started yet).
    assert.equal(await register(lb.workerAddress, "127.0.0.9", "w1", sockets), "registered");
    // The real w1, from 127.0.0.1, tries every 500 ms for 20 s.
    const tries: string[] = [];
    const t0 = performance.now();
    while (performance.now() - t0 < 20_000) {
      const answer = await register(lb.workerAddress, "127.0.0.1", "w1", sockets);
      tries.push(answer);
      if (answer === "registered") break;
      // A refused peer's socket is of no use any more.
      sockets.at(-1)?.destroy();
      await sleep(500);
    }
    const took = ((performance.now() - t0) / 1000).toFixed(1);
    const why = lb.stderr().split("\n").filter((l) => /refused: the name/.test(l)).at(-1);
    assert.equal(
      tries.at(-1),
      "registered",
      `the real w1 refused ${tries.length} times in ${took} s (${why}); load ${Deno.loadavg()[0]}`,
    );
  } finally {
    for (const s of sockets) s.destroy();
    await sleep(10);
    await stopAll([lb]);
  }
});
