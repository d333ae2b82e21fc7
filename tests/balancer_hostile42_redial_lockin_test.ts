/**
 * hostile42a Y3: a source seen redialing (pressure.ts, hostile41a W8) has
 * its new connections paused after their hello's read, and each of them is
 * marked as refused REDIAL_REFUSALS times (`arrived`), so its close counts
 * as one more redial whatever it did. Clients of that address that open a
 * connection per call (answered in their one read, then closed) thus keep
 * the source "redialing" for as long as they come, more than one a second:
 * after three seconds of W8's redialers, a long-lived client of the same
 * address, which README says waits "until the source has stopped for a few
 * seconds" (it resumed 9 s after, alone), was served nothing for 24 s.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { onJsonFrames, redialers } from "./helpers/hostile42.ts";
import { HELLO, jsonFrame, sleep } from "./helpers/raw.ts";
const FROM = "127.0.0.2";

/**
 * A client from FROM: hello, then `add` calls in turn, each answered or
 * given up after a second; `perCall` closes the connection after each and
 * dials again. Counts the answers until `stop`.
 */
function client(port: number, perCall: boolean) {
  const seen = { answered: 0, stopped: false };
  let socket: net.Socket | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const open = () => {
    if (seen.stopped) return;
    const s = socket = net.connect({ host: "127.0.0.1", port, localAddress: FROM });
    let welcomed = false;
    const call = () => {
      clearTimeout(timer);
      s.write(jsonFrame({ id: 7, method: "add", params: { a: 1, b: 2 } }));
      timer = setTimeout(() => perCall ? again() : call(), 1000);
    };
    const again = () => {
      clearTimeout(timer);
      s.removeAllListeners();
      s.on("error", () => {});
      s.destroy();
      open();
    };
    s.on("error", again);
    s.on("close", again);
    s.on("connect", () => s.write(jsonFrame({ ...HELLO, role: "client", name: "honest" })));
    onJsonFrames(s, (msg) => {
      if (!welcomed) {
        welcomed = true;
        call();
      } else if (msg.method === "sys.ping" && msg.id !== undefined) {
        s.write(jsonFrame({ id: msg.id, result: { pong: true } }));
      } else if (msg.id === 7 && msg.result === 3) {
        seen.answered++;
        if (perCall) again();
        else call();
      }
    });
  };
  open();
  return {
    seen,
    stop: () => {
      seen.stopped = true;
      clearTimeout(timer);
      socket?.removeAllListeners();
      socket?.on("error", () => {});
      socket?.destroy();
    },
  };
}

Deno.test("after a burst of redialers, a long-lived client of their address is served again while its per-call clients come (hostile42a Y3)", async () => {
  const servers = await startServers(1);
  const balancer = await startBalancer(servers);
  const stats = await connectTo(balancer.address);
  const clients: ReturnType<typeof client>[] = [];
  try {
    const stop = await redialers(balancer.port, 40, FROM);
    await sleep(3000);
    await stop();
    const long = client(balancer.port, false);
    clients.push(long);
    for (let i = 0; i < 4; i++) clients.push(client(balancer.port, true));
    // README: "until the source has stopped for a few seconds"; alone, it resumed within 9 s.
    await sleep(15_000);
    const before = long.seen.answered;
    const perCall = clients.slice(1).reduce((n, c) => n + c.seen.answered, 0);
    await sleep(5_000);
    const s = await stats.call("sys.stats") as Record<string, number>;
    const summary =
      `long-lived: ${before} answered in 15 s, ${long.seen.answered - before} in the next 5 s; ` +
      `per-call clients: ${perCall} in 15 s; redialing sources ${s.redialing_sources}; load ${
        Deno.loadavg()[0]
      }`;
    console.log(summary);
    assert.ok(perCall > 100, `the per-call clients are served (${summary})`);
    // main: 0 (the per-call clients' closes keep FROM "redialing").
    assert.ok(
      long.seen.answered - before > 100,
      `the long-lived client is served again (${summary})`,
    );
  } finally {
    for (const c of clients) c.stop();
    stats.close();
    await stopAll([balancer, ...servers]);
  }
});
