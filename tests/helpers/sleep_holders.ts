/**
 * hostile44a H-A7's attacker, in its own process: CONNS client connections
 * from address FROM that each keep K `sleep MS` requests in flight (sending
 * one more for each answer, refusals included), read every answer and
 * ping every 500 ms: each is a well-behaved slow client.
 *
 *   deno run -A tests/helpers/sleep_holders.ts PORT CONNS FROM K MS
 *
 * Prints "ready" once every connection is open; when stdin closes, prints
 * "answered N refused M" and exits.
 */
import net from "node:net";
import { Buffer } from "node:buffer";
import { HELLO, jsonFrame } from "./raw.ts";

const [port, conns] = Deno.args.slice(0, 2).map(Number);
const from = Deno.args[2] ?? "127.0.5.2";
const k = Number(Deno.args[3] ?? 3);
const ms = Number(Deno.args[4] ?? 2000);
const all: net.Socket[] = [];
let answered = 0;
let refused = 0;
let open = 0;

function holder(i: number): Promise<void> {
  let welcomed: () => void = () => {};
  const done = new Promise<void>((r) => welcomed = r);
  const socket = net.connect({ host: "127.0.0.1", port, localAddress: from });
  all.push(socket);
  let buf = Buffer.alloc(0);
  let id = 0;
  const ask = () => socket.write(jsonFrame({ id: ++id, method: "sleep", params: { ms } }));
  const timer = setInterval(() => socket.write(jsonFrame({ method: "ping" })), 500);
  socket.on("error", () => {});
  socket.on("close", () => clearInterval(timer));
  socket.on("connect", () => {
    socket.write(jsonFrame({ ...HELLO, role: "client", name: `holder${i}`, heartbeat: 60_000 }));
  });
  socket.on("data", (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const msg = JSON.parse(buf.subarray(4, 4 + buf.readUInt32BE(0)).toString());
      buf = buf.subarray(4 + buf.readUInt32BE(0));
      if (msg.op === "welcome") {
        for (let j = 0; j < k; j++) ask();
        open++;
        welcomed();
      } else if (msg.method === "sys.ping") {
        socket.write(jsonFrame({ id: msg.id, result: { pong: true } }));
      } else if (msg.method === undefined) {
        if (msg.error !== undefined) refused++;
        else answered++;
        ask();
      }
    }
  });
  return done;
}

// Ends when stdin closes, whether or not every connection is open yet.
(async () => {
  for await (const _ of Deno.stdin.readable) {
    // Until stdin closes.
  }
  console.log(`answered ${answered} refused ${refused}`);
  for (const s of all) s.destroy();
  Deno.exit(0);
})();

// In batches (a listen backlog drops a burst of 2,000 SYNs, and their retries take seconds).
for (let i = 0; i < conns; i += 100) {
  await Promise.all(Array.from({ length: Math.min(100, conns - i) }, (_, j) => holder(i + j)));
}
console.log(`ready ${open}`);
