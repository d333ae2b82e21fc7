/**
 * h48b V-tarpit-twice: a connection refused twice before its pause ends (MessagePack
 * requests too large as JSON that came in one read: a client pipelining its calls) is paused
 * twice (FramedConn.pauseReading counts its pauses) but resumed once: Tarpit.hold releases the
 * first hold, clearing the timer that would have resumed it. The connection is never read again:
 * the client's next call waits for ever, its descriptor is held until it gives up. And when it
 * was its source's only paused connection, the release empties and deletes the source's set
 * while hold() adds the new entry to that set, now orphaned: heldOf() says 0, so the cap of 16
 * never counts it, nor any other connection so refused (unit case below).
 */
import assert from "node:assert/strict";
import { dial, DistError, msgpackCodec, type Peer } from "../wire/mod.ts";
import { HELD_PER_SOURCE, Tarpit } from "../roles/balancer/tarpit.ts";
import { startBalancer, startServers, stopAll } from "./helpers/balancer.ts";

function fakePeer(): Peer & { closedNow: boolean; pauses: number } {
  let gone = () => {};
  const fake = {
    closedNow: false,
    pauses: 0,
    get isClosed() {
      return fake.closedNow;
    },
    conn: {
      pauseReading: () => void fake.pauses++,
      resumeReading: () => void fake.pauses--,
    },
    close: () => {
      fake.closedNow = true;
      gone();
    },
    closed: new Promise<void>((resolve) => gone = resolve),
  };
  return fake as unknown as Peer & { closedNow: boolean; pauses: number };
}

Deno.test("h48b: connections refused twice while paused are still counted under their source's cap", () => {
  const tarpit = new Tarpit(() => 0);
  const peers = Array.from({ length: HELD_PER_SOURCE + 8 }, () => fakePeer());
  for (const p of peers) {
    tarpit.hold(p, "10.0.0.9");
    tarpit.hold(p, "10.0.0.9"); // its next frame, read in the same read
  }
  for (const p of peers) p.close(); // the timers go with them
  // Before: each one's set emptied and deleted by its own release: 0 held, none closed.
  assert.equal(tarpit.closed, 8, `closed ${tarpit.closed} of ${peers.length} paused`);
});

Deno.test({
  name: "h48b: a client whose pipelined requests are refused as too large as JSON is read again",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const servers = await startServers(1);
    const lb = await startBalancer(servers, ["--max-frame", "8192"]);
    let peer: Peer | undefined;
    try {
      const [host, port] = lb.address.split(":");
      peer = await dial({ host, port: Number(port) }, {
        role: "client",
        name: "pipeliner",
        codec: msgpackCodec,
      });
      assert.equal(await peer.call("echo", { text: "hi" }), "hi");
      // 2,000 bytes of U+0001 are 12,000 as JSON: past the 8 KiB frame. Three sent at once.
      // The pauses are 100 ms, 1 s, 3 s at most (tenfold since cf6eb4d; 100, 200, 400 ms before):
      // all three answered and the next call read within 4.1 s even one read each; 15 s is 3.6x.
      const grows = { text: "\u0001".repeat(2000) };
      const three = Array.from({ length: 3 }, () => peer!.call("echo", grows, { timeout: 15_000 }));
      const codes = (await Promise.allSettled(three)).map((r) =>
        r.status === "rejected" ? (r.reason as DistError).code : "answered"
      );
      assert.deepEqual(codes, new Array(3).fill("FRAME_TOO_LARGE"));
      const after = await peer.call("echo", { text: "after" }, { timeout: 15_000 }).catch((e) =>
        `failed: ${e}`
      );
      assert.equal(after, "after", "the connection was never read again");
    } finally {
      peer?.close();
      await stopAll([lb, ...servers]);
    }
  },
});
