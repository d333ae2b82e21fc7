/**
 * Lab row 2 with the launcher: under `dist up`, a binder or a server that
 * dies is restarted and is back in the registry (a restarted server registers
 * again; a restarted binder pulls the registry from its peer before answering).
 */
import assert from "node:assert/strict";
import { ids, waitUntil } from "./helpers/binder.ts";
import { freeRange, stopCleanly, withUp } from "./helpers/up.ts";

/** The ids a binder lists, or undefined while it does not answer. */
function idsAt(port: number): Promise<string[] | undefined> {
  return ids(`127.0.0.1:${port}`).catch(() => undefined);
}

Deno.test("lab row 2: under dist up, a killed binder or server is restarted and back in the registry", async () => {
  const base = freeRange(3);
  const [b1, b2, serverPort] = [base, base + 1, base + 2];
  const topology = `
[[binder]]
name = "binder"
replicas = 2
port = ${b1}
peers = ["binder"]

[[server]]
name = "server"
port = ${serverPort}
service = "compute"
binders = ["binder"]
ttl = "1s"
`;
  await withUp(topology, [], async (up) => {
    const id = `compute@127.0.0.1:${serverPort}`;
    const known = (port: number) => async () => (await idsAt(port))?.includes(id) === true;
    await waitUntil(async () => await known(b1)() && await known(b2)(), "the registration", 20_000);

    // A killed server: restarted on its port, it registers again.
    const [, serverPid] = (await up.waitFor(/server started, pid (\d+)/)).map(Number);
    Deno.kill(serverPid, "SIGKILL");
    await up.waitFor(/server restarted \(restart 1\), pid \d+/);
    // The first copy may die before its own "Registered" line is out (the
    // binders knew it first): wait for the restarted copy's line only.
    await up.waitFor(/server restarted \(restart 1\)[\s\S]*server +\|.*Registered as compute@/);
    await waitUntil(async () => await known(b1)() && await known(b2)(), "re-registration", 10_000);

    // A killed binder: restarted, it catches up from its peer before answering.
    const [, binderPid] = (await up.waitFor(/binder-2 started, pid (\d+)/)).map(Number);
    Deno.kill(binderPid, "SIGKILL");
    await up.waitFor(/binder-2 restarted \(restart 1\), pid \d+/);
    await waitUntil(async () => (await idsAt(b2)) !== undefined, "binder-2 to answer", 10_000);
    // Its first answer already lists the server: the lease is only 1 s, so
    // renewals keep it, and binder-2 knew it before answering.
    assert.deepEqual(await idsAt(b2), [id]);
    await up.waitFor(/binder-2 +\|.*Ready to answer \(caught up from 127\.0\.0\.1:\d+\)/);
    await stopCleanly(up);
  });
});
