/**
 * A hostile client, in its own process: one connection that handshakes,
 * then sends COUNT small `add` requests back to back and never reads an
 * answer (issue 16's attack on the balancer). Used by the balancer's
 * hostile bench (bench/balancer_hostile.ts) and tests/balancer_hostile_test.ts.
 *
 *   deno run -A bench/pipeline_client.ts PORT COUNT [repeat]
 *
 * With `repeat`, it sends COUNT more (new ids) each time the peer has taken
 * the last COUNT, until stopped: an attack that does not run out. Prints
 * "ready" once the handshake is done and the requests start going out; when
 * stdin closes, prints "wrote N" (the bytes the peer's socket took by then:
 * what backpressure let through) and exits.
 *
 * Not reading is all an attacker has to do: a socket the peer writes to and
 * nobody reads takes about 4 MiB on loopback here before the writer blocks
 * (the writer's send buffer grows to net.ipv4.tcp_wmem's 4 MiB; 2.9 MiB
 * when the reader sets SO_RCVBUF to 4 KiB, which Deno cannot do), then the
 * peer's own output buffer fills; only then does backpressure stop reading.
 */

import { frame } from "../tests/helpers/raw.ts";

const [portText, countText, mode] = Deno.args;
const port = Number(portText);
const count = Number(countText);
const repeat = mode === "repeat";

const encoder = new TextEncoder();

/**
 * COUNT requests, framed, in one buffer (ids after `base`, a few member
 * orders), written straight into it: building them as strings and frames
 * one by one took 0.6–0.8 s of CPU a batch, which the bench counted as
 * the target's loss (four attackers building their second batch during
 * the measured window took a core).
 */
function requests(base: number): Uint8Array {
  // A frame is at most 4 + 46 bytes + the largest id twice.
  const all = new Uint8Array(count * (50 + 2 * String(base + count).length));
  const view = new DataView(all.buffer);
  let off = 0;
  for (let id = base + 1; id <= base + count; id++) {
    const text = id % 3 === 0
      ? `{"method":"add","params":{"b":${id},"a":1},"id":${id}}`
      : `{"id":${id},"method":"add","params":{"a":${id},"b":2}}`;
    const { written } = encoder.encodeInto(text, all.subarray(off + 4));
    view.setUint32(off, written);
    off += 4 + written;
  }
  return all.subarray(0, off);
}

/** Batches built ahead, so that sending on does not cost CPU while a bench measures. */
const AHEAD = repeat ? 3 : 1;
const batches = Array.from({ length: AHEAD }, (_, i) => requests(i * count));
let built = AHEAD;

// Built before connecting: a peer silent for 3 s after its handshake is cut off.
const conn = await Deno.connect({ hostname: "127.0.0.1", port });
await conn.write(frame(
  JSON.stringify({ op: "hello", v: 1, codec: "json", role: "client", name: "pipeliner" }),
));
// Read the welcome, then never read again.
const head = new Uint8Array(4096);
let got = 0;
while (got < 4 || got < 4 + new DataView(head.buffer).getUint32(0)) {
  const n = await conn.read(head.subarray(got));
  if (n === null) throw new Error("closed during the handshake");
  got += n;
}
console.log("ready");
let wrote = 0;
const writing = (async () => {
  try {
    for (let batch = 1;; batch++) {
      const all = batches[(batch - 1) % AHEAD];
      // 16 KiB at a time, so that `wrote` counts what the peer took so far.
      for (let at = 0; at < all.length;) {
        const n = await conn.write(all.subarray(at, at + 16384));
        at += n;
        wrote += n;
      }
      if (!repeat) break;
      // New ids for the batch after next (rarely reached: the peer's buffers fill first).
      batches[(batch - 1) % AHEAD] = requests(built++ * count);
    }
  } catch {
    // Cut off by the peer: what it took is counted.
  }
})();
// Until stdin closes (the parent says stop).
const stdin = Deno.stdin.readable.getReader();
while (!(await stdin.read()).done) { /* wait */ }
console.log(`wrote ${wrote}`);
try {
  conn.close();
} catch {
  // Already closed.
}
await writing;
