/**
 * The floor this runtime allows: a raw TCP echo of frames the size of an RPC
 * echo request, with no codec, no ids and no promises per message.
 *
 *   deno run -A bench/raw_echo.ts server                 prints its port, echoes bytes
 *   deno run -A bench/raw_echo.ts client PORT SIZE N C   prints a JSON result
 *
 * The client sends C frames of SIZE bytes at once and waits for all C to come
 * back, N/C times (C = 1 is a plain round trip).
 */

async function serve(): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log((listener.addr as Deno.NetAddr).port);
  for await (const conn of listener) {
    (async () => {
      const buf = new Uint8Array(64 * 1024);
      try {
        while (true) {
          const n = await conn.read(buf);
          if (n === null) break;
          let off = 0;
          while (off < n) off += await conn.write(buf.subarray(off, n));
        }
      } catch {
        // The client went away.
      } finally {
        conn.close();
      }
    })();
  }
}

async function load(port: number, size: number, count: number, concurrency: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const batch = new Uint8Array(size * concurrency);
  for (let i = 0; i < concurrency; i++) new DataView(batch.buffer).setUint32(i * size, size - 4);
  const buf = new Uint8Array(64 * 1024);
  const rounds = Math.ceil(count / concurrency);
  const times = new Float64Array(rounds);
  const t0 = performance.now();
  for (let r = 0; r < rounds; r++) {
    const start = performance.now();
    let off = 0;
    while (off < batch.length) off += await conn.write(batch.subarray(off));
    let got = 0;
    while (got < batch.length) {
      const n = await conn.read(buf);
      if (n === null) throw new Error("Echo server closed the connection");
      got += n;
    }
    times[r] = performance.now() - start;
  }
  const elapsed = performance.now() - t0;
  conn.close();
  times.sort();
  console.log(JSON.stringify({
    size,
    concurrency,
    messages: rounds * concurrency,
    msgs_per_s: Math.round((rounds * concurrency) / (elapsed / 1000)),
    rtt_p50_ms: times[Math.floor(rounds / 2)],
  }));
}

if (import.meta.main) {
  const [mode, ...rest] = Deno.args;
  if (mode === "server") await serve();
  else if (mode === "client") await load(...(rest.map(Number) as [number, number, number, number]));
  else {
    console.error("usage: raw_echo.ts server | client PORT SIZE N CONCURRENCY");
    Deno.exit(2);
  }
}
