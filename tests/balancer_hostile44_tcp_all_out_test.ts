/**
 * hostile44c H-C2: in `--mode tcp` one refused connect takes a backend out
 * at once and only `--rise` checks bring it back; with every backend out a
 * client is closed at once ("no backend is up"), though every backend may
 * be accepting again. Two backends restarted one second apart (each down
 * 300 ms, a rolling restart) closed 47 new connections in the second after
 * (flap.py); HAProxy `mode tcp` over the same backends closed none. When
 * no backend is up, trying them costs a connect; closing the client is a
 * certain failure.
 */
import assert from "node:assert/strict";
import { closeQuietly, sleep, waitFor, within, writeAll } from "./helpers/raw.ts";
import { startTcpBalancer } from "./helpers/tcp_backend.ts";

/** An echo server on a fixed port that can stop listening (refused) and listen again. */
class Blinking {
  #listener: Deno.Listener | undefined;
  readonly #conns = new Set<Deno.Conn>();
  port = 0;

  constructor() {
    this.listen();
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  listen(): void {
    const l = Deno.listen({ hostname: "127.0.0.1", port: this.port });
    this.port = (l.addr as Deno.NetAddr).port;
    this.#listener = l;
    (async () => {
      for await (const conn of l) {
        this.#conns.add(conn);
        (async () => {
          const buf = new Uint8Array(1024);
          try {
            for (let n; (n = await conn.read(buf)) !== null;) {
              await writeAll(conn, buf.subarray(0, n));
            }
          } catch {
            // Reset by the balancer.
          } finally {
            this.#conns.delete(conn);
            closeQuietly(conn);
          }
        })();
      }
    })().catch(() => {});
  }

  /** Stops listening; resolves once a connect is refused. */
  async refuse(): Promise<void> {
    closeQuietly(this.#listener);
    this.#listener = undefined;
    for (let i = 0; i < 200; i++) {
      try {
        closeQuietly(await Deno.connect({ hostname: "127.0.0.1", port: this.port }));
      } catch {
        return;
      }
      await sleep(10);
    }
    throw new Error(`${this.address} still accepts`);
  }

  close(): void {
    closeQuietly(this.#listener);
    for (const c of this.#conns) closeQuietly(c);
  }
}

/** A new connection through `port`: whether its byte came back. */
async function echoed(port: number): Promise<boolean> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(conn, new Uint8Array([7]));
    const n = await within(conn.read(new Uint8Array(8)), 3000, "the echo");
    return n === 1;
  } catch {
    return false;
  } finally {
    closeQuietly(conn);
  }
}

Deno.test("balancer --mode tcp: backends restarted one after another, each accepting again, take new connections at once (hostile44c H-C2)", async () => {
  const a = new Blinking();
  const b = new Blinking();
  // Checks every 2 s, rise 2: a backend taken out is back after 2-4 s by its checks alone.
  const lb = await startTcpBalancer([a.address, b.address], ["--check-interval", "2s"]);
  const port = Number(lb.address.split(":")[1]);
  const downLine = (x: Blinking) => lb.stderr().includes(`Backend ${x.address} is down`);
  try {
    // A restarts: refused for a moment; the clients of that moment go to B.
    await a.refuse();
    for (let i = 0; i < 4 && !downLine(a); i++) {
      assert.ok(await echoed(port), "B serves");
      await sleep(50);
    }
    await waitFor(() => downLine(a), 2000, "a refused connect to take A out");
    a.listen();
    // Then B restarts, while A is accepting again but still out by the balancer's count.
    await b.refuse();
    await echoed(port);
    await waitFor(() => downLine(b), 2000, "a refused connect to take B out");
    b.listen();
    // Both accept now: a new connection has two backends that would take it.
    const results: boolean[] = [];
    for (let i = 0; i < 5; i++) {
      results.push(await echoed(port));
      await sleep(100);
    }
    const closed = lb.stderr().split("\n").filter((l) => l.includes("no backend is up")).length;
    assert.deepEqual(
      results,
      [true, true, true, true, true],
      `new connections while both backends accept (${closed} "no backend is up" lines)`,
    );
  } finally {
    await lb.stop();
    a.close();
    b.close();
  }
});
