/**
 * review44 R7: with no backend up, `--mode tcp` now dials each backend that
 * is out before closing a client (9c5319e, hostile44c H-C2). A backend out
 * because it drops SYNs (a host gone, a firewall, or here a process that
 * stopped accepting with its listen queue full) costs each client the
 * connect timeout (3 s) once per backend: with two such backends every new
 * client waits about 6 s (holding its descriptor and one more for the dial)
 * to be closed, where it was closed at once ("no backend is up").
 */
import assert from "node:assert/strict";
import { closeQuietly, waitFor } from "./helpers/raw.ts";
import { startTcpBalancer } from "./helpers/tcp_backend.ts";

/** A listener that never accepts, its queue (backlog 0) full: further SYNs are dropped. */
async function blackhole(): Promise<{ address: string; stop(): Promise<void> }> {
  const child = new Deno.Command("python3", {
    args: [
      "-c",
      "import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\n" +
      "print(s.getsockname()[1],flush=True)\ntime.sleep(60)",
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  const port = Number(new TextDecoder().decode(value).trim());
  // Fill the queue: these connects complete (or hang); none is read.
  const fills: Deno.Conn[] = [];
  for (let i = 0; i < 2; i++) {
    const c = await Promise.race([
      Deno.connect({ hostname: "127.0.0.1", port }),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 300)),
    ]);
    if (c !== undefined) fills.push(c);
  }
  return {
    address: `127.0.0.1:${port}`,
    async stop() {
      for (const c of fills) closeQuietly(c);
      child.kill("SIGKILL");
      await child.status;
      await child.stdout.cancel().catch(() => {});
    },
  };
}

Deno.test("balancer --mode tcp: with every backend dropping SYNs, a new client is closed at once", async () => {
  const a = await blackhole(), b = await blackhole();
  const lb = await startTcpBalancer([a.address, b.address], ["--check-interval", "200ms"]);
  try {
    const port = Number(lb.address.split(":")[1]);
    await waitFor(
      () =>
        [a, b].every((x) => /(is down|is not up yet)/.test(lb.stderr().split(x.address)[1] ?? "")),
      15_000,
      "both backends out",
    );
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const t0 = performance.now();
    try {
      await conn.write(new Uint8Array([1]));
      await Promise.race([
        conn.read(new Uint8Array(8)).catch(() => null),
        new Promise((r) => setTimeout(r, 10_000)),
      ]);
    } finally {
      closeQuietly(conn);
    }
    const ms = Math.round(performance.now() - t0);
    assert.ok(ms < 1000, `closed after ${ms} ms`);
  } finally {
    await lb.stop();
    await a.stop();
    await b.stop();
  }
});
