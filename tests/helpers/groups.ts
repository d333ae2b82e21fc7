/**
 * For queue group tests: a raw connection's count of the 1 KB deliveries
 * it reads, and a publisher of 1 KB values to /q/x.
 */
import type { BrokerClient } from "./broker.ts";
import { sleep } from "./raw.ts";

/** Counts the deliveries of 1 KB values arriving on `conn`, reading as fast as it can. */
export function countFrames(conn: Deno.Conn): { count: number; done: Promise<void> } {
  const state = { count: 0, done: Promise.resolve() };
  state.done = (async () => {
    const buf = new Uint8Array(256 * 1024), head = new Uint8Array(4);
    let have = 0, skip = 0;
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) return;
        for (let i = 0; i < n;) {
          if (skip > 0) {
            const k = Math.min(skip, n - i);
            skip -= k;
            i += k;
            continue;
          }
          head[have++] = buf[i++];
          if (have === 4) {
            skip = new DataView(head.buffer).getUint32(0);
            have = 0;
            if (skip >= 1000) state.count++; // a delivery of 1 KB, not a ping
          }
        }
      }
    } catch {
      // Closed.
    }
  })();
  return state;
}

/** Publishes `n` values of 1 KB to /q/x, confirmed every 500 (then `paceMs` apart). */
export async function publishKb(pub: BrokerClient, n: number, paceMs = 0): Promise<void> {
  const value = "m".repeat(1000);
  for (let i = 0; i < n; i += 500) {
    for (let k = i; k < i + 500; k++) pub.publish("/q/x", value);
    await pub.confirm("/other", 0, false);
    if (paceMs > 0) await sleep(paceMs);
  }
}
