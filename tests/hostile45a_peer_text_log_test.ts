/**
 * hostile45a K-A3: stop 44's H-A8 fix refuses, in a worker's registered
 * name, every character roles/_printable.ts calls unprintable (line and
 * paragraph separators, bidirectional controls). But the balancer's
 * warning about a worker names it twice: its registered name and the name
 * its process gave in its hello (wire/handshake.ts peerText keeps that as
 * sent, up to 128 characters), and quotes the error its health check got
 * (the worker's own message). Both reach the log raw: "Backend w1
 * (hw\u202egnp.exe\u2028[ERR] fake line) is down: 3 health checks missed
 * (INTERNAL: bad\u2028[ERR] fake line)". C0 controls are escaped there
 * (\x1b); U+2028/U+2029 and the bidi controls are not: a log viewer or a
 * JavaScript reader breaks the line at U+2028, and "[ERR] fake line" reads
 * as a line of its own.
 *
 * A user runs a worker with such a hello name and ping answers, and reads
 * the balancer's log.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { Buffer } from "node:buffer";
import { startBalancer, stopAll } from "./helpers/balancer.ts";
import { HELLO, jsonFrame, sleep } from "./helpers/raw.ts";

const EVIL = "\u202egnp.exe\u2028[ERR] fake line\u2029\u2066x\u2069";
const RAW = ["\u202e", "\u2028", "\u2029", "\u2066", "\u2069"];

Deno.test("a worker's hello name and health-check errors put no separators or bidi controls into the balancer's log raw (hostile45a K-A3)", async () => {
  const balancer = await startBalancer([]);
  const [host, port] = balancer.workerAddress.split(":");
  const socket = net.connect({ host, port: Number(port) });
  try {
    let pings = 0;
    let buf = Buffer.alloc(0);
    socket.on("error", () => {});
    socket.on("connect", () => {
      socket.write(jsonFrame({ ...HELLO, role: "worker", name: `hw${EVIL}`, heartbeat: 60_000 }));
    });
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const m = JSON.parse(buf.subarray(4, 4 + buf.readUInt32BE(0)).toString());
        buf = buf.subarray(4 + buf.readUInt32BE(0));
        if (m.op === "welcome") {
          socket.write(
            jsonFrame({ id: 1, method: "worker.register", params: { name: "w1", capacity: 4 } }),
          );
        } else if (m.method === "sys.ping" && m.id !== undefined) {
          // Two good answers, then errors that say what the worker likes.
          socket.write(jsonFrame(
            ++pings < 3
              ? { id: m.id, result: { pong: true } }
              : { id: m.id, error: { code: "INTERNAL", message: `bad${EVIL}` } },
          ));
        }
      }
    });
    const end = performance.now() + 8000;
    while (performance.now() < end && !balancer.stderr().includes("is down")) {
      await sleep(50);
    }
    const log = balancer.stderr();
    const line = log.split("\n").find((l) => l.includes("is down")) ?? "(no line)";
    const raw = RAW.filter((c) => log.includes(c));
    const summary = `raw in the log: ${
      raw.map((c) => "U+" + c.charCodeAt(0).toString(16)).join(", ") || "none"
    }; the line: ${JSON.stringify(line)}`;
    console.log(summary);
    assert.equal(raw.length, 0, summary);
  } finally {
    socket.destroy();
    await stopAll([balancer]);
  }
});
