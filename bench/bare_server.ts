/**
 * The runtime's floor for an idle connection: a bare TCP server that does
 * nothing else. Prints its port. Its mode (first argument) is what it keeps
 * per connection:
 * - `read4096` (default; `bench idle`'s first figure), `read512`, `read1`:
 *   a Deno.Conn with one read of that many bytes always pending, which is
 *   what a server needs to see a request or the peer's close;
 * - `hold`: the accepted Deno.Conn and nothing else (no read: a server
 *   that does this cannot serve anyone — the least a socket costs here);
 * - `node`: node:net under Deno, reading through 'data' events.
 */
/** Starts a bare server of `mode` on 127.0.0.1 in this process. @returns its port */
export async function serveBare(mode: string): Promise<number> {
  if (mode === "node") {
    const net = await import("node:net");
    const kept = new Set<unknown>();
    const server = net.createServer((socket) => {
      kept.add(socket);
      socket.on("data", () => {});
      socket.on("error", () => {});
      socket.on("close", () => kept.delete(socket));
    });
    return await new Promise<number>((resolve) =>
      server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port))
    );
  }
  const size = mode === "hold" ? 0 : Number(mode.replace("read", ""));
  if (!(size >= 0)) throw new Error(`bare_server: unknown mode ${mode}`);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held = new Set<Deno.Conn>();
  (async () => {
    for await (const conn of listener) {
      if (size === 0) {
        held.add(conn);
        continue;
      }
      (async () => {
        const buf = new Uint8Array(size);
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
  })();
  return (listener.addr as Deno.NetAddr).port;
}

if (import.meta.main) console.log(await serveBare(Deno.args[0] ?? "read4096"));
