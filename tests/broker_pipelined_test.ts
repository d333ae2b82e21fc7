/**
 * Costly requests pipelined by many connections do not hold the broker for
 * everyone (hostile review 33, Y4): 8 connections each write 100
 * `broker.topics` pages (or subscribes, or `sys.stats`) at once while
 * another client pings. Each request is bounded work, but handled back to
 * back as they were read they held the other client's ping for hundreds of
 * ms to seconds; taken a few ms a turn, in rotation (costly_turns.ts), a
 * ping waits about a turn. The broker is a child process, so the test's
 * clients do not share its event loop.
 */
import assert from "node:assert/strict";
import { type DistProcess, startDist } from "./helpers/dist.ts";
import { jsonFrame, RawReader, sleep, writeAll } from "./helpers/raw.ts";

const TOPICS = 20_000;
const CONNS = 8;
const BURST = 100;

/** A raw JSON connection, welcomed. */
async function open(port: number): Promise<{ conn: Deno.Conn; reader: RawReader }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new RawReader(conn);
  await writeAll(
    conn,
    jsonFrame({ op: "hello", v: 1, codec: "json", role: "client", name: "y4", heartbeat: 60_000 }),
  );
  assert.equal((await reader.json(10_000))?.op, "welcome");
  return { conn, reader };
}

/** Reads until `n` frames have come (answers; heartbeats are rare), counting length prefixes only. */
async function drain(conn: Deno.Conn, n: number): Promise<void> {
  const buf = new Uint8Array(256 * 1024);
  let need = -4; // < 0: bytes of the next length prefix still to read; else payload bytes left
  let header = 0;
  let seen = 0;
  const deadline = performance.now() + 60_000;
  while (seen < n) {
    assert.ok(performance.now() < deadline, `${seen} of ${n} answers in 60 s`);
    const got = await conn.read(buf);
    assert.ok(got !== null, `Closed after ${seen} of ${n} answers`);
    for (let i = 0; i < got;) {
      if (need < 0) {
        header = header * 256 + buf[i++];
        if (++need === 0) {
          need = header;
          header = 0;
          if (need === 0) need = -4, seen++;
        }
      } else {
        const take = Math.min(need, got - i);
        i += take;
        need -= take;
        if (need === 0) need = -4, seen++;
      }
    }
  }
}

/** Sends `method` and reads its answer on a connection with nothing else in flight. */
async function call(
  c: { conn: Deno.Conn; reader: RawReader },
  method: string,
  params: unknown,
): Promise<Record<string, unknown>> {
  await writeAll(c.conn, jsonFrame({ id: 1, method, params }));
  for (;;) {
    const answer = await c.reader.json(30_000);
    assert.ok(answer !== null, `No answer to ${method}`);
    if (answer.id === 1) return answer; // else a heartbeat
  }
}

async function withTopics(body: (broker: DistProcess) => Promise<void>): Promise<void> {
  const broker = await startDist(["broker", "--port", "0"]);
  const pub = await open(broker.port);
  try {
    for (let i = 0; i < TOPICS; i += 2000) {
      const frames = [];
      for (let j = i; j < i + 2000; j++) {
        const params = { topic: `/t/${j % 100}/${j}`, value: 1, retain: false };
        frames.push(jsonFrame({ method: "broker.publish", params }));
      }
      await writeAll(pub.conn, concat(frames));
    }
    await call(pub, "sys.ping", {}); // after every publish before it
    await body(broker);
  } finally {
    pub.conn.close();
    await broker.stop();
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) all.set(p, at), at += p.length;
  return all;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/**
 * One request's cost (median round trip alone), then CONNS × BURST of it
 * pipelined while another client pings every 2 ms: the pings' round trips.
 */
async function burst(port: number, method: string, params: unknown) {
  const attackers = await Promise.all(Array.from({ length: CONNS }, () => open(port)));
  const other = await open(port);
  try {
    const alone: number[] = [];
    for (let k = 0; k < 8; k++) {
      const t0 = performance.now();
      const answer = await call(attackers[0], method, params);
      if (k >= 3) alone.push(performance.now() - t0); // after a few to warm up
      assert.equal(answer.error, undefined, JSON.stringify(answer.error));
    }
    const frames = concat(
      Array.from({ length: BURST }, (_, i) => jsonFrame({ id: i + 2, method, params })),
    );
    let done = false;
    const pings: number[] = [];
    const pinger = (async () => {
      while (!done) {
        const t0 = performance.now();
        await call(other, "sys.ping", {});
        pings.push(performance.now() - t0);
        await sleep(2);
      }
    })();
    const t0 = performance.now();
    await Promise.all(attackers.map(async (a) => {
      await writeAll(a.conn, frames);
      await drain(a.conn, BURST);
    }));
    const took = performance.now() - t0;
    done = true;
    await pinger;
    const stats = (await call(other, "sys.stats", {})).result as { memory: Record<string, number> };
    return { one: median(alone), took, pings, memory: stats.memory };
  } finally {
    for (const a of attackers) a.conn.close();
    other.conn.close();
  }
}

/**
 * The bound: another client's ping within a few requests' time (a turn is
 * 4 ms of them plus one), measured against the cost of one request alone on
 * the same broker.
 */
function assertPingsBounded(
  what: string,
  r: { one: number; took: number; pings: number[]; memory: Record<string, number>; n?: string },
): void {
  const sorted = [...r.pings].sort((a, b) => a - b);
  const p50 = sorted[sorted.length >> 1];
  const p90 = sorted[Math.floor(sorted.length * 0.9)];
  const max = sorted[sorted.length - 1];
  const figures = `${what}: one alone ${r.one.toFixed(1)} ms, ${r.n ?? `${CONNS} × ${BURST}`} in ${
    r.took.toFixed(0)
  } ms; other client's ping p50 ${p50.toFixed(1)} p90 ${p90.toFixed(1)} max ${
    max.toFixed(1)
  } ms (${sorted.length} pings; forced collections ${r.memory.collections})`;
  console.log(figures);
  // Pings came all along while the burst was handled, not one after it all
  // (before: 2-4 pings in 0.7-4.7 s, the longest 0.6-4.7 s).
  assert.ok(sorted.length >= 5, figures);
  // Typical and mean waits within a few requests' time, with room for a
  // loaded machine (load 10 on 2 cores). The longest is only reported: the
  // broker descheduled for a few hundred ms at that load makes it.
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  assert.ok(p50 <= 3 * r.one + 30, figures);
  assert.ok(mean <= 5 * r.one + 50, `mean ${mean.toFixed(1)} ms; ${figures}`);
}

Deno.test("broker: 8 connections × 100 pipelined topic listings keep another client's ping within a few listings' time", async () => {
  await withTopics(async (broker) => {
    const r = await burst(broker.port, "broker.topics", { prefix: "/", limit: 1000 });
    assertPingsBounded("broker.topics limit 1000", r);
  });
});

Deno.test("broker: 8 connections × 100 pipelined subscribes (each naming 1,000 covered topics) keep another client's ping short", async () => {
  await withTopics(async (broker) => {
    const r = await burst(broker.port, "broker.subscribe", { topic: "/" });
    assertPingsBounded("broker.subscribe /", r);
  });
});

/**
 * Unsubscribes take the same turns (hostile review 34, Z8): each
 * connection holds UNSUBS subscriptions, then pipelines an unsubscribe of
 * every one while another client pings. Handled back to back as they were
 * read, a read's worth of them (thousands) held the broker in one go.
 */
const UNSUBS = 1200;

Deno.test("broker: 8 connections × 1,200 pipelined unsubscribes keep another client's ping short", async () => {
  const broker = await startDist(["broker", "--port", "0", "--heartbeat", "60s"]);
  const conns = await Promise.all(Array.from({ length: CONNS }, () => open(broker.port)));
  let other: Awaited<ReturnType<typeof open>> | undefined;
  try {
    // Each connection subscribes UNSUBS patterns and notes their sids.
    const sids = await Promise.all(conns.map(async (a, c) => {
      const subscribes = Array.from(
        { length: UNSUBS },
        (_, i) =>
          jsonFrame({ id: i + 1, method: "broker.subscribe", params: { topic: `/u/${c}/${i}` } }),
      );
      await writeAll(a.conn, concat(subscribes));
      const got: number[] = [];
      while (got.length < UNSUBS) {
        const answer = await a.reader.json(30_000);
        assert.ok(answer !== null, "Closed while subscribing");
        if (answer.id !== undefined) got.push((answer.result as { sid: number }).sid);
      }
      return got;
    }));
    // Opened once the subscriptions are made: its pings time only the unsubscribes.
    const o = other = await open(broker.port);
    const alone: number[] = [];
    for (let k = 0; k < 8; k++) {
      const t0 = performance.now();
      const answer = await call(o, "broker.unsubscribe", { sid: 1 });
      if (k >= 3) alone.push(performance.now() - t0);
      assert.equal((answer.error as { code: string }).code, "NOT_FOUND");
    }
    let done = false;
    const pings: number[] = [];
    const pinger = (async () => {
      while (!done) {
        const t0 = performance.now();
        await call(o, "sys.ping", {});
        pings.push(performance.now() - t0);
        await sleep(2);
      }
    })();
    const t0 = performance.now();
    await Promise.all(conns.map(async (a, c) => {
      const unsubscribes = sids[c].map((sid, i) =>
        jsonFrame({ id: UNSUBS + i + 1, method: "broker.unsubscribe", params: { sid } })
      );
      await writeAll(a.conn, concat(unsubscribes));
      await drain(a.conn, UNSUBS);
    }));
    const took = performance.now() - t0;
    done = true;
    await pinger;
    const stats = (await call(o, "sys.stats", {})).result as Record<string, unknown>;
    assert.equal(stats.subscriptions, 0, "every unsubscribe was done");
    assertPingsBounded("broker.unsubscribe", {
      one: median(alone),
      took,
      pings,
      memory: stats.memory as Record<string, number>,
      n: `${CONNS} × ${UNSUBS}`,
    });
  } finally {
    for (const a of conns) a.conn.close();
    other?.conn.close();
    await broker.stop();
  }
});
