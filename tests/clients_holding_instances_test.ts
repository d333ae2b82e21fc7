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
import { connect } from "../clients/connection.ts";
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

/** Instances that answer the hello and `sys.ping` but hold every other request. */
function holders(n: number, seen: Seen): Listener[] {
  return Array.from({ length: n }, (_, i) =>
    listen({
      port: 0,
      role: "server",
      name: `holder${i}`,
      onRequest: (method) => {
        if (method === "sys.ping") return (seen.pings++, { pong: true });
        seen.held++;
        return new Promise(() => {});
      },
    }));
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

Deno.test("a non-idempotent request held by an instance waits its timeout there, sent once; the next goes elsewhere", async () => {
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
