/**
 * What hostile44a's tests share: a JSON peer on a node socket bound to a
 * loopback address of choice (Deno.connect cannot bind one), and a lying
 * worker's answers (everything at once, `sleep` included).
 */
import net from "node:net";
import { Buffer } from "node:buffer";
import { HELLO, jsonFrame } from "./raw.ts";

/** A JSON peer on a node socket from `from` (it pings, and answers requests with `answer`). */
export function rawPeer(
  address: string,
  from: string,
  hello: Record<string, unknown>,
  answer: (method: string, params: Record<string, unknown>) => unknown,
  all: net.Socket[],
  by = hello.name,
): Promise<(msg: Record<string, unknown>) => Promise<Record<string, unknown>>> {
  const [host, port] = address.split(":");
  const socket = net.connect({ host, port: Number(port), localAddress: from });
  all.push(socket);
  let buf = Buffer.alloc(0);
  const waiting = new Map<unknown, (m: Record<string, unknown>) => void>();
  const timer = setInterval(() => socket.write(jsonFrame({ method: "ping" })), 300);
  socket.on("error", () => {});
  socket.on("close", () => clearInterval(timer));
  socket.on("connect", () => socket.write(jsonFrame({ ...HELLO, ...hello, heartbeat: 60_000 })));
  let id = 0;
  const call = (msg: Record<string, unknown>) =>
    new Promise<Record<string, unknown>>((resolve) => {
      waiting.set(++id, resolve);
      socket.write(jsonFrame({ id, ...msg }));
    });
  return new Promise((resolve) => {
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const msg = JSON.parse(buf.subarray(4, 4 + buf.readUInt32BE(0)).toString());
        buf = buf.subarray(4 + buf.readUInt32BE(0));
        if (msg.op === "welcome") resolve(call);
        else if (msg.method !== undefined && msg.id !== undefined) {
          socket.write(
            jsonFrame({ id: msg.id, result: answer(msg.method, msg.params ?? {}), by }),
          );
        } else if (msg.method === undefined) {
          waiting.get(msg.id)?.(msg);
          waiting.delete(msg.id);
        }
      }
    });
  });
}

/** A lying worker's answer to anything, at once. */
export function quick(method: string, p: Record<string, unknown>): unknown {
  if (method === "sys.ping") return { pong: true };
  if (method === "add") return (p.a as number) + (p.b as number);
  if (method === "echo") return p.text;
  if (method === "sleep") return p.ms;
  return 0;
}
