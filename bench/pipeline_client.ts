/**
 * A hostile client, in its own process: one connection that handshakes,
 * then sends COUNT small `add` requests back to back and never reads an
 * answer (issue 16's attack on the balancer). Used by the balancer's
 * hostile bench (bench/balancer_hostile.ts) and tests/balancer_hostile_test.ts.
 *
 *   deno run -A bench/pipeline_client.ts PORT COUNT
 *
 * Prints "ready" once the handshake is done and the requests start going
 * out; when stdin closes, prints "wrote N" (the bytes the peer's socket took
 * by then: what backpressure let through) and exits.
 */

const [portText, countText] = Deno.args;
const port = Number(portText);
const count = Number(countText);
const encoder = new TextEncoder();

function frame(text: string): Uint8Array {
  const body = encoder.encode(text);
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/** All COUNT requests, framed, in one buffer (ids 1..COUNT, a few member orders). */
function requests(): Uint8Array {
  const parts: Uint8Array[] = [];
  let total = 0;
  for (let id = 1; id <= count; id++) {
    const text = id % 3 === 0
      ? `{"method":"add","params":{"b":${id},"a":1},"id":${id}}`
      : `{"id":${id},"method":"add","params":{"a":${id},"b":2}}`;
    const f = frame(text);
    parts.push(f);
    total += f.length;
  }
  const all = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  return all;
}

// Built before connecting: a peer silent for 3 s after its handshake is cut off.
const all = requests();
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
    // 16 KiB at a time, so that `wrote` counts what the peer took so far.
    while (wrote < all.length) wrote += await conn.write(all.subarray(wrote, wrote + 16384));
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
