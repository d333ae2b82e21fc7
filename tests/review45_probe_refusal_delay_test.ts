/**
 * review45 R1 (59e7c00, hostile45c K-C1's fix): the binder's report_down
 * check now dials with no credentials, and counts an UNAUTHORIZED answer
 * as "alive". But a listener with `--token` (or `--users`) answers a hello
 * without credentials only after the gate's delay (250 ms, doubling with
 * each failure of that host's record, up to 10 s), and every check is such
 * a failure. The check's `--verify-timeout` (1 s) then runs out first: a
 * TIMEOUT is "dead", and a live, serving instance is removed on every
 * binder. Issue 15's eviction of a live server through report_down, back
 * for every secured cluster: three reports 2 s apart by any client allowed
 * to resolve the service, or one report after a few wrong-token hellos
 * from any local address (K-C3's fix made all of 127.0.0.0/8 one record).
 */
import assert from "node:assert/strict";
import { parseAddress } from "../config/mod.ts";
import { dial, DistError, type Peer } from "../wire/mod.ts";
import { startService } from "./helpers/binder.ts";
import { startDist } from "./helpers/dist.ts";

const TOKEN = "review45-r1-cluster-token-0123456789";

function as(address: string, token: string): Promise<Peer> {
  return dial(parseAddress(address), {
    role: "client",
    name: "review45-r1",
    credentials: { token },
    connectTimeoutMs: 5000,
    timeoutMs: 15_000,
  });
}

async function liveId(client: Peer): Promise<string> {
  const found = await client.call("binder.lookup", { service: "compute" }) as {
    id?: string;
    instances?: { id: string }[];
  } | { id: string }[];
  const list = Array.isArray(found) ? found : (found.instances ?? [found]);
  const id = (list[0] as { id?: string } | undefined)?.id;
  assert.ok(id !== undefined, `no instance id in ${JSON.stringify(found)}`);
  return id;
}

async function stillThere(client: Peer): Promise<boolean> {
  try {
    await client.call("binder.lookup", { service: "compute" });
    return true;
  } catch (err) {
    if (err instanceof DistError && err.code === "NOT_FOUND") return false;
    throw err;
  }
}

Deno.test("review45 R1: reports of a live --token server, 2.1 s apart, never remove it", async () => {
  const binder = await startDist(["binder", "--port", "0", "--token", TOKEN]);
  const server = await startService("compute", binder.address, ["--token", TOKEN]);
  const client = await as(binder.address, TOKEN);
  try {
    const id = await liveId(client);
    const verdicts: unknown[] = [];
    for (let i = 0; i < 3; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 2100)); // past the 2 s "alive" memory
      verdicts.push(await client.call("binder.report_down", { id }));
    }
    const there = await stillThere(client);
    assert.deepEqual(
      { verdicts: verdicts.map((v) => (v as { alive: boolean }).alive), there },
      { verdicts: [true, true, true], there: true },
      `the server is alive and serving; ${JSON.stringify(verdicts)}`,
    );
  } finally {
    client.close();
    await server.stop();
    await binder.stop();
  }
});

Deno.test("review45 R1: wrong-token hellos from another loopback address, then one report, do not remove a live --token server", async () => {
  const binder = await startDist(["binder", "--port", "0", "--token", TOKEN]);
  const server = await startService("compute", binder.address, ["--token", TOKEN]);
  const client = await as(binder.address, TOKEN);
  try {
    const id = await liveId(client);
    // Any local process, no right needed: four wrong-token hellos at once (any address of
    // 127.0.0.0/8 is the same record since K-C3's fix; the binder's checks come from it too).
    const port = Number(server.address.split(":").pop());
    await Promise.all(Array.from({ length: 4 }, () =>
      dial({ host: "127.0.0.1", port }, {
        role: "client",
        name: "guess",
        credentials: { token: "wrong-token" },
        connectTimeoutMs: 2000,
        timeoutMs: 2000,
      }).then((p) => p.close(), () => {})));
    const verdict = await client.call("binder.report_down", { id }) as { alive: boolean };
    const there = await stillThere(client);
    assert.deepEqual({ alive: verdict.alive, there }, { alive: true, there: true });
  } finally {
    client.close();
    await server.stop();
    await binder.stop();
  }
});
