/**
 * A service's registered fakes that answer their hello and the binder's
 * `sys.ping` but hold every request (never answer, never hang up): hostile
 * review 39a P7. Five of them beside one real server made 5 of 6 one-shot
 * `dist client --service` calls fail TIMEOUT after the whole `--timeout`,
 * nothing reported. A request on a connection that got nothing since its
 * hello now gets a sixteenth of its time there (clients/discovery/hold.ts),
 * then goes to the next instance; the holder is reported.
 */
import assert from "node:assert/strict";
import { connect, type Connection } from "../clients/connection.ts";
import { STUCK_AFTER } from "../clients/discovery/hold.ts";
import { DistError, listen, type Listener, sleep } from "../wire/mod.ts";
import {
  echoServer,
  type LocalBinder,
  registerPorts,
  serviceClient,
  startBinder,
} from "./helpers/binder.ts";

/** What the holders were sent: requests held, and the binder's pings. */
interface Seen {
  held: number;
  pings: number;
}

/**
 * Instances that answer the hello and `sys.ping` but hold every other
 * request (after answering the first `answered` of them).
 */
function holders(n: number, seen: Seen, answered = 0): Listener[] {
  return Array.from({ length: n }, (_, i) => {
    let left = answered;
    return listen({
      port: 0,
      role: "server",
      name: `holder${i}`,
      by: `holder${i}`,
      onRequest: (method, params) => {
        if (method === "sys.ping") return (seen.pings++, { pong: true });
        if (left-- > 0) return method === "echo" ? (params as { text: string }).text : true;
        seen.held++;
        return new Promise(() => {});
      },
    });
  });
}

/** A server that answers `echo` after `delayMs` (a real one, slow to answer). */
function slowServer(delayMs: number): Listener {
  return listen({
    port: 0,
    role: "server",
    name: "slow",
    by: "slow",
    onRequest: async (method, params) => {
      if (method !== "echo") return true;
      await sleep(delayMs);
      return (params as { text: string }).text;
    },
  });
}

const portOf = (l: Listener) => l.addr.port;

async function withBinder(servers: Listener[], test: (binder: LocalBinder) => Promise<void>) {
  const binder = await startBinder({ maxPerSource: 1000 });
  try {
    await test(binder);
  } finally {
    for (const s of servers) await s.close(0);
    await binder.stop();
  }
}

const oneShot = (binder: LocalBinder) => serviceClient(binder, "echo", "hi");

Deno.test("one-shot dist client --service answers past 5 instances that hold every request, and reports them", async () => {
  // Before: 5 of 6 exited 1 with "TIMEOUT: Call echo timed out" after 5 s; the binder ran no check.
  const seen: Seen = { held: 0, pings: 0 };
  const fakes = holders(5, seen);
  const live = echoServer("live");
  await withBinder([...fakes, live], async (binder) => {
    await registerPorts(binder, "compute", [...fakes.map(portOf), live.addr.port]);
    const pingsBefore = seen.pings;
    for (let run = 0; run < 6; run++) {
      const res = await oneShot(binder);
      assert.equal(res.code, 0, `run ${run}: ${res.stderr}`);
      assert.equal(res.stdout.trim(), "hi");
      assert.ok(res.ms < 4000, `run ${run} took ${Math.round(res.ms)} ms`);
    }
    assert.ok(seen.held > 0, "no request reached a holder");
    // Reported: the binder checked them (they answer its ping, so it keeps them).
    assert.ok(seen.pings > pingsBefore, "the binder checked no holder");
  });
});

Deno.test("one-shot dist client --service gets a real server's first answer slower than the share", async () => {
  // 1 s is past the share of a 5 s timeout (312 ms): the only instance is tried again, unwatched.
  const slow = slowServer(1000);
  await withBinder([slow], async (binder) => {
    await registerPorts(binder, "compute", [slow.addr.port]);
    const res = await oneShot(binder);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout.trim(), "hi");
    assert.ok(res.ms < 4500, `took ${Math.round(res.ms)} ms`);
  });
});

for (const waitMs of [0, 1500]) {
  Deno.test(`a non-idempotent request held by an instance (sent ${waitMs} ms after connecting) waits its timeout there, sent once; the next goes elsewhere`, async () => {
    // Before (hostile40a T7), after a wait past the holder's first heartbeat: the next request went
    // to the holder again and timed out too.
    const seen: Seen = { held: 0, pings: 0 };
    const [fake] = holders(1, seen);
    const live = echoServer("live");
    await withBinder([fake, live], async (binder) => {
      await registerPorts(binder, "compute", [fake.addr.port]);
      const conn = await connect({ binders: [binder.address], service: "compute" }, {
        name: "t",
        connectTimeout: 5000,
      });
      try {
        await sleep(waitMs);
        const t0 = performance.now();
        const once = conn.request("echo", { text: "once" }, { idempotent: false, timeout: 1500 });
        // A live instance appears meanwhile: the held request still waits its timeout, sent once.
        await registerPorts(binder, "compute", [live.addr.port]);
        await assert.rejects(once, (err) => err instanceof DistError && err.code === "TIMEOUT");
        assert.ok(performance.now() - t0 >= 1400, "cut short before its timeout");
        assert.equal(seen.held, 1, "a non-idempotent request was sent twice");
        // The holder is passed over now: the next request goes to the live one.
        const r = await conn.exchange("echo", { text: "next" }, { timeout: 3000 });
        assert.equal(r.by, "live");
        assert.equal(seen.held, 1);
      } finally {
        conn.close();
      }
    });
  });
}

/** `n` requests in a row on `conn`, each with `timeout`: who answered each, or its error code. */
async function inARow(conn: Connection, n: number, timeout: number) {
  const out: { by: string; ms: number }[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const by = await conn.exchange("echo", { text: `r${i}` }, { timeout }).then(
      (r) => r.by ?? "?",
      (err) => (err as DistError).code,
    );
    out.push({ by, ms: performance.now() - t0 });
  }
  return out;
}

Deno.test("a library service connection that waits 2.5 s before its first request gets past 5 holders: 6 requests in a row answered", async () => {
  // Before (hostile40a T7): the holder's heartbeat had come by the first request, so the
  // connection counted as tried and was never left: 0 of 6 answered, each TIMEOUT after 5 s.
  const seen: Seen = { held: 0, pings: 0 };
  const fakes = holders(5, seen);
  const live = echoServer("live");
  await withBinder([...fakes, live], async (binder) => {
    await registerPorts(binder, "compute", fakes.map(portOf));
    const conn = await connect({ binders: [binder.address], service: "compute" }, { name: "t" });
    try {
      assert.match(conn.remote?.name ?? "", /^holder/);
      await registerPorts(binder, "compute", [live.addr.port]);
      const pingsBefore = seen.pings;
      await sleep(2500); // past the holder's first heartbeat (1 s of silence)
      const runs = await inARow(conn, 6, 5000);
      for (const [i, { by, ms }] of runs.entries()) {
        assert.equal(by, "live", `request ${i}: ${JSON.stringify(runs)}`);
        assert.ok(ms < 5000, `request ${i} took ${Math.round(ms)} ms`);
      }
      assert.ok(seen.held > 0, "no request reached a holder");
      assert.ok(seen.pings > pingsBefore, "the binder checked no holder: none was reported");
    } finally {
      conn.close();
    }
  });
});

Deno.test(`a service connection whose instance answered once and then holds everything moves on after ${STUCK_AFTER} timeouts in a row`, async () => {
  // Before: every later request went to it and timed out, for as long as the connection lived.
  const seen: Seen = { held: 0, pings: 0 };
  const [fake] = holders(1, seen, 1);
  const live = echoServer("live");
  await withBinder([fake, live], async (binder) => {
    await registerPorts(binder, "compute", [fake.addr.port]);
    const conn = await connect({ binders: [binder.address], service: "compute" }, { name: "t" });
    try {
      assert.equal((await conn.exchange("echo", { text: "first" })).by, "holder0");
      await registerPorts(binder, "compute", [live.addr.port]);
      const pingsBefore = seen.pings;
      const runs = await inARow(conn, STUCK_AFTER + 2, 400);
      const bys = runs.map((r) => r.by);
      assert.deepEqual(bys, [...Array(STUCK_AFTER).fill("TIMEOUT"), "live", "live"]);
      assert.ok(seen.pings > pingsBefore, "the binder checked no holder: none was reported");
    } finally {
      conn.close();
    }
  });
});

Deno.test("dist client --service --random does not wait its timeout on instances that hold every request", async () => {
  // Before: each holder's turn failed TIMEOUT after the whole 5 s.
  const seen: Seen = { held: 0, pings: 0 };
  const fakes = holders(5, seen);
  const live = echoServer("live");
  await withBinder([...fakes, live], async (binder) => {
    await registerPorts(binder, "compute", [...fakes.map(portOf), live.addr.port]);
    const res = await serviceClient(binder, "--random", "12");
    assert.equal(res.code, 0, res.stderr);
    assert.ok(res.ms < 12_000, `took ${Math.round(res.ms)} ms`);
    assert.ok(seen.held > 0, "no request reached a holder");
  });
});
