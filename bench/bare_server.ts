/**
 * The floor for an idle connection: a bare Deno TCP server that reads each
 * connection into a 4 KiB buffer and does nothing else. Prints its port.
 */
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log((listener.addr as Deno.NetAddr).port);
for await (const conn of listener) {
  (async () => {
    const buf = new Uint8Array(4096);
    try {
      while ((await conn.read(buf)) !== null) { /* discard */ }
    } catch {
      // Gone.
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  })();
}
