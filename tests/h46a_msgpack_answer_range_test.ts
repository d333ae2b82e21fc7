/**
 * hostile46a G9: a MessagePack client never gets `nil` for a number its
 * backend sent. A dial-in worker speaking JSON may answer `1e400` (valid
 * JSON, Infinity once parsed); forwarded as bytes to a JSON client it
 * stays that text, through `--no-passthrough` it is refused `BAD_REQUEST
 * Result out of range` (README: "Neither codec encodes NaN or ±Infinity"),
 * but a MessagePack client got `{"id":5,"result":null}`: the silent null
 * the rule is there to prevent.
 */
import assert from "node:assert/strict";
import { decode, encode } from "@msgpack/msgpack";
import { startBalancer, stopAll } from "./helpers/balancer.ts";

const te = new TextEncoder();
const td = new TextDecoder();

function frame(payload: Uint8Array): Uint8Array {
  const b = new Uint8Array(4 + payload.length);
  new DataView(b.buffer).setUint32(0, payload.length);
  b.set(payload, 4);
  return b;
}

/** Whole frames off `conn`, one at a time. */
class Frames {
  #buf = new Uint8Array(0);
  constructor(readonly conn: Deno.Conn) {}
  async next(): Promise<Uint8Array | null> {
    while (true) {
      if (this.#buf.length >= 4) {
        const n = new DataView(this.#buf.buffer, this.#buf.byteOffset).getUint32(0);
        if (this.#buf.length >= 4 + n) {
          const f = this.#buf.slice(4, 4 + n);
          this.#buf = this.#buf.slice(4 + n);
          return f;
        }
      }
      const chunk = new Uint8Array(1 << 16);
      const got = await this.conn.read(chunk);
      if (got === null) return null;
      const more = new Uint8Array(this.#buf.length + got);
      more.set(this.#buf);
      more.set(chunk.subarray(0, got), this.#buf.length);
      this.#buf = more;
    }
  }
}

async function send(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}

function hello(codec: string, role: string): Uint8Array {
  return frame(
    te.encode(JSON.stringify({ op: "hello", v: 1, codec, role, name: role, heartbeat: 0 })),
  );
}

Deno.test("balancer: a JSON worker's 1e400 reaches a MessagePack client as an error, not nil (hostile46a G9)", async () => {
  const lb = await startBalancer([]);
  const [host, workerPort] = lb.workerAddress.split(":");
  const worker = await Deno.connect({ hostname: host, port: Number(workerPort) });
  const client = await Deno.connect({ hostname: host, port: Number(lb.address.split(":")[1]) });
  try {
    const fromWorker = new Frames(worker);
    await send(worker, hello("json", "worker"));
    await fromWorker.next(); // welcome
    const register = { id: 1, method: "worker.register", params: { name: "w", capacity: 4 } };
    await send(worker, frame(te.encode(JSON.stringify(register))));
    // Answers every task with 1e400, health checks with a pong.
    const serving = (async () => {
      for (let f = await fromWorker.next(); f !== null; f = await fromWorker.next()) {
        const m = JSON.parse(td.decode(f));
        if (m.id === undefined || m.method === undefined) continue;
        const answer = m.method === "sys.ping"
          ? JSON.stringify({ id: m.id, result: { pong: true } })
          : `{"id":${m.id},"result":1e400}`;
        await send(worker, frame(te.encode(answer))).catch(() => {});
      }
    })().catch(() => {
      // The worker's connection closed at the end.
    });
    const fromClient = new Frames(client);
    await send(client, hello("msgpack", "client"));
    await fromClient.next(); // welcome (JSON)
    await new Promise((r) => setTimeout(r, 300));
    await send(client, frame(encode({ id: 5, method: "add", params: { a: 1, b: 2 } })));
    let answer: { id?: number; method?: string; result?: unknown; error?: { code: string } };
    do {
      const f = await fromClient.next();
      assert.ok(f !== null, "the balancer closed the client");
      answer = decode(f) as typeof answer;
    } while (answer.method !== undefined);
    assert.equal(answer.id, 5);
    assert.ok(
      answer.error !== undefined,
      `a number the backend sent reached the client as ${JSON.stringify(answer)}`,
    );
    worker.close();
    await serving;
  } finally {
    try {
      worker.close();
    } catch {
      // Closed above.
    }
    client.close();
    await stopAll([lb]);
  }
});
