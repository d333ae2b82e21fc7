/**
 * Newcomers (wire/newcomers.ts): at a full port, the connection closed to
 * make room is the oldest not-yet-proven one of the source holding the most
 * of them, so a flood of silent connections from one address closes its
 * own, not a slower client's from another (hostile review W3).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { Newcomers } from "../wire/mod.ts";
import { closeQuietly, rawHandshake, RawReader } from "./helpers/raw.ts";
import { HOST, server } from "./helpers/rpc.ts";

Deno.test("Newcomers closes the oldest of the source with the most waiting, and forgets settled ones", () => {
  const closed: string[] = [];
  const n = new Newcomers();
  const arrive = (name: string, source: string) => n.arrive(() => closed.push(name), source);
  const a1 = arrive("a1", "10.0.0.1");
  arrive("a2", "10.0.0.1");
  for (let i = 1; i <= 3; i++) arrive(`b${i}`, "10.0.0.2");
  assert.equal(n.size, 5);
  assert.equal(n.makeRoom(), true);
  assert.deepEqual(closed, ["b1"], "the source with 3 waiting gives up its oldest, not a1");
  n.makeRoom();
  assert.deepEqual(closed, ["b1", "a1"], "2 against 2: the source that came first");
  a1.settled(); // Idempotent: it was closed already.
  assert.equal(n.size, 3);
  n.makeRoom();
  n.makeRoom();
  n.makeRoom();
  assert.equal(n.makeRoom(), false, "none waits");
  assert.equal(n.size, 0);
  assert.equal(n.evicted, 5);
});

Deno.test("Newcomers closes, over random arrivals and departures, what a scan of every source would", () => {
  // The reference: sources in the order they began waiting, the first with the most waiting.
  const ref = new Map<string, string[]>();
  const refMakeRoom = (): string | undefined => {
    let most: string[] | undefined;
    for (const list of ref.values()) {
      if (most === undefined || list.length > most.length) most = list;
    }
    return most?.[0];
  };
  const refLeave = (name: string, source: string) => {
    const list = ref.get(source)!;
    list.splice(list.indexOf(name), 1);
    if (list.length === 0) ref.delete(source);
  };
  let seed = 7;
  const random = (n: number) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
  const closed: string[] = [];
  const n = new Newcomers();
  const waiting = new Map<string, { source: string; settle: () => void }>();
  for (let i = 0; i < 5000; i++) {
    const op = random(10);
    if (op < 5) {
      const name = `c${i}`;
      const source = `10.0.0.${random(12)}`;
      const c = n.arrive(() => closed.push(name), source);
      waiting.set(name, { source, settle: () => c.settled() });
      if (!ref.has(source)) ref.set(source, []);
      ref.get(source)!.push(name);
    } else if (op < 8 && waiting.size > 0) {
      const names = [...waiting.keys()];
      const name = names[random(names.length)];
      const { source, settle } = waiting.get(name)!;
      settle();
      waiting.delete(name);
      refLeave(name, source);
    } else {
      const expected = refMakeRoom();
      assert.equal(n.makeRoom(), expected !== undefined);
      if (expected !== undefined) {
        assert.equal(closed.at(-1), expected, `step ${i}`);
        refLeave(expected, waiting.get(expected)!.source);
        waiting.delete(expected);
      }
    }
    assert.equal(n.size, waiting.size);
  }
});

Deno.test("Newcomers.admits() counts connections in their handshake against the limit, and makes room at it", () => {
  const closed: string[] = [];
  const n = new Newcomers();
  const a = n.arrive(() => closed.push("a"), "10.0.0.1", { handshaking: true });
  assert.equal(n.handshaking, 1);
  assert.equal(n.admits(1, 3), true, "1 open + 1 handshaking < 3");
  assert.equal(closed.length, 0);
  assert.equal(n.admits(2, 3), true, "at the limit: the one in its handshake makes room");
  assert.deepEqual([...closed], ["a"]);
  assert.equal(n.handshaking, 1, "it counts until its handshake ends, closed or not");
  a.handshook();
  a.handshook(); // Idempotent.
  assert.equal(n.handshaking, 0);
  assert.equal(n.admits(2, 3), true);
  const b = n.arrive(() => closed.push("b"), "10.0.0.2");
  b.settled();
  assert.equal(n.admits(3, 3), false, "full, and none waits");
  assert.equal(n.evicted, 1);
});

/** A silent TCP connection to `port` from the local address `from`. */
function silentFrom(port: number, from: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port, localAddress: from }, () => resolve(s));
    s.on("error", reject);
  });
}

Deno.test("a flood of silent connections from one address does not close a slow client's from another", async () => {
  const l = server({ maxConnections: 4, handshakeMs: 10_000, onRequest: () => null });
  const flood: net.Socket[] = [];
  const slow = await Deno.connect({ hostname: HOST, port: l.addr.port });
  try {
    // The slow client connected first and has not said hello; 12 silent ones follow from 127.0.0.2.
    for (let i = 0; i < 12; i++) flood.push(await silentFrom(l.addr.port, "127.0.0.2"));
    await new Promise((r) => setTimeout(r, 200));
    await rawHandshake(slow, new RawReader(slow)); // Still open: it gets its welcome.
    const open = flood.filter((s) => !s.destroyed && s.readable).length;
    assert.ok(open <= 4, `the flood keeps at most the free slots (${open} open)`);
  } finally {
    for (const s of flood) s.destroy();
    closeQuietly(slow);
    await l.close(100);
  }
});
