/**
 * What hostile42a's tests share: W8's redialers in their own process
 * (redialers.ts), reading JSON frames off a node:net socket (the tests'
 * clients and fakes bind other loopback addresses, which Deno.connect
 * cannot), and a real worker.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { Buffer } from "node:buffer";
import { fileURLToPath } from "node:url";
import { dial, type Peer } from "../../wire/mod.ts";

const REDIALERS = fileURLToPath(new URL("./redialers.ts", import.meta.url));

/**
 * Starts redialers.ts: `conns` non-readers from `from` (or each new one
 * from the next of `spread` addresses 127.0.1.x) that dial again once
 * paused; resolves once they run. The stop ends them and returns how many
 * connections they made.
 */
export async function redialers(
  port: number,
  conns: number,
  from: string,
  spread = 0,
): Promise<() => Promise<number>> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", REDIALERS, String(port), String(conns), from, String(spread)],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  assert.match((await lines.read()).value ?? "", /ready/);
  let stopped: Promise<number> | undefined;
  return () =>
    stopped ??= (async () => {
      await child.stdin.close().catch(() => {});
      let out = "";
      for (let r = await lines.read(); !r.done; r = await lines.read()) out += r.value;
      await child.status;
      return Number(out.match(/made (\d+)/)?.[1] ?? 0);
    })();
}

/** Calls `onMessage` with each JSON frame `socket` receives. */
export function onJsonFrames(
  socket: net.Socket,
  onMessage: (msg: Record<string, unknown>) => void,
): void {
  let buf = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const end = 4 + buf.readUInt32BE(0);
      const msg = JSON.parse(buf.subarray(4, end).toString());
      buf = buf.subarray(end);
      onMessage(msg);
    }
  });
}

/** A real worker `name` registered at `address` (from 127.0.0.1): it adds. */
export async function addingWorker(address: string, name: string): Promise<Peer> {
  const [host, port] = address.split(":");
  const peer: Peer = await dial({ host, port: Number(port) }, {
    role: "worker",
    name,
    onRequest: (method, params) => {
      if (method === "sys.ping") return { pong: true };
      const { a, b } = params as { a: number; b: number };
      return a + b;
    },
  });
  await peer.call("worker.register", { name, capacity: 16 });
  return peer;
}
