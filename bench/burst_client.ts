/**
 * A lockstep load for the metrics bench (bench/metrics.ts), in its own
 * process: one connection that sends BURST `echo` requests in one write,
 * reads every answer, and sends the next burst, BURSTS times. A closed loop
 * at `dist client --bench`'s c=64 shape whose bursts stay whole: the
 * listener reads, decodes and answers the same batches every run, so its
 * CPU per request no longer drifts with how a busy machine happens to
 * split the traffic (the per-request figure of c=64 swung by ±20 % between
 * rounds here, hiding a 2 % difference).
 *
 *   deno run -A bench/burst_client.ts PORT BURST BURSTS
 *
 * Prints one JSON line: `{requests, seconds, rps}` (after the handshake).
 */

const [portText, burstText, burstsText] = Deno.args;
const port = Number(portText);
const burst = Number(burstText);
const bursts = Number(burstsText);
const encoder = new TextEncoder();

function frame(text: string): Uint8Array {
  const body = encoder.encode(text);
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/** BURST requests, framed, in one buffer (ids 1..BURST: each burst reuses them). */
function requests(): Uint8Array {
  const parts = Array.from(
    { length: burst },
    (_, i) => frame(`{"id":${i + 1},"method":"echo","params":{"text":"hello"}}`),
  );
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  return all;
}

const all = requests();
const conn = await Deno.connect({ hostname: "127.0.0.1", port });
conn.setNoDelay(true);
await conn.write(frame(
  JSON.stringify({ op: "hello", v: 1, codec: "json", role: "client", name: "burst" }),
));

let buf = new Uint8Array(1 << 16);
let start = 0;
let end = 0;

/** Reads whole frames; returns how many were answers (a `ping` notification is not). */
async function readFrames(): Promise<number> {
  if (start === end) start = end = 0;
  else if (buf.length - end < 4096) {
    buf.copyWithin(0, start, end);
    end -= start;
    start = 0;
  }
  if (end === buf.length) {
    const bigger = new Uint8Array(buf.length * 2);
    bigger.set(buf.subarray(0, end));
    buf = bigger;
  }
  const n = await conn.read(buf.subarray(end));
  if (n === null) throw new Error("The listener closed the connection");
  end += n;
  let answers = 0;
  const view = new DataView(buf.buffer);
  while (end - start >= 4) {
    const len = view.getUint32(start);
    if (end - start < 4 + len) break;
    // An answer starts {"id": … ; a notification {"method": …
    if (buf[start + 6] === 0x69 /* i */) answers++;
    start += 4 + len;
  }
  return answers;
}

// The welcome.
while ((await readFrames(), start === 0)) { /* a partial welcome */ }

const t0 = performance.now();
for (let b = 0; b < bursts; b++) {
  await conn.write(all);
  let answered = 0;
  while (answered < burst) answered += await readFrames();
}
const seconds = (performance.now() - t0) / 1000;
conn.close();
console.log(JSON.stringify({ requests: burst * bursts, seconds, rps: burst * bursts / seconds }));
