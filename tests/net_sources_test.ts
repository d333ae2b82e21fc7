/**
 * Connections by source (wire/sources.ts, hostile34 Z1): one source
 * holding every connection of a port past their hello no longer keeps
 * everyone else out; `maxConnectionsPerSource` bounds a source always; a
 * user's connections count together, wherever they come from. The wire
 * tests make other sources with the loopback addresses 127.0.0.2 and up
 * (node:net's `localAddress`).
 */
import assert from "node:assert/strict";
import { dial, DistError, listen, type Listener, SourceEntry, SourceTable } from "../wire/mod.ts";
import { clientSource, Gate, hashPassword, parseUsers } from "../auth/mod.ts";
import { waitFor } from "./helpers/raw.ts";
import { helloFrom } from "./helpers/from.ts";
import { connect, HOST } from "./helpers/rpc.ts";

/** A table with a log of what it closed (`"host#i: message"`). */
function table(max: number, perSource = 0) {
  const closed: string[] = [];
  const t = new SourceTable({ max, perSource, source: clientSource });
  let n = 0;
  const admit = (host: string): SourceEntry | DistError => {
    const id = `${host}#${++n}`;
    return t.admit(host, (why) => closed.push(`${id}: ${why.message}`));
  };
  /** Admits and settles (a connection past its hello), as `user` if given. */
  const hello = (host: string, user?: string): SourceEntry => {
    const e = admit(host);
    if (e instanceof DistError) throw e;
    e.hello(user);
    e.settled();
    return e;
  };
  return { t, closed, admit, hello };
}

Deno.test("SourceTable: a source alone may hold the whole limit; past it, it is refused naming the limit and the share", () => {
  const { t, admit, hello, closed } = table(8);
  for (let i = 0; i < 8; i++) hello("127.0.0.1");
  const refused = admit("127.0.0.1");
  assert.ok(refused instanceof DistError);
  assert.equal(refused.code, "OVERLOADED");
  assert.equal(
    refused.message,
    "Connection limit of 8 reached, and 127.0.0.1 holds 8: " +
      "one source may hold at most 2 while the limit is reached",
  );
  assert.deepEqual(closed, []);
  assert.equal(t.total, 8);
  assert.equal(t.stats().refused_source, 1);
});

Deno.test("SourceTable: at the limit, another source closes the newest connection of the source over its share, down to the share", () => {
  const { t, admit, hello, closed } = table(8);
  const hog = Array.from({ length: 8 }, () => hello("127.0.0.2"));
  const a = admit("127.0.0.3");
  assert.ok(a instanceof SourceEntry);
  assert.deepEqual(closed, [
    "127.0.0.2#8: Connection closed to make room: 8 connections (the limit), 127.0.0.2 held 8, " +
    "more than the 2 one source may hold while full",
  ]);
  assert.equal(t.held("127.0.0.2"), 7);
  // The hog may not take its slot back; others keep coming in, each at the hog's expense.
  assert.ok(admit("127.0.0.2") instanceof DistError);
  a.settled();
  for (let i = 4; i <= 8; i++) hello(`127.0.0.${i}`);
  assert.equal(t.held("127.0.0.2"), 2, "down to its share");
  assert.equal(closed.length, 6);
  assert.ok(closed.every((c, i) => c.startsWith(`127.0.0.2#${8 - i}:`)), "newest first");
  assert.ok(hog[0].linked && hog[1].linked);
  // Now every source is within its share: a newcomer is refused, as before.
  const full = admit("127.0.0.9");
  assert.ok(full instanceof DistError);
  assert.equal(full.message, "Connection limit of 8 reached");
  assert.deepEqual(
    { ...t.stats(), connections: t.total, descriptors: undefined },
    {
      connections: 8,
      max_connections: 8,
      max_per_source: 0,
      share_when_full: 2,
      refused_full: 1,
      refused_source: 1,
      closed_no_hello: 0,
      closed_source: 6,
      descriptors: undefined,
    },
  );
});

Deno.test("SourceTable: the source over its share gives up its connections without a hello first; one at its share only its own", () => {
  const { admit, hello, closed } = table(4);
  hello("10.0.0.1");
  hello("10.0.0.1");
  assert.ok(admit("10.0.0.1") instanceof SourceEntry); // no hello yet
  hello("10.0.0.2");
  // Full: 10.0.0.1 holds 3 > 1. A newcomer of 10.0.0.3 closes its newcomer, not its hello'd ones.
  assert.ok(admit("10.0.0.3") instanceof SourceEntry);
  assert.deepEqual(closed, [
    "10.0.0.1#3: Connection closed to make room: no hello yet, 4 connections",
  ]);
  // 10.0.0.2 is at its share (1): it may only close its own newcomers, and has none.
  assert.ok(admit("10.0.0.2") instanceof DistError);
  assert.equal(closed.length, 1, "10.0.0.3's newcomer stays");
});

Deno.test("SourceTable: a bound per source holds always, also far from the limit", () => {
  const { t, admit, hello } = table(100, 3);
  for (let i = 0; i < 3; i++) hello("192.0.2.1");
  const refused = admit("192.0.2.1");
  assert.ok(refused instanceof DistError);
  assert.equal(refused.message, "Connection limit of 3 per source reached: 192.0.2.1 holds 3");
  assert.ok(admit("192.0.2.2") instanceof SourceEntry);
  assert.equal(t.fullShare, 3, "the bound, below a quarter of the limit");
});

Deno.test("SourceTable: a hello proving a user moves the connection to its user's source, bounded wherever it comes from", () => {
  const { t, admit, hello } = table(100, 2);
  hello("10.0.0.1", "alice");
  hello("10.0.0.2", "alice");
  assert.equal(t.held("user alice"), 2);
  assert.equal(t.held("10.0.0.1"), 0, "its address holds none of them");
  const third = admit("10.0.0.3");
  assert.ok(third instanceof SourceEntry);
  assert.throws(
    () => third.hello("alice"),
    /Connection limit of 2 per source reached: user alice holds 2/,
  );
  third.leave();
  // The shared token's holders are their addresses: it proves no one in particular.
  hello("10.0.0.1", "token");
  assert.equal(t.held("10.0.0.1"), 1);
  assert.equal(t.total, 3);
});

Deno.test("SourceTable: while full, a hello proving a user who holds a quarter is refused; the user's connections are closed for others first", () => {
  const { t, admit, hello, closed } = table(8);
  for (let i = 1; i <= 3; i++) hello(`10.0.0.${i}`, "alice"); // alice holds 3 > 2, from 3 addresses
  for (let i = 4; i <= 8; i++) hello(`10.0.0.${i}`);
  assert.equal(t.held("user alice"), 3);
  // Full: 10.0.0.9 (holding none) closes alice's newest, not an address's connection.
  const e = admit("10.0.0.9");
  assert.ok(e instanceof SourceEntry);
  assert.equal(closed.length, 1);
  assert.match(closed[0], /^10\.0\.0\.3#3: .*user alice held 3, more than the 2 one source/);
  // It proves to be alice as well: she holds her share while the port is full.
  assert.throws(
    () => e.hello("alice"),
    (err: DistError) =>
      err.code === "OVERLOADED" &&
      err.message === "Connection limit of 8 reached, and user alice holds 2: " +
          "one source may hold at most 2 while the limit is reached",
  );
  e.leave();
  assert.equal(t.total, 7);
  assert.equal(t.stats().refused_source, 1);
});

Deno.test("SourceTable: a connection closed to make room while its hello was checked counts nowhere after it", () => {
  const { t, admit, closed } = table(2);
  const a = admit("10.0.0.1");
  const b = admit("10.0.0.2");
  assert.ok(a instanceof SourceEntry && b instanceof SourceEntry);
  assert.ok(admit("10.0.0.3") instanceof SourceEntry); // full: closes 10.0.0.1's, the oldest without a hello
  assert.equal(closed.length, 1);
  a.hello("alice"); // its credentials were good, but it is closed already
  a.settled();
  assert.equal(t.held("user alice"), 0);
  assert.equal(t.held("10.0.0.1"), 0);
  assert.equal(t.total, 2);
});

Deno.test("SourceTable: over random arrivals, hellos and departures, counts match and no source passes its bound", () => {
  let seed = 11;
  const random = (n: number) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
  const t = new SourceTable({ max: 40, perSource: 12, source: clientSource });
  const open = new Set<SourceEntry>();
  const pick = (ok: (e: SourceEntry) => boolean) => {
    const list = [...open].filter(ok);
    return list.length === 0 ? undefined : list[random(list.length)];
  };
  for (let i = 0; i < 4000; i++) {
    const op = random(10);
    if (op < 5) {
      let self: SourceEntry | undefined;
      const e = t.admit(`10.0.${random(3)}.${random(4)}`, () => open.delete(self!));
      if (e instanceof SourceEntry) open.add(self = e);
    } else if (op < 8) {
      const e = pick((e) => e.newcomer !== undefined);
      try {
        e?.hello(random(3) === 0 ? `u${random(3)}` : undefined);
        e?.settled();
      } catch {
        e?.leave();
        open.delete(e!);
      }
    } else {
      const e = pick(() => true);
      e?.leave();
      open.delete(e!);
    }
    assert.equal(t.total, open.size, `step ${i}`);
    assert.ok(t.total <= 40, `step ${i}: ${t.total} open`);
    const by = new Map<string, number>();
    for (const e of open) by.set(e.source.key, (by.get(e.source.key) ?? 0) + 1);
    for (const [key, n] of by) {
      assert.equal(t.held(key), n, `step ${i}: ${key}`);
      assert.ok(n <= 12, `step ${i}: ${key} holds ${n}`);
    }
  }
  for (const e of open) e.leave();
  assert.equal(t.total, 0);
});

Deno.test("one address holding every connection past its hello no longer keeps another client out (Z1)", async () => {
  const l: Listener = listen({
    host: HOST,
    port: 0,
    role: "server",
    name: "srv",
    maxConnections: 8,
    onRequest: () => 42,
  });
  const hog = Array.from({ length: 8 }, () => helloFrom(l.addr.port, "127.0.0.2"));
  try {
    for (const h of hog) assert.equal((await h.first())?.op, "welcome");
    const client = await connect(l); // from 127.0.0.1: was OVERLOADED "Connection limit of 8 reached"
    assert.equal(await client.call("x"), 42);
    await waitFor(() => hog.some((h) => h.closed), 2000, "one of the hog's connections closed");
    const told = hog.filter((h) => h.frames.some((f) => f.error?.code === "OVERLOADED"));
    assert.equal(told.length, 1);
    assert.match(
      told[0].frames.at(-1)!.error!.message,
      /^Connection closed to make room: 8 connections \(the limit\), 127\.0\.0\.2 held 8, more than the 2 one source/,
    );
    // The hog cannot take the slot back.
    const again = helloFrom(l.addr.port, "127.0.0.2");
    const answer = await again.first();
    assert.equal(answer?.error?.code, "OVERLOADED");
    assert.match(answer!.error!.message, /127\.0\.0\.2 holds 7: one source may hold at most 2/);
    assert.equal(await client.call("x"), 42, "the client stays");
    const stats = l.connectionStats();
    assert.equal(stats.closed_source, 1);
    assert.equal(stats.refused_source, 1);
    assert.equal(stats.connections, 8);
    client.close();
    again.socket.destroy();
  } finally {
    for (const h of hog) h.socket.destroy();
    await l.close(100);
  }
});

Deno.test("maxConnectionsPerSource bounds one address always; another address still gets in", async () => {
  const l = listen({
    host: HOST,
    port: 0,
    role: "server",
    name: "srv",
    maxConnectionsPerSource: 2,
    onRequest: () => 1,
  });
  const other = helloFrom(l.addr.port, "127.0.0.2");
  try {
    const a = await connect(l);
    const b = await connect(l);
    await assert.rejects(
      connect(l),
      (e: DistError) =>
        e.code === "OVERLOADED" &&
        e.message === "Connection limit of 2 per source reached: 127.0.0.1 holds 2",
    );
    assert.equal((await other.first())?.op, "welcome");
    a.close();
    await waitFor(() => l.connectionStats().connections === 2, 2000, "a's close counted");
    const c = await connect(l); // a's slot is free again
    b.close();
    c.close();
  } finally {
    other.socket.destroy();
    await l.close(100);
  }
});

Deno.test("a user's connections count together, from any address; the hello past the bound is refused", async () => {
  const hash = await hashPassword("pw", { ln: 10, r: 8, p: 1 });
  const users = parseUsers(
    `[users.alice]\npassword = "${hash}"\nmethods = ["*"]\n[users.bob]\npassword = "${hash}"\nmethods = ["*"]\n`,
    "u.toml",
  );
  const l = listen({
    host: HOST,
    port: 0,
    role: "server",
    name: "srv",
    maxConnectionsPerSource: 2,
    source: clientSource,
    authenticator: new Gate({ users, delays: { baseMs: 1 } }),
    onRequest: () => 1,
  });
  const as = (user: string) => ({
    role: "client",
    name: "c",
    credentials: { user, password: "pw" },
  });
  const at = { host: HOST, port: l.addr.port };
  try {
    const a1 = await dial(at, as("alice"));
    const a2 = helloFrom(l.addr.port, "127.0.0.2", { user: "alice", password: "pw" });
    assert.equal((await a2.first())?.op, "welcome");
    const a3 = helloFrom(l.addr.port, "127.0.0.3", { user: "alice", password: "pw" });
    const refused = await a3.first();
    assert.equal(refused?.error?.code, "OVERLOADED");
    assert.equal(
      refused?.error?.message,
      "Connection limit of 2 per source reached: user alice holds 2",
    );
    // 127.0.0.1 holds none of alice's: bob comes in from it, twice.
    const b1 = await dial(at, as("bob"));
    const b2 = await dial(at, as("bob"));
    for (const p of [a1, b1, b2]) p.close();
    a2.socket.destroy();
    a3.socket.destroy();
  } finally {
    await l.close(100);
  }
});
