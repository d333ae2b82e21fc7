/**
 * Connections from another loopback address (127.0.0.2 and up: every
 * 127/8 address is this machine's on Linux), for tests of what a listener
 * does by source: node:net binds the local address, which Deno.connect
 * cannot.
 */
import net from "node:net";
import { Buffer } from "node:buffer";
import { HELLO, jsonFrame, waitFor } from "./raw.ts";
import { HOST } from "./rpc.ts";

/** A frame as JSON: the welcome, an error, or anything after. */
export interface Said {
  op?: string;
  error?: { code: string; message: string };
}

/** A connection from `from` that says hello (with `extra` fields); its frames, parsed as JSON. */
export function helloFrom(port: number, from: string, extra: Record<string, unknown> = {}) {
  const frames: Said[] = [];
  let buf = Buffer.alloc(0);
  let closed = false;
  const socket = net.connect({ host: HOST, port, localAddress: from }, () => {
    socket.write(jsonFrame({ ...HELLO, name: "h", heartbeat: 60_000, ...extra }));
  });
  socket.on("error", () => {});
  socket.on("close", () => closed = true);
  socket.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      frames.push(JSON.parse(buf.subarray(4, 4 + buf.readUInt32BE(0)).toString()));
      buf = buf.subarray(4 + buf.readUInt32BE(0));
    }
  });
  return {
    frames,
    socket,
    get closed() {
      return closed;
    },
    /** Resolves with the first frame (welcome or error). */
    first: () =>
      waitFor(() => frames.length > 0 || closed, 5000, "an answer").then(() => frames[0]),
  };
}
