/** Floods of subscriptions that never read, for the broker's memory and fan-out tests. */
import { concat, jsonFrame, rawHandshake, RawReader, writeAll } from "./raw.ts";

export interface Flood {
  conns: Deno.Conn[];
  refused: number;
  stop(): void;
}

/**
 * `n` connections × `subs` drop-oldest subscriptions to `topic`, heartbeating,
 * never reading after (a hostile user's flood of the broker's memory).
 */
export async function flood(port: number, n: number, subs: number, topic = "/"): Promise<Flood> {
  const conns: Deno.Conn[] = [];
  const ping = jsonFrame({ method: "ping" });
  const timer = setInterval(() => {
    for (const c of conns) c.write(ping).catch(() => {});
  }, 500);
  let refused = 0;
  for (let c = 0; c < n; c++) {
    const raw = await Deno.connect({ hostname: "127.0.0.1", port });
    const reader = new RawReader(raw);
    await rawHandshake(raw, reader);
    conns.push(raw);
    for (let i = 0; i < subs; i += 500) {
      const frames = [];
      for (let k = i; k < Math.min(subs, i + 500); k++) {
        frames.push(jsonFrame({
          id: k + 1,
          method: "broker.subscribe",
          params: { topic, policy: "drop-oldest" },
        }));
      }
      await writeAll(raw, concat(frames));
      for (let k = 0; k < frames.length; k++) {
        const answer = await reader.json(30_000);
        if (answer?.error !== undefined) refused++;
      }
    }
  }
  return {
    conns,
    refused,
    stop() {
      clearInterval(timer);
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Closed by the broker.
        }
      }
    },
  };
}
