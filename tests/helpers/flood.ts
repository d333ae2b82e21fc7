/**
 * Floods of subscriptions that never read, for the broker's memory and
 * fan-out tests and for `deno task bench broker-flood` (one flood for both).
 */
import { concat, HELLO, jsonFrame, within, writeAll } from "./raw.ts";

const decoder = new TextDecoder();

export interface Flood {
  conns: Deno.Conn[];
  /** Subscriptions the broker refused (answered with an error). */
  refused: number;
  stop(): void;
}

/** How a {@link flood} is made. */
export interface FloodOptions {
  /** What every subscription is to (default `/`). */
  topic?: string;
  /** Subscriptions written at once before their answers are read (default 500). */
  batch?: number;
  /** Whether the connections subscribe all at once, or one after another (default). */
  parallel?: boolean;
  /** Longest wait for a batch's answers (default 30 s): a broker that stops answering fails. */
  timeoutMs?: number;
}

/**
 * `n` connections × `subs` drop-oldest subscriptions, heartbeating, never
 * reading after (a hostile user's flood of the broker's memory).
 * @throws {Error} when the broker closes a flooding connection, or does not answer in time
 */
export async function flood(
  port: number,
  n: number,
  subs: number,
  options: FloodOptions = {},
): Promise<Flood> {
  const { topic = "/", batch = 500, parallel = false, timeoutMs = 30_000 } = options;
  const conns: Deno.Conn[] = [];
  const ping = jsonFrame({ method: "ping" });
  const timer = setInterval(() => {
    for (const c of conns) c.write(ping).catch(() => {});
  }, 500);
  let refused = 0;
  const one = async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, jsonFrame(HELLO));
    const welcome = await readAnswers(conn, 1, new Uint8Array(0), timeoutMs);
    if (welcome.refused > 0) throw new Error("The broker refused a flooding connection's hello");
    let rest = welcome.rest;
    conns.push(conn);
    for (let i = 0; i < subs; i += batch) {
      const frames = [];
      for (let k = i; k < Math.min(subs, i + batch); k++) {
        frames.push(jsonFrame({
          id: k + 1,
          method: "broker.subscribe",
          params: { topic, policy: "drop-oldest" },
        }));
      }
      await writeAll(conn, concat(frames));
      const answers = await readAnswers(conn, frames.length, rest, timeoutMs);
      refused += answers.refused;
      rest = answers.rest;
    }
  };
  try {
    if (parallel) await Promise.all(Array.from({ length: n }, one));
    else for (let c = 0; c < n; c++) await one();
  } catch (err) {
    stop();
    throw err;
  }
  function stop() {
    clearInterval(timer);
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // Closed by the broker.
      }
    }
  }
  return {
    conns,
    get refused() {
      return refused;
    },
    stop,
  };
}

/**
 * Answers to `n` pipelined requests read off `conn`, counting the refused
 * (frames parsed in place: no copy of the buffer per frame; the broker's
 * pings are not answers).
 */
async function readAnswers(
  conn: Deno.Conn,
  n: number,
  carry: Uint8Array,
  timeoutMs: number,
): Promise<{
  refused: number;
  rest: Uint8Array;
}> {
  const end = performance.now() + timeoutMs;
  let buf = carry;
  let refused = 0;
  let got = 0;
  let at = 0;
  const chunk = new Uint8Array(256 * 1024);
  while (got < n) {
    while (got < n && at + 4 <= buf.length) {
      const len = ((buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]) >>> 0;
      if (at + 4 + len > buf.length) break;
      const text = decoder.decode(buf.subarray(at + 4, at + 4 + len));
      if (text.includes('"error"')) refused++;
      if (!text.includes('"method"')) got++;
      at += 4 + len;
    }
    if (got === n) break;
    const left = Math.max(1, end - performance.now());
    const read = await within(conn.read(chunk), left, `${n - got} of ${n} flood answers`);
    if (read === null) throw new Error("The broker closed a flooding connection");
    buf = concat([buf.subarray(at), chunk.subarray(0, read)]);
    at = 0;
  }
  return { refused, rest: buf.slice(at) };
}
