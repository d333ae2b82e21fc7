/**
 * Non-readers that dial again once paused (hostile41a W8), in their own
 * process: CONNS connections from address FROM that each pipeline 2,000
 * `sleep 5000` requests a write and never read; one whose write has waited
 * 300 ms is closed and replaced by a new one.
 *
 *   deno run -A tests/helpers/redialers.ts PORT CONNS FROM [SPREAD]
 *
 * With SPREAD (hostile42a Y1), each new connection binds the next of
 * SPREAD addresses 127.0.1.1, 127.0.1.2 … instead of FROM.
 *
 * Prints "ready" once the first connections are open; when stdin closes,
 * prints "made N" (the connections opened) and exits.
 */
import net from "node:net";
import { Buffer } from "node:buffer";
import { HELLO, jsonFrame } from "./raw.ts";

const [port, conns] = Deno.args.slice(0, 2).map(Number);
const from = Deno.args[2] ?? "127.0.0.2";
const spread = Number(Deno.args[3] ?? 0);
const burst = Buffer.concat(
  Array.from(
    { length: 2000 },
    (_, i) => jsonFrame({ id: i + 1, method: "sleep", params: { ms: 5000 } }),
  ),
);
const hello = jsonFrame({ ...HELLO, role: "client", name: "redialer", heartbeat: 60_000 });
let made = 0;
let stopping = false;

/** One connection: writes while its writes are taken, and is replaced once one waits 300 ms. */
function open(): void {
  if (stopping) return;
  made++;
  const localAddress = spread > 1 ? `127.0.1.${1 + made % Math.min(spread, 250)}` : from;
  const socket = net.connect({ host: "127.0.0.1", port, localAddress });
  let waiting: ReturnType<typeof setTimeout> | undefined;
  let replaced = false;
  const replace = () => {
    if (replaced) return;
    replaced = true;
    clearTimeout(waiting);
    all.delete(socket);
    socket.destroy();
    open();
  };
  const pump = () => {
    clearTimeout(waiting);
    while (!stopping && socket.write(burst));
    waiting = setTimeout(replace, 300);
  };
  socket.on("error", replace);
  socket.on("close", replace);
  socket.on("drain", pump);
  socket.on("connect", () => {
    socket.write(hello);
    pump();
  });
  // Never read: no "data" listener, so the socket stays paused.
  socket.pause();
  all.add(socket);
}

const all = new Set<net.Socket>();
for (let i = 0; i < conns; i++) open();
console.log("ready");
for await (const _ of Deno.stdin.readable) {
  // Until stdin closes.
}
stopping = true;
console.log(`made ${made}`);
for (const s of all) s.destroy();
Deno.exit(0);
