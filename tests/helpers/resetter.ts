/**
 * Connections reset by their client before the listener accepts them
 * (hostile44c H-C1): every 100 ms, `burst` connects to a port, each
 * aborted (SO_LINGER 0) as soon as it is made. Deno's accept then fails
 * ENOTCONN for each.
 */
import { openRawTcp } from "../../wire/raw_tcp.ts";
import { sleep, within } from "./raw.ts";

/** Starts resetting at 127.0.0.1:`port`; `stop` resolves with how many were sent. */
export function resetter(port: number, burst: number): { stop: () => Promise<number> } {
  const raw = openRawTcp()!;
  const to = raw.address("127.0.0.1", port)!;
  let on = true;
  let sent = 0;
  const done = (async () => {
    while (on) {
      for (let i = 0; i < burst; i++) {
        const fd = raw.connect(to);
        if (fd < 0) continue;
        for (let t = 0; t < 50 && raw.connected(fd, to) === 0; t++) await sleep(1);
        raw.abort(fd);
        sent++;
      }
      await sleep(100);
    }
  })();
  return {
    stop: async () => {
      on = false;
      await done;
      return sent;
    },
  };
}

/**
 * New connections one after another for `ms`: `answered` is how many got
 * their answer (`talk`) within 2 s, `slowest` the longest wait (ms),
 * `failed` the others.
 */
export async function newConnections(talk: () => Promise<void>, ms: number) {
  let answered = 0;
  let failed = 0;
  let slowest = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const t0 = performance.now();
    try {
      await within(talk(), 2000, "a new connection's answer");
      answered++;
    } catch {
      failed++;
    }
    slowest = Math.max(slowest, performance.now() - t0);
    await sleep(50);
  }
  return { answered, failed, slowest: Math.round(slowest) };
}
