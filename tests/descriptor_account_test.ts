/**
 * The process's descriptors over every port (wire/descriptors.ts
 * DescriptorAccount): each port's table under its own limit, the sum of
 * their connections is bounded by the descriptors left for connections,
 * and when those are all in use one source filling the ports in turn is
 * the one that gives way, as on one full port (wire/sources.ts).
 */
import assert from "node:assert/strict";
import { DistError, SourceEntry, SourceTable } from "../wire/mod.ts";
import { DescriptorAccount, parseDescriptorLimit } from "../wire/descriptors.ts";
import { clientSource } from "../auth/mod.ts";

/** Tables (ports) charging one account of `room` descriptors, with a log of what they closed. */
function ports(room: number, weights: number[] = [1, 1]) {
  const account = new DescriptorAccount({ limit: room, reserve: 0 });
  const closed: string[] = [];
  let n = 0;
  const tables = weights.map((descriptors) =>
    new SourceTable({ max: 1000, account, descriptors, source: clientSource })
  );
  const admit = (port: number, host: string): SourceEntry | DistError => {
    const id = `${port}:${host}#${++n}`;
    return tables[port].admit(host, (why) => closed.push(`${id}: ${why.message}`));
  };
  const hello = (port: number, host: string, user?: string): SourceEntry => {
    const e = admit(port, host);
    if (e instanceof DistError) throw e;
    e.hello(user);
    e.settled();
    return e;
  };
  return { account, tables, closed, admit, hello };
}

Deno.test("DescriptorAccount: one address filling two ports in turn gives way to another, not the other way round", () => {
  const { account, tables, closed, admit, hello } = ports(12);
  assert.equal(account.share, 3);
  for (let i = 0; i < 6; i++) hello(0, "10.0.0.1");
  for (let i = 0; i < 6; i++) hello(1, "10.0.0.1");
  assert.equal(account.used, 12);
  assert.deepEqual(tables.map((t) => t.full), [false, false], "neither port is full on its own");
  // The hog is past its share: it is refused, naming the descriptors and the share.
  const refused = admit(0, "10.0.0.1");
  assert.ok(refused instanceof DistError);
  assert.equal(refused.code, "OVERLOADED");
  assert.match(
    refused.message,
    /File descriptors for connections in use \(12, .*10\.0\.0\.1 holds 12: one source may hold at most 3/,
  );
  // Another address gets in, on either port, each time at the hog's expense (its newest).
  hello(0, "10.0.0.2");
  hello(1, "10.0.0.3");
  assert.equal(closed.length, 2);
  assert.match(
    closed[0],
    /^[01]:10\.0\.0\.1#\d+: Connection closed to make room: the process's 12 file descriptors/,
  );
  assert.equal(account.held("10.0.0.1"), 10);
  assert.equal(account.used, 12);
  assert.equal(tables[0].total + tables[1].total, 12);
  const stats = tables[1].stats().descriptors;
  assert.deepEqual(stats, {
    limit: 12,
    for_connections: 12,
    in_use: 12,
    dialed: 0,
    share_when_full: 3,
    refused: 1,
    closed: 2,
  });
});

Deno.test("DescriptorAccount: the hog's connections without a hello go first, then its newest past it", () => {
  const { account, closed, admit, hello } = ports(12);
  for (let i = 0; i < 8; i++) hello(0, "10.0.0.1");
  const waiting = [admit(1, "10.0.0.1"), admit(1, "10.0.0.1")];
  hello(1, "10.0.0.1");
  hello(1, "10.0.0.1");
  assert.ok(waiting.every((e) => e instanceof SourceEntry));
  assert.equal(account.used, 12);
  hello(0, "10.0.0.2");
  hello(0, "10.0.0.2");
  assert.equal(closed.length, 2);
  assert.ok(closed.every((c) => /^1:.*no hello yet/.test(c)), closed.join("\n"));
  hello(0, "10.0.0.2");
  assert.match(closed[2], /^0:10\.0\.0\.1#8: .*held 10, more than the 3 one source may hold then/);
  // 10.0.0.2 at its share while full: its next is refused.
  const refused = admit(1, "10.0.0.2");
  assert.ok(refused instanceof DistError);
  assert.match(refused.message, /10\.0\.0\.2 holds 3: one source may hold at most 3/);
});

Deno.test("DescriptorAccount: a connection of two descriptors (L4) closes as many as it needs", () => {
  const { account, tables, closed, hello, admit } = ports(10, [1, 2]);
  for (let i = 0; i < 10; i++) hello(0, "10.0.0.1");
  const e = admit(1, "10.0.0.2");
  assert.ok(e instanceof SourceEntry);
  assert.equal(closed.length, 2);
  assert.equal(account.used, 10);
  assert.equal(account.held("10.0.0.2"), 2);
  e.leave();
  assert.equal(account.used, 8);
  assert.equal(tables[1].total, 0);
});

Deno.test("DescriptorAccount: the process's own dials leave fewer for accepted connections", () => {
  const { account, admit, hello } = ports(6);
  const release = [account.dialed(), account.dialed()];
  assert.equal(account.capacity, 4);
  for (let i = 0; i < 4; i++) hello(0, `10.0.0.${i + 1}`);
  // Four sources within their share (1 each of room 6): the fifth is refused, nothing to close.
  const refused = admit(1, "10.0.0.9");
  assert.ok(refused instanceof DistError);
  assert.match(refused.message, /in use: 4 of 4 .*every source within its share/);
  for (const r of release) r();
  release[0](); // idempotent
  assert.equal(account.capacity, 6);
  assert.ok(admit(1, "10.0.0.9") instanceof SourceEntry);
});

Deno.test("DescriptorAccount: while full, a hello proving a user at her share is refused", () => {
  const { account, admit, hello } = ports(8);
  hello(0, "10.0.0.1", "ann");
  hello(1, "10.0.0.2", "ann");
  const others = [0, 1, 2, 3, 4].map((i) => hello(1, `10.0.1.${i}`));
  const e = admit(0, "10.0.2.1");
  assert.ok(e instanceof SourceEntry);
  assert.equal(account.used, 8);
  assert.equal(account.held("user ann"), 2);
  // Every descriptor in use, ann at her share (2 of 8): a third connection proving ann is refused.
  assert.throws(() => e.hello("ann"), /user ann holds 2: one source may hold at most 2/);
  e.leave();
  others[0].leave();
  assert.equal(account.used, 6);
  // With room, it may.
  hello(0, "10.0.2.1", "ann");
  assert.equal(account.held("user ann"), 3);
});

Deno.test("DescriptorAccount: over random arrivals, hellos and departures on three ports, every count matches", () => {
  let seed = 7;
  const random = (n: number) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
  const { account, tables } = ports(30, [1, 1, 2]);
  const open = new Map<SourceEntry, number>();
  for (let i = 0; i < 5000; i++) {
    const op = random(10);
    if (op < 5) {
      const port = random(3);
      let self: SourceEntry | undefined;
      const e = tables[port].admit(`10.0.${random(2)}.${random(4)}`, () => open.delete(self!));
      if (e instanceof SourceEntry) open.set(self = e, port);
    } else if (op < 8) {
      const list = [...open.keys()].filter((e) => e.newcomer !== undefined);
      const e = list[random(Math.max(1, list.length))];
      try {
        e?.hello(random(3) === 0 ? `u${random(2)}` : undefined);
        e?.settled();
      } catch {
        e?.leave();
        open.delete(e!);
      }
    } else {
      const list = [...open.keys()];
      const e = list[random(Math.max(1, list.length))];
      e?.leave();
      open.delete(e!);
    }
    let used = 0;
    const by = new Map<string, number>();
    for (const [e, port] of open) {
      const w = port === 2 ? 2 : 1;
      used += w;
      by.set(e.source.key, (by.get(e.source.key) ?? 0) + w);
    }
    assert.equal(account.used, used, `step ${i}`);
    assert.ok(used <= 30, `step ${i}: ${used}`);
    for (const [key, n] of by) assert.equal(account.held(key), n, `step ${i}: ${key}`);
  }
  for (const e of [...open.keys()]) e.leave();
  assert.equal(account.used, 0);
});

Deno.test("parseDescriptorLimit() reads the soft limit", () => {
  const text = "Limit                     Soft Limit           Hard Limit           Units\n" +
    "Max open files            256                  256                  files\n";
  assert.equal(parseDescriptorLimit(text), 256);
});
