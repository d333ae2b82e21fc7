/**
 * The dashboard's event streams (launch/dashboard/server.ts) against
 * peers that open them and never read: at most `maxClients` are open, and
 * one more takes the place of the oldest of the address holding the most,
 * so such peers cannot keep a page out (they used to: the newest was
 * refused 503, and a stream that is not read is cut only once the
 * kernel's socket buffers fill, hours at the rate events go). In process,
 * with a cap of 3.
 */
import assert from "node:assert/strict";
import { parseTopology } from "../config/mod.ts";
import { planView } from "../launch/dashboard/mod.ts";
import { Dashboard } from "../launch/dashboard/server.ts";
import { makePlan } from "../launch/plan.ts";
import { ROLES } from "../roles/mod.ts";
import { closeQuietly, sleep } from "./helpers/raw.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** A dashboard of one server (never started) on every address, at most 3 event streams. */
function dashboard(): { board: Dashboard; close: () => Promise<void> } {
  const topology = parseTopology(`[[server]]\nname = "s1"\nport = 0\n`, {
    file: "t.toml",
    roles: ROLES,
  });
  const plan = makePlan(topology, { roles: ROLES });
  const view = planView(plan, new Map(topology.instances.map((i) => [i.name, i])));
  const board = new Dashboard({
    hostname: "0.0.0.0",
    port: 0,
    view,
    info: { file: "t.toml", pid: Deno.pid, started_ms: Date.now(), steps: { s1: 0 } },
    maxClients: 3,
    warn: () => {},
  });
  return {
    board,
    close: async () => {
      await board.close();
      await view.poller.close();
    },
  };
}

/** Opens an event stream from `host` that is never read. */
async function silentStream(host: string, port: number): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: host, port });
  await conn.write(new TextEncoder().encode(`GET /events HTTP/1.1\r\nHost: ${host}\r\n\r\n`));
  return conn;
}

/** Whether the server ended `conn` (EOF after whatever it sent) within `ms`. */
async function endedWithin(conn: Deno.Conn, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const buf = new Uint8Array(64 * 1024);
  const eof = (async () => {
    try {
      while ((await conn.read(buf)) !== null) { /* what it sent before: read on */ }
    } catch {
      // Reset: ended too.
    }
    return true;
  })();
  const r = await Promise.race([
    eof,
    new Promise<boolean>((res) => timer = setTimeout(res, ms, false)),
  ]);
  clearTimeout(timer);
  return r;
}

/** A page's stream: its status and first event's name, within `ms`. */
async function pageEvents(url: string, ms: number): Promise<string> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ms);
  try {
    const res = await fetch(url, { signal: abort.signal });
    if (res.status !== 200) return `${res.status} ${(await res.text()).trim()}`;
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("\n\n")) {
      const r = await reader.read();
      if (r.done) break;
      text += r.value;
    }
    await reader.cancel();
    return `200 ${text.split("\n")[0]}`;
  } finally {
    clearTimeout(timer);
  }
}

/** This machine's first IPv4 address other than loopback, if any. */
function otherAddress(): string | undefined {
  return Deno.networkInterfaces().find((i) => i.family === "IPv4" && !i.address.startsWith("127."))
    ?.address;
}

async function until(ok: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!ok()) {
    if (performance.now() > end) throw new Error(`${what} within ${ms} ms`);
    await sleep(20);
  }
}

Deno.test({
  name: "Dashboard: event streams that are never read do not keep a page out; the oldest goes",
  ...opts,
  async fn() {
    const { board, close } = dashboard();
    const held: Deno.Conn[] = [];
    try {
      const port = Number(new URL(board.url).port);
      for (let i = 0; i < 3; i++) {
        held.push(await silentStream("127.0.0.1", port));
        await until(() => board.clients === i + 1, 3000, `stream ${i} open`);
      }
      // A page still gets its stream, at once, in place of the oldest silent one.
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        assert.equal(await pageEvents(`http://127.0.0.1:${port}/events`, 3000), "200 event: hello");
        assert.ok(performance.now() - t0 < 3000);
        assert.ok(await endedWithin(held[i], 2000), `silent stream ${i} was not ended`);
        // The page closed its stream; the attacker opens another.
        held.push(await silentStream("127.0.0.1", port));
        await until(() => board.clients === 3, 3000, "3 streams open");
      }
      assert.equal(await endedWithin(held[3], 200), false, "a newer silent stream was ended");
    } finally {
      for (const c of held) closeQuietly(c);
      await close();
    }
  },
});

Deno.test({
  name: "Dashboard: a new event stream replaces one of the address holding the most streams",
  ...opts,
  ignore: otherAddress() === undefined,
  async fn() {
    const other = otherAddress()!;
    const { board, close } = dashboard();
    const held: Deno.Conn[] = [];
    try {
      const port = Number(new URL(board.url).port);
      // One stream from this machine's other address, the oldest of all.
      const page = await silentStream(other, port);
      await until(() => board.clients === 1, 3000, "the page's stream open");
      // Many from loopback: each replaces a loopback stream, never the page's.
      for (let i = 0; i < 6; i++) {
        held.push(await silentStream("127.0.0.1", port));
        await until(() => board.clients === Math.min(3, i + 2), 3000, `stream ${i} open`);
      }
      assert.equal(await endedWithin(page, 300), false, "the other address's stream was ended");
      assert.ok(await endedWithin(held[0], 2000), "the oldest loopback stream is still open");
      closeQuietly(page);
    } finally {
      for (const c of held) closeQuietly(c);
      await close();
    }
  },
});
