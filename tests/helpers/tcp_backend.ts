/**
 * A raw TCP backend in the test's own process, for the balancer's L4 mode:
 * `serve` runs for each connection, which is closed after it.
 */
import { closeQuietly, within, writeAll } from "./raw.ts";
import { type DistProcess, type SpawnOptions, startDist } from "./dist.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface TcpBackend {
  port: number;
  /** `127.0.0.1:PORT`. */
  address: string;
  /** Stops listening, closes every connection and waits for each `serve`. */
  close(): Promise<void>;
}

export function rawBackend(serve: (conn: Deno.Conn) => Promise<void>): TcpBackend {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks: Promise<void>[] = [];
  const done = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      tasks.push(serve(conn).catch(() => {}).finally(() => closeQuietly(conn)));
    }
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    async close() {
      closeQuietly(listener);
      for (const c of conns) closeQuietly(c);
      await done;
      await Promise.all(tasks);
    },
  };
}

/** Everything `conn` sends until it ends, counted. */
export async function drainCount(conn: Deno.Conn): Promise<number> {
  const buf = new Uint8Array(64 * 1024);
  let total = 0;
  for (let n; (n = await conn.read(buf)) !== null;) total += n;
  return total;
}

/** Reads to the end of the stream, then answers how much it got. */
export async function countThenAnswer(conn: Deno.Conn): Promise<void> {
  await writeAll(conn, encoder.encode(`got ${await drainCount(conn)}`));
}

/** 200,000 bytes up, then EOF; the answer that comes back after it. */
export async function halfClose(address: string): Promise<string> {
  const [host, port] = address.split(":");
  const conn = await Deno.connect({ hostname: host, port: Number(port) });
  try {
    await writeAll(conn, new Uint8Array(200_000).fill(7));
    await conn.closeWrite();
    return await within(
      (async () => {
        const buf = new Uint8Array(100);
        let text = "";
        for (let n; (n = await conn.read(buf)) !== null;) {
          text += decoder.decode(buf.subarray(0, n));
        }
        return text;
      })(),
      5000,
      "the answer after the half-close",
    );
  } finally {
    closeQuietly(conn);
  }
}

/** A TCP balancer over `backends`, checking every 100 ms, logging every connection. */
export function startTcpBalancer(
  backends: string[],
  args: string[] = [],
  opts: SpawnOptions = {},
): Promise<DistProcess> {
  return startDist([
    "balancer",
    "--mode",
    "tcp",
    "--port",
    "0",
    "--backends",
    backends.join(","),
    "--check-interval",
    "100ms",
    "--log-level",
    "debug",
    ...args,
  ], opts);
}
