/**
 * The publishers' memos of their last frames (wire/publish_memo.ts: up to 4
 * frames of up to 1 KiB with their masks, the layout and head, per
 * publishing connection) are counted in --max-memory and bounded to a part
 * of it (hostile37 K8: 3,000 publishing connections took 82 MiB that
 * nothing counted). Past that part, publishes are read in full and still
 * delivered; a closed connection's memos are given back.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { closeQuietly, concat, frame, rawHandshake, RawReader, writeAll } from "./helpers/raw.ts";
import { BrokerClient } from "./helpers/broker.ts";

const MIB = 1024 * 1024;
const CONNECTIONS = 400;

/** 8 publishes of 4 lengths near 1 KiB, each length twice with a digit changed (so it is compared). */
function publishes(n: number): Uint8Array {
  const frames: Uint8Array[] = [];
  for (let len = 0; len < 4; len++) {
    for (const digit of [1, 2]) {
      const value = `${"x".repeat(900 + 10 * len)}${n}-${digit}`;
      frames.push(frame(
        `{"method":"broker.publish","params":{"topic":"/k8","value":"${value}","retain":false}}`,
      ));
    }
  }
  return concat(frames);
}

type Memory = { bytes: number; budget: number; memos?: number };

Deno.test("broker memory: publishers' memos of past frames count in --max-memory, within a part of it, and are given back", async () => {
  const budget = 32 * MIB;
  const b = await startDist(["broker", "--port=0", `--max-memory=${budget}`]);
  const conns: Deno.Conn[] = [];
  let sub: BrokerClient | undefined;
  try {
    sub = await BrokerClient.connect(b.port);
    await sub.subscribe("/k8");
    const idle = (await sub.stats()).memory as Memory;
    for (let i = 0; i < CONNECTIONS; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: b.port });
      conns.push(conn);
      await rawHandshake(conn, new RawReader(conn));
      await writeAll(conn, publishes(i));
    }
    // Every publish is delivered, those read past the memos' budget too.
    await sub.received(8 * CONNECTIONS, 30_000);
    const memory = (await sub.stats()).memory as Memory;
    const memos = memory.memos ?? 0;
    // Without a bound: about 24 KB a connection, 9 MiB for these 400.
    assert(memos > MIB, `memos counted: ${memos} bytes (${JSON.stringify(memory)})`);
    assert(memos <= budget / 16, `memos ${memos} within a 16th of max-memory`);
    assert(
      memory.bytes - idle.bytes >= memos,
      `counted in max-memory: ${idle.bytes} -> ${memory.bytes} with ${memos} of memos`,
    );
    for (const c of conns.splice(0)) closeQuietly(c);
    const deadline = Date.now() + 10_000;
    let left = memos;
    while (Date.now() < deadline) {
      left = ((await sub.stats()).memory as Memory).memos ?? 0;
      if (left === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(left, 0, "the closed connections' memos are given back");
  } finally {
    for (const c of conns) closeQuietly(c);
    sub?.close();
    await b.stop();
  }
});
