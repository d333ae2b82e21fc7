/**
 * Hostile review h46d: what a process posing as the listener (one that
 * bound the port while the real one restarts) can make a password dialer
 * do with the salt and cost it names in its challenge.
 *
 * D2: the dialer accepts any cost down to ln=10, r=1, p=1 (128 KiB of
 * scrypt, 0.59 ms a derivation here, against 50 ms for the users file's
 * default ln=14, r=8: 85× cheaper) and a salt of the squatter's choosing,
 * then sends a proof made with it: the squatter guesses the password
 * offline at that cost, with tables made once for its fixed salt and cost
 * for every dialer it catches. `dist passwd` never writes r below 8 nor ln
 * below 10, so no real listener names such a cost.
 *
 * D3: the 256 MiB cap is per derivation: N dials at once (a client's
 * links, a balancer's, a binder's peers, retries) derive N × 256 MiB at
 * once, each with a salt of its own (nothing remembered), and past the
 * dial's timeout. At c46 16 such dials took one process to 4,160 MiB of
 * RSS and 24.7 s; 8 to 2,110 MiB.
 */
import assert from "node:assert/strict";
import { dial } from "../wire/mod.ts";
import { jsonFrame, RawReader, writeAll } from "./helpers/raw.ts";

const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b));

/** A squatter answering every hello with a challenge at `cost`; counts the proofs it receives. */
function squatter(cost: string, salt: () => string) {
  const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const state = { proofs: 0 };
  const conns: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of server) {
      conns.push((async () => {
        const reader = new RawReader(conn);
        try {
          await reader.frame(10_000);
          await writeAll(
            conn,
            jsonFrame({
              op: "challenge",
              nonce: b64(new Uint8Array(18)),
              role: "server",
              name: "srv",
              salt: salt(),
              cost,
            }),
          );
          const m = await reader.json(30_000);
          if (m?.op === "proof") state.proofs++;
        } catch {
          /* the dialer gave up */
        } finally {
          try {
            conn.close();
          } catch { /* closed */ }
        }
      })());
    }
  })();
  return {
    port: server.addr.port,
    state,
    async close() {
      server.close();
      await accepting.catch(() => {});
      await Promise.all(conns);
    },
  };
}

const login = (port: number) =>
  dial({ host: "127.0.0.1", port }, {
    role: "client",
    name: "c",
    credentials: { user: "alice", password: "alice-pa55word" },
  }).then((peer) => peer.close(), () => {});

Deno.test("h46d D2: a dialer sends no proof for a cost below any users file's (ln=10, r=1, p=1) with the squatter's fixed salt", async () => {
  const fixed = b64(new TextEncoder().encode("squatter-salt-16"));
  const s = squatter("ln=10,r=1,p=1", () => fixed);
  try {
    await login(s.port);
  } finally {
    await s.close();
  }
  assert.equal(
    s.state.proofs,
    0,
    "the dialer answered a 128 KiB scrypt challenge with a proof: its password can be guessed offline at 0.6 ms a guess",
  );
});

Deno.test("h46d D3: dials at once to a squatter naming the largest cost do not take the dialer past 1 GiB", async () => {
  const s = squatter("ln=17,r=16,p=1", () => b64(crypto.getRandomValues(new Uint8Array(16))));
  let peak = Deno.memoryUsage().rss;
  const timer = setInterval(() => peak = Math.max(peak, Deno.memoryUsage().rss), 20);
  const t0 = performance.now();
  try {
    await Promise.all(Array.from({ length: 8 }, () => login(s.port)));
  } finally {
    clearInterval(timer);
    await s.close();
  }
  const mib = Math.round(peak / 2 ** 20);
  console.log(`8 dials: ${Math.round(performance.now() - t0)} ms, peak RSS ${mib} MiB`);
  assert.ok(mib < 1024, `8 dials to one squatter took the dialer to ${mib} MiB`);
});
