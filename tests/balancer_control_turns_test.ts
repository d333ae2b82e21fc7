/**
 * The balancer's own costly requests (`balancer.backends`, `sys.stats`)
 * take turns (roles/balancer/control_turns.ts, over roles/_costly_turns.ts):
 * a connection pipelining thousands of them no longer has them handled back
 * to back as read (hostile review 35 H7: 2,000 × `balancer.backends` of 256
 * backends held another client's `sys.ping` 1.8-2.0 s).
 */
import assert from "node:assert/strict";
import { ControlTurns } from "../roles/balancer/control_turns.ts";
import { CostlyTurns } from "../roles/_costly_turns.ts";
import type { Peer, RequestHandler, RequestMeta } from "../wire/mod.ts";
import { startBalancer, startServers } from "./helpers/balancer.ts";
import {
  closeQuietly,
  concat,
  jsonFrame,
  rawHandshake,
  RawReader,
  writeAll,
} from "./helpers/raw.ts";

/** A connection as the turns see it: counts its holds. */
function fakePeer(host: string) {
  return {
    held: 0,
    conn: { isClosed: false, remoteHost: host },
    identity: undefined,
    holdInput(hold = true) {
      this.held += hold ? 1 : -1;
    },
  };
}

Deno.test("ControlTurns.wrap() defers balancer.backends and sys.stats past the turn's budget, never sys.ping or forwarded requests", async () => {
  let now = 0;
  const control = new ControlTurns(
    new CostlyTurns({ msPerTurn: 4, msPerRequest: 1, now: () => now }),
  );
  const ran: string[] = [];
  const handle: RequestHandler = (method) => {
    ran.push(method);
    now += 1;
    return method;
  };
  const wrapped = control.wrap(handle);
  const peer = fakePeer("10.0.0.1");
  const call = (method: string) => wrapped(method, {}, peer as unknown as Peer, {} as RequestMeta);
  const first = Array.from({ length: 6 }, () => call("balancer.backends"));
  // The turn's 4 ms: four at once, the rest wait and their connection is held.
  assert.deepEqual(first.slice(0, 4), Array(4).fill("balancer.backends"));
  assert.ok(first[4] instanceof Promise && first[5] instanceof Promise);
  assert.equal(peer.held, 1);
  // Not costly: answered at once even now.
  assert.equal(call("sys.ping"), "sys.ping");
  assert.equal(call("add"), "add");
  assert.ok(call("sys.stats") instanceof Promise);
  assert.equal(await first[5], "balancer.backends");
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(peer.held, 0);
  assert.equal(ran.filter((m) => m === "sys.stats").length, 1);
});

/** Counts the frames arriving on `conn` until `n` or its end; `onFirst` at the first. */
async function countFrames(
  conn: Deno.Conn,
  n: number,
  counter: { frames: number },
  onFirst: () => void,
) {
  const buf = new Uint8Array(256 * 1024);
  let skip = 0; // bytes of the current frame still to come
  let head = new Uint8Array(0); // a length prefix split over reads
  while (counter.frames < n) {
    const got = await conn.read(buf);
    if (got === null) return;
    let i = 0;
    while (i < got) {
      if (skip > 0) {
        const k = Math.min(skip, got - i);
        skip -= k;
        i += k;
        continue;
      }
      const need = 4 - head.length;
      const part = buf.subarray(i, Math.min(got, i + need));
      head = concat([head, part]);
      i += part.length;
      if (head.length < 4) break;
      skip = new DataView(head.buffer, head.byteOffset).getUint32(0);
      head = new Uint8Array(0);
      if (++counter.frames === 1) onFirst();
    }
  }
}

Deno.test("balancer: a client's sys.ping is answered while another connection's 5,000 pipelined balancer.backends are still being answered", async () => {
  const servers = await startServers(2);
  const balancer = await startBalancer(servers);
  const [hostname, port] = [balancer.address.split(":")[0], Number(balancer.address.split(":")[1])];
  const flood = await Deno.connect({ hostname, port });
  const pinger = await Deno.connect({ hostname, port });
  try {
    await rawHandshake(flood, new RawReader(flood));
    const pings = new RawReader(pinger);
    await rawHandshake(pinger, pings);
    const N = 5000;
    const requests = concat(
      Array.from(
        { length: N },
        (_, i) => jsonFrame({ id: i + 1, method: "balancer.backends", params: {} }),
      ),
    );
    const counter = { frames: 0 };
    let pingSent = false;
    const sendPing = () => {
      pingSent = true;
      writeAll(pinger, jsonFrame({ id: "p", method: "sys.ping", params: {} })).catch(() => {});
    };
    const counting = countFrames(flood, N, counter, sendPing);
    await writeAll(flood, requests);
    // The ping goes out once the first answers are in; its answer comes a turn or so later,
    // not once every request read with them is answered.
    const pong = await pings.json(10_000);
    const answeredBefore = counter.frames;
    assert.ok(pingSent);
    assert.equal(pong?.id, "p");
    await counting;
    assert.equal(counter.frames, N, "every request answered");
    assert.ok(
      answeredBefore < 600,
      `${answeredBefore} of ${N} answers to the pipelining connection came before the ping's`,
    );
  } finally {
    closeQuietly(flood);
    closeQuietly(pinger);
    await balancer.stop();
    await Promise.all(servers.map((s) => s.stop()));
  }
});
