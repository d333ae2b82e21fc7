/**
 * hostile44a H-A1: y43's network reserve rule (source_book.ts netRoom, Y1's
 * rest) keeps the reserve free from every address of a /24 once many of
 * its addresses hold requests, the addresses that hold none included. Slow
 * clients from 100 addresses of 127.0.0.0/24, each keeping one `sleep 5000`
 * on the backends (and reading its answers), leave a fast client at
 * 127.0.0.1 — which never held more than one request — refused OVERLOADED
 * for every call, while a client of 127.0.1.0/24 beside the same load keeps
 * its rate (hostile44a-scripts/neighbor_reserve.py: 0 against 8,795 calls a
 * second). A rule of a network must only apply to the addresses that take
 * part in it (stop 43's A5 lesson).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { Buffer } from "node:buffer";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { HELLO, jsonFrame, sleep } from "./helpers/raw.ts";
import { closedLoop } from "./helpers/hostile44.ts";

/** A slow client from `from`: keeps one `sleep ms` on the backends, reads its answers, pings. */
function slowClient(port: number, from: string, ms: number, all: net.Socket[]): void {
  const socket = net.connect({ host: "127.0.0.1", port, localAddress: from });
  all.push(socket);
  let buf = Buffer.alloc(0);
  let id = 0;
  const timer = setInterval(() => socket.write(jsonFrame({ method: "ping" })), 300);
  const next = () => socket.write(jsonFrame({ id: ++id, method: "sleep", params: { ms } }));
  socket.on("error", () => {});
  socket.on("close", () => clearInterval(timer));
  socket.on("connect", () => {
    socket.write(jsonFrame({ ...HELLO, role: "client", name: `slow-${from}`, heartbeat: 60_000 }));
  });
  socket.on("data", (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const msg = JSON.parse(buf.subarray(4, 4 + buf.readUInt32BE(0)).toString());
      buf = buf.subarray(4 + buf.readUInt32BE(0));
      if (msg.op === "welcome") next();
      else if (msg.method === "sys.ping") {
        socket.write(jsonFrame({ id: msg.id, result: { pong: true } }));
      } else if (msg.method === undefined && msg.id === id) next();
    }
  });
}

Deno.test("slow clients of 100 addresses of a /24 leave their neighbour at 127.0.0.1 served (hostile44a H-A1)", async () => {
  const servers = await startServers(1);
  const balancer = await startBalancer(servers);
  const legit = await connectTo(balancer.address);
  const sockets: net.Socket[] = [];
  try {
    const [alone] = await closedLoop(legit, 4, 2000);
    for (let i = 0; i < 100; i++) slowClient(balancer.port, `127.0.0.${2 + i}`, 5000, sockets);
    await sleep(2000);
    const [beside, refused] = await closedLoop(legit, 4, 4000);
    const summary = `127.0.0.1: ${alone} calls in 2 s alone, ${beside} in 4 s beside 100 slow ` +
      `neighbours; refused ${refused.length} (${refused[0] ?? "-"}); load ${Deno.loadavg()[0]}`;
    console.log(summary);
    // Main: 0 calls, every one "OVERLOADED: Every backend was busy for 3000 ms"; a client of
    // 127.0.1.0/24 beside the same 100: 1.7x its rate alone. Bound: a tenth of its rate alone.
    assert.ok(beside >= alone / 2 * 0.1, `the neighbour keeps a tenth of its rate (${summary})`);
    assert.ok(refused.length <= 2, `the neighbour is refused almost nothing (${summary})`);
  } finally {
    legit.close();
    for (const s of sockets) s.destroy();
    await stopAll([balancer, ...servers]);
  }
});
