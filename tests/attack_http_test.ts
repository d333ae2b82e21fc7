/**
 * The HTTP ports (a role's `--metrics`, `dist up`'s dashboard) against a peer
 * that opens connections until the process has no file descriptor left,
 * one that never finishes its request header (slowloris), and one that
 * opens more connections than the port keeps (256).
 * Deno's HTTP server ends its accept loop when accept() fails (EMFILE), and
 * the rejection it leaves behind, unhandled, ended the whole process: any
 * local user could kill a role, or `dist up` and with it the cluster, with a
 * few hundred connections. The process must live on and serve again once the
 * flood is gone. The file limit is lowered with `prlimit` (util-linux) so the
 * flood stays small.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { metricsUrl, scrape } from "./helpers/metrics.ts";
import { startDashboard } from "./helpers/up.ts";
import { closeQuietly, sleep } from "./helpers/raw.ts";
import { dial } from "../wire/net.ts";
import { parseAddress } from "../config/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** Most descriptors the victim may open beyond those it holds now. */
const HEADROOM = 24;

/** Lowers `pid`'s open-file limit to what it holds now plus {@link HEADROOM}. */
async function squeeze(pid: number): Promise<void> {
  const held = [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
  const limit = held + HEADROOM;
  const out = await new Deno.Command("prlimit", {
    args: [`--pid=${pid}`, `--nofile=${limit}:${limit}`],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

/**
 * Opens (and holds) connections to `port` until the victim runs out of
 * descriptors: 3 × HEADROOM, or fewer when connecting fails. Each sends one
 * byte so the server takes it from its backlog.
 */
async function flood(port: number): Promise<Deno.Conn[]> {
  const held: Deno.Conn[] = [];
  for (let i = 0; i < 3 * HEADROOM; i++) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      held.push(c);
      await c.write(Uint8Array.of(0x47)).catch(() => {});
    } catch {
      break; // Refused: the listener is gone (before the fix) or its backlog is full.
    }
  }
  await sleep(300); // Time for the server to accept what it can and fail on the rest.
  return held;
}

/** Whether `status` has not settled within `ms`. */
async function stillRunning(status: Promise<Deno.CommandStatus>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([
    status.then(() => false),
    new Promise<boolean>((res) => timer = setTimeout(() => res(true), ms)),
  ]);
  clearTimeout(timer);
  return r;
}

/** Retries `f` every 100 ms until it resolves, at most `ms`. */
async function eventually<T>(f: () => Promise<T>, ms: number, what: string): Promise<T> {
  const end = performance.now() + ms;
  let last: unknown;
  while (performance.now() < end) {
    try {
      return await f();
    } catch (err) {
      last = err;
      await sleep(100);
    }
  }
  throw new Error(`${what} within ${ms} ms: ${last}`);
}

Deno.test({
  name: "attack: a flood on --metrics past the file limit leaves the role alive, serving again",
  ...opts,
  async fn() {
    const victim = await startDist(["server", "--port", "0", "--metrics", "127.0.0.1:0"]);
    let held: Deno.Conn[] = [];
    try {
      const url = await metricsUrl(victim.stderr);
      await scrape(url);
      await squeeze(victim.child.pid);
      held = await flood(Number(new URL(url).port));
      assert.ok(held.length > HEADROOM, `only ${held.length} connections could be opened`);
      for (const c of held) closeQuietly(c);
      held = [];
      assert.ok(
        await stillRunning(victim.child.status, 500),
        `the role died:\n${victim.stderr().slice(-2000)}`,
      );
      const text = await eventually(() => scrape(url), 8000, "metrics served again");
      assert.match(text, /^dist_info\{/m);
      assert.match(victim.stderr(), /The metrics server cannot accept \(.*Too many open files/);
      // The role itself answers too.
      const peer = await dial({ host: "127.0.0.1", port: victim.port }, {
        role: "client",
        name: "attack",
      });
      try {
        assert.equal(await peer.call("add", { a: 2, b: 3 }), 5);
      } finally {
        await peer.close();
      }
    } finally {
      for (const c of held) closeQuietly(c);
      await victim.stop();
    }
  },
});

Deno.test({
  name: "attack: a flood on dist up's dashboard past the file limit leaves the cluster up",
  ...opts,
  async fn() {
    const { up, base, port, stop } = await startDashboard();
    let held: Deno.Conn[] = [];
    try {
      const get = async () => {
        const r = await fetch(new URL("/api/cluster", base));
        assert.equal(r.status, 200);
        return await r.json();
      };
      await get();
      await squeeze(up.child.pid);
      held = await flood(port);
      assert.ok(held.length > HEADROOM, `only ${held.length} connections could be opened`);
      for (const c of held) closeQuietly(c);
      held = [];
      assert.ok(
        await stillRunning(up.child.status, 500),
        `the launcher died:\n${up.stdout().slice(-1500)}\n${up.stderr().slice(-1500)}`,
      );
      const cluster = await eventually(get, 8000, "the dashboard served again");
      assert.equal(cluster.instances.length, 1);
      assert.match(
        up.stdout() + up.stderr(),
        /The dashboard server cannot accept \(.*Too many open files/,
      );
      assert.doesNotMatch(up.stdout(), /Stopping/);
    } finally {
      for (const c of held) closeQuietly(c);
      await stop();
    }
  },
});

Deno.test({
  name: "attack: many concurrent /api/stats requests cost an instance one sys.stats, not one each",
  ...opts,
  async fn() {
    const { up, base, stop } = await startDashboard();
    try {
      const address = up.stdout().match(/s1 ready at (\S+)/)![1];
      const requests = async () => {
        const peer = await dial(parseAddress(address), { role: "client", name: "attack" });
        try {
          return ((await peer.call("sys.stats")) as { requests: number }).requests;
        } finally {
          peer.close();
        }
      };
      const before = await requests();
      // Each used to dial the instance and ask it: 100 connections and handshakes.
      const answers = await Promise.all(
        Array.from({ length: 100 }, async () => {
          const r = await fetch(new URL("/api/stats/s1", base));
          return r.status === 200 ? (await r.json()).stats?.name : r.status;
        }),
      );
      assert.deepEqual(new Set(answers), new Set(["s1"]));
      const asked = await requests() - before - 1; // Less our own sys.stats.
      assert.ok(asked <= 5, `the instance was asked ${asked} times`);
    } finally {
      await stop();
    }
  },
});

/** Opens a connection to `port` that sends `bytes` and no more. */
async function partial(port: number, bytes: string): Promise<Deno.Conn> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  await c.write(new TextEncoder().encode(bytes));
  return c;
}

/** Resolves with the time (ms from now) at which the server closes `conn`. */
async function closedAfter(conn: Deno.Conn): Promise<number> {
  const t0 = performance.now();
  const buf = new Uint8Array(1024);
  try {
    while ((await conn.read(buf)) !== null) { /* an answer: read on */ }
  } catch {
    // Reset: closed too.
  }
  return performance.now() - t0;
}

Deno.test({
  name:
    "attack: a client that never finishes its request header is cut after 10 s; /metrics answers meanwhile",
  ...opts,
  async fn() {
    const victim = await startDist(["server", "--port", "0", "--metrics", "127.0.0.1:0"]);
    const held: Deno.Conn[] = [];
    try {
      const url = await metricsUrl(victim.stderr);
      const port = Number(new URL(url).port);
      // Slowloris: a header line now and then, never the blank line that ends it.
      const slow = await partial(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n");
      held.push(slow);
      const cut = closedAfter(slow);
      let cutAfter: number | undefined;
      cut.then((ms) => cutAfter = ms);
      let scrapes = 0;
      const t0 = performance.now();
      while (cutAfter === undefined && performance.now() - t0 < 15_000) {
        await slow.write(new TextEncoder().encode(`X-${scrapes}: y\r\n`)).catch(() => {});
        assert.match(await scrape(url), /^dist_info\{/m);
        scrapes++;
        await sleep(500);
      }
      assert.ok(cutAfter !== undefined, "the slow client was never cut");
      assert.ok(cutAfter >= 9_500 && cutAfter < 13_000, `cut after ${cutAfter.toFixed(0)} ms`);
      assert.ok(scrapes >= 15, `${scrapes} scrapes answered meanwhile`);
      // Past the cap (256), connections that send nothing take the place of the
      // longest waiting: 400 of them, and /metrics still answers at once.
      for (let i = 0; i < 400; i++) held.push(await partial(port, "G"));
      const t1 = performance.now();
      assert.match(await scrape(url), /^dist_info\{/m);
      assert.ok(performance.now() - t1 < 3000, "the scrape waited for the flood");
      const closed = await Promise.all(
        held.slice(1).map((c) =>
          Promise.race([closedAfter(c).then(() => 1), sleep(500).then(() => 0)])
        ),
      );
      const cutOff = closed.reduce((a: number, b) => a + b, 0);
      assert.ok(cutOff >= 400 - 256, `only ${cutOff} of 400 were let go: more than 256 held`);
    } finally {
      for (const c of held) closeQuietly(c);
      await victim.stop();
    }
  },
});

Deno.test({
  name:
    "attack: dist up's dashboard cuts a header that never ends and stays within 256 connections",
  ...opts,
  async fn() {
    const { base, port, stop } = await startDashboard();
    const held: Deno.Conn[] = [];
    try {
      const slow = await partial(port, "GET /api/cluster HTTP/1.1\r\nHost: 127.0.0.1\r\n");
      const cut = closedAfter(slow);
      for (let i = 0; i < 300; i++) held.push(await partial(port, "GET / HTTP/1.1\r\n"));
      const r = await fetch(new URL("/api/cluster", base));
      assert.equal(r.status, 200);
      assert.equal((await r.json()).instances.length, 1);
      // The slowloris was the longest waiting: it went first, long before 10 s.
      const ms = await Promise.race([cut, sleep(12_000).then(() => Infinity)]);
      assert.ok(ms < 12_000, "the slow client was never cut");
      closeQuietly(slow);
    } finally {
      for (const c of held) closeQuietly(c);
      await stop();
    }
  },
});

/** One GET on a fresh connection, its whole answer, within `ms`. */
async function getFresh(port: number, path: string, ms: number): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => closeQuietly(conn), ms);
  try {
    await conn.write(
      new TextEncoder().encode(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
      ),
    );
    let text = "";
    const buf = new Uint8Array(16 * 1024);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return text;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}

Deno.test({
  name:
    "attack: 256 connections that announce a body and never send it do not lock a scrape out of --metrics",
  ...opts,
  async fn() {
    const victim = await startDist(["server", "--port", "0", "--metrics", "127.0.0.1:0"]);
    const held: Deno.Conn[] = [];
    try {
      const url = await metricsUrl(victim.stderr);
      const port = Number(new URL(url).port);
      // They used to count as busy: never closed to make room, each held for
      // 10 s, so every scrape was answered 503 while the attacker renewed them.
      const announce = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 65536\r\n\r\n";
      for (let i = 0; i < 256; i++) held.push(await partial(port, announce));
      await sleep(300);
      for (let round = 0; round < 4; round++) {
        const t0 = performance.now();
        const answer = await getFresh(port, "/metrics", 3000);
        const took = performance.now() - t0;
        assert.match(answer, /^HTTP\/1\.1 200 /, `round ${round}: ${answer.slice(0, 80)}`);
        assert.match(answer, /^dist_info\{/m);
        assert.ok(took < 3000, `round ${round} took ${took.toFixed(0)} ms`);
        // The attacker renews: 64 more that take the place of its oldest.
        for (let i = 0; i < 64; i++) held.push(await partial(port, announce));
        await sleep(100);
      }
    } finally {
      for (const c of held) closeQuietly(c);
      await victim.stop();
    }
  },
});

Deno.test({
  name:
    "attack: 32 event streams that never read do not keep a page's live view out of the dashboard",
  ...opts,
  async fn() {
    const { base, port, stop } = await startDashboard();
    const held: Deno.Conn[] = [];
    try {
      // They used to hold every one of the 32 streams for hours (cut only once
      // the kernel's buffers fill): a page got 503 "Too many dashboards open".
      for (let i = 0; i < 32; i++) {
        held.push(await partial(port, "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
      }
      await sleep(300);
      for (let round = 0; round < 3; round++) {
        const t0 = performance.now();
        const res = await fetch(new URL("/events", base), { signal: AbortSignal.timeout(3000) });
        assert.equal(res.status, 200, `round ${round}: ${res.status}`);
        const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
        let text = "";
        while (!text.includes("\n\n")) {
          const r = await reader.read();
          if (r.done) break;
          text += r.value;
        }
        await reader.cancel();
        assert.match(text, /^event: hello\n/, `round ${round}`);
        assert.ok(performance.now() - t0 < 3000, `round ${round} took too long`);
        held.push(await partial(port, "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
      }
    } finally {
      for (const c of held) closeQuietly(c);
      await stop();
    }
  },
});
