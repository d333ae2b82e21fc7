/**
 * What hostile43a's tests share: a fake worker that is "proven" (it
 * answers one task), then holds every task it gets.
 */
import net from "node:net";
import { Buffer } from "node:buffer";
import { HELLO, jsonFrame } from "./raw.ts";

/**
 * A fake worker from `from`: registers, answers health checks and its first
 * `serves` (one unless told) `add`s (correctly), then holds every other task
 * for as long as it stays.
 */
export function provenThenHolding(
  address: string,
  from: string,
  name: string,
  all: net.Socket[],
  serves = 1,
): Promise<string> {
  const [host, port] = address.split(":");
  return new Promise<string>((resolve) => {
    const socket = net.connect({ host, port: Number(port), localAddress: from });
    all.push(socket);
    let buf = Buffer.alloc(0);
    let welcomed = false;
    let served = 0;
    socket.on("error", () => resolve("error"));
    socket.on("close", () => resolve("closed"));
    socket.on("connect", () => {
      socket.write(jsonFrame({ ...HELLO, role: "worker", name, heartbeat: 60_000 }));
    });
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const msg = JSON.parse(buf.subarray(4, 4 + buf.readUInt32BE(0)).toString());
        buf = buf.subarray(4 + buf.readUInt32BE(0));
        if (!welcomed) {
          welcomed = true;
          socket.write(
            jsonFrame({ id: 1, method: "worker.register", params: { name, capacity: 16 } }),
          );
        } else if (msg.id === 1 && msg.method === undefined) {
          resolve(msg.error === undefined ? "registered" : String(msg.error.code));
        } else if (msg.method === "sys.ping") {
          socket.write(jsonFrame({ id: msg.id, result: { pong: true } }));
        } else if (msg.method === "add" && served < serves) {
          served++;
          const { a, b } = msg.params as { a: number; b: number };
          socket.write(jsonFrame({ id: msg.id, result: a + b, by: name }));
        }
        // Any other task: held for good.
      }
    });
  });
}
