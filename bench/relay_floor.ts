/**
 * The floor of a Deno proxy: a relay that reads bytes from one socket and
 * writes them to another, nothing else (no parsing, no ids, no promise per
 * message). Each client connection gets its own backend connection, round
 * robin over the backends, and every read becomes exactly one write in the
 * same direction (the batching the balancer aims at: one read of a client's
 * frames, one write to a backend; one read of its answers, one write back).
 *
 *   deno run -A bench/relay_floor.ts HOST:PORT,HOST:PORT,...
 *
 * Listens on a free port of 127.0.0.1 and prints it on stdout.
 */

async function pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const n = await from.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await to.write(buf.subarray(off, n));
    }
  } catch {
    // Either side went away.
  }
  try {
    to.closeWrite();
  } catch {
    // Already closed.
  }
}

if (import.meta.main) {
  const backends = (Deno.args[0] ?? "").split(",").filter((b) => b !== "");
  if (backends.length === 0) {
    console.error("usage: relay_floor.ts HOST:PORT[,HOST:PORT...]");
    Deno.exit(2);
  }
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log((listener.addr as Deno.NetAddr).port);
  let next = 0;
  for await (const client of listener) {
    const [hostname, port] = backends[next++ % backends.length].split(":");
    Deno.connect({ hostname, port: Number(port) }).then((backend) => {
      client.setNoDelay(true);
      backend.setNoDelay(true);
      pipe(client, backend);
      pipe(backend, client);
    }, () => client.close());
  }
}
