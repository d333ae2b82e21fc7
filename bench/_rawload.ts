// Raw pipelined load: measures server capacity with a near-free client.
const port = Number(Deno.args[0]);
const depth = Number(Deno.args[1] ?? 2); // batches in flight
const per = 64;
const c = await Deno.connect({ hostname: "127.0.0.1", port });
const te = new TextEncoder();
const frame = (o: unknown) => {
  const b = te.encode(JSON.stringify(o));
  const f = new Uint8Array(4 + b.length);
  new DataView(f.buffer).setUint32(0, b.length);
  f.set(b, 4);
  return f;
};
await c.write(frame({ op: "hello", v: 1, codec: "json", role: "client", name: "raw" }));
const buf = new Uint8Array(1 << 20);
let pending = new Uint8Array(0);
// read welcome
let n = (await c.read(buf))!;
const parts: Uint8Array[] = [];
for (let i = 0; i < per; i++) {
  parts.push(frame({ id: i + 1, method: "echo", params: { text: "x".repeat(64) } }));
}
const batch = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
{
  let o = 0;
  for (const p of parts) {
    batch.set(p, o);
    o += p.length;
  }
}
const total = 600000;
let sent = 0, got = 0;
let wake: (() => void) | undefined;
const t0 = performance.now();
const writer = (async () => {
  while (sent < total) {
    while (sent - got >= depth * per) await new Promise<void>((r) => wake = r);
    await c.write(batch);
    sent += per;
  }
})();
let carry = 0; // bytes of a partial frame still expected
let hdr = new Uint8Array(4), hdrHave = 0;
while (got < total) {
  n = (await c.read(buf))!;
  let i = 0;
  queueMicrotask(() => {
    wake?.();
    wake = undefined;
  });
  while (i < n) {
    if (carry > 0) {
      const take = Math.min(carry, n - i);
      carry -= take;
      i += take;
      if (carry === 0) got++;
      continue;
    }
    hdr[hdrHave++] = buf[i++];
    if (hdrHave === 4) {
      carry = new DataView(hdr.buffer).getUint32(0);
      hdrHave = 0;
      if (carry === 0) got++;
    }
  }
}
await writer;
const dt = performance.now() - t0;
console.log("server capacity", Math.round(total / dt * 1000), "req/s with depth", depth);
c.close();
