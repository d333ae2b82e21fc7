/**
 * For queue group tests: a raw connection's count of the 1 KB deliveries
 * it reads, and a publisher of 1 KB values to /q/x.
 */
import type { BrokerClient } from "./broker.ts";
import { jsonFrame, sleep, waitFor, writeAll } from "./raw.ts";

/**
 * Counts the deliveries (frames of `least` bytes or more: 1 KB values)
 * arriving on `conn`, reading as fast as it can, and answers each request the broker sends (its proof that a
 * queue group member reads: roles/broker/group_proof.ts) as a dist peer
 * does, with UNKNOWN_METHOD; with `answer` false it never answers. Small
 * deliveries of `marker` are counted apart (`marks`): one read says all
 * before it on the connection was read; `answers` counts the requests
 * answered. `answerAfterMs`: each answer sent that late, reading going on
 * meanwhile.
 */
export function countFrames(
  conn: Deno.Conn,
  answer = true,
  least = 1000,
  marker?: string,
  answerAfterMs = 0,
): { count: number; marks: number; answers: number; done: Promise<void> } {
  const state = { count: 0, marks: 0, answers: 0, done: Promise.resolve() };
  state.done = (async () => {
    const buf = new Uint8Array(256 * 1024), head = new Uint8Array(4);
    let have = 0, skip = 0;
    // A small frame's bytes, kept to see whether it is a request.
    let small: Uint8Array | undefined, at = 0;
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) return;
        for (let i = 0; i < n;) {
          if (skip > 0) {
            const k = Math.min(skip, n - i);
            if (small !== undefined) small.set(buf.subarray(i, i + k), at);
            at += k;
            skip -= k;
            i += k;
            if (skip === 0 && small !== undefined) {
              if (marker !== undefined && isDeliveryOf(small, marker)) state.marks++;
              else if (answer && answerAfterMs > 0) {
                // Late (a loaded machine's reader), reading on meanwhile.
                const frame = small;
                setTimeout(async () => {
                  if (await answerRequest(conn, frame).catch(() => false)) state.answers++;
                }, answerAfterMs);
              } else if (answer && await answerRequest(conn, small)) state.answers++;
            }
            continue;
          }
          head[have++] = buf[i++];
          if (have === 4) {
            skip = new DataView(head.buffer).getUint32(0);
            have = 0;
            at = 0;
            small = (answer || marker !== undefined) && skip < least
              ? new Uint8Array(skip)
              : undefined;
            if (skip >= least) state.count++; // a delivery, not a ping
          }
        }
      }
    } catch {
      // Closed.
    }
  })();
  return state;
}

/** Whether `frame` is a delivery (broker.message) of `topic`. */
function isDeliveryOf(frame: Uint8Array, topic: string): boolean {
  try {
    const msg = JSON.parse(new TextDecoder().decode(frame));
    return msg.method === "broker.message" && msg.params?.topic === topic;
  } catch {
    return false;
  }
}

/** Answers `frame` if it is a request (an id and a method) with UNKNOWN_METHOD: whether it was. */
async function answerRequest(conn: Deno.Conn, frame: Uint8Array): Promise<boolean> {
  let msg: { id?: unknown; method?: unknown };
  try {
    msg = JSON.parse(new TextDecoder().decode(frame));
  } catch {
    return false;
  }
  if (msg.id === undefined || typeof msg.method !== "string") return false;
  const error = { code: "UNKNOWN_METHOD", message: `Unknown method: ${msg.method}` };
  await writeAll(conn, jsonFrame({ id: msg.id, error }));
  return true;
}

/**
 * Publishes `n` values of 1 KB to /q/x, 50 at a time (52 KB: under the 64 KiB a member keeping up
 * may have pending, and the 128 KiB past its last answer after which it may count as stalled),
 * each time followed by a small value to /mark and waiting until `marks()` (a reader's count of
 * /mark deliveries) says the reader has read it: so that reader keeps up whatever the machine's
 * load. Published at once, a loaded machine made the reader now and then miss answering the
 * broker's request within 25 ms, and no proven member kept up (README, Queue groups).
 */
export async function publishKbPaced(
  pub: BrokerClient,
  n: number,
  marks: () => number,
): Promise<void> {
  const value = "m".repeat(1000);
  for (let i = 0, mark = 1; i < n; i += 50, mark++) {
    for (let k = i; k < Math.min(n, i + 50); k++) pub.publish("/q/x", value);
    pub.publish("/mark", mark);
    await waitFor(() => marks() >= mark, 30_000, `the reader's marker ${mark}`);
  }
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
