/**
 * Workers of chosen sources for the `--max-workers` and trial tests: a
 * real one from 127.0.0.1 (through the library), and a fake one over a raw
 * socket from a local address of choice (another source), which sends its
 * hello and `worker.register` and answers nothing else but, with `pings`,
 * health checks: tasks it gets are held for as long as it stays.
 */
import net from "node:net";
import { Buffer } from "node:buffer";
import { dial, DistError, type Peer } from "../../wire/mod.ts";
import { HELLO, jsonFrame } from "./raw.ts";

/** A real worker from 127.0.0.1 that answers `add` and `sleep`, and UNKNOWN_METHOD to the rest. */
export async function realWorker(address: string, name: string): Promise<Peer> {
  const [host, port] = address.split(":");
  const peer = await dial({ host, port: Number(port) }, {
    role: "worker",
    name,
    onRequest: (method, params) => {
      if (method === "sys.ping") return { pong: true };
      if (method === "sleep") {
        const { ms } = params as { ms: number };
        return new Promise((resolve) => setTimeout(() => resolve(ms), ms));
      }
      if (method !== "add") throw new DistError("UNKNOWN_METHOD", `No method ${method}`);
      const { a, b } = params as { a: number; b: number };
      return a + b;
    },
  });
  await peer.call("worker.register", { name, capacity: 16 });
  return peer;
}

/**
 * A fake worker from `from` that sends its hello and `worker.register`,
 * answers nothing else (health checks too if `pings`), and reads what
 * comes: resolves with the registration's answer (its `result` or
 * `error.code`).
 */
export function fakeWorker(
  address: string,
  from: string,
  name: string,
  all: net.Socket[],
  pings = false,
): Promise<string> {
  const [host, port] = address.split(":");
  return new Promise((resolve) => {
    const socket = net.connect({ host, port: Number(port), localAddress: from });
    all.push(socket);
    let buf = Buffer.alloc(0);
    let welcomed = false;
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
        } else if (msg.id === 1) {
          resolve(msg.error === undefined ? "registered" : String(msg.error.code));
        } else if (pings && msg.method === "sys.ping") {
          socket.write(jsonFrame({ id: msg.id, result: { pong: true } }));
        }
      }
    });
  });
}
