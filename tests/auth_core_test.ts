import assert from "node:assert/strict";
import {
  Gate,
  Grants,
  hashPassword,
  HashSlots,
  hashToken,
  noPermissions,
  parsePasswordHash,
  parseUsers,
  type Permissions,
  TOKEN_USER,
  verifyPassword,
} from "../auth/mod.ts";
import { DistError, type HelloClaim } from "../wire/mod.ts";
import { UsageError } from "../config/mod.ts";

/** A cheap cost for tests (the default takes a tenth of a second a hash). */
const CHEAP = { ln: 10, r: 8, p: 1 };

Deno.test("hashPassword() makes an scrypt hash that verifyPassword() accepts only for its password", async () => {
  const text = await hashPassword("s3cret", CHEAP);
  assert.match(text, /^\$scrypt\$ln=10,r=8,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
  const stored = parsePasswordHash(text);
  assert.ok(typeof stored !== "string");
  assert.equal(await verifyPassword("s3cret", stored), true);
  assert.equal(await verifyPassword("s3cret ", stored), false);
  assert.equal(await verifyPassword("", stored), false);
  // Two hashes of one password differ (a fresh salt each).
  assert.notEqual(await hashPassword("s3cret", CHEAP), text);
});

Deno.test("parsePasswordHash() names what is wrong with a stored hash", () => {
  assert.match(parsePasswordHash("hunter2") as string, /dist passwd/);
  assert.match(
    parsePasswordHash("$scrypt$ln=40,r=8,p=1$AAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAA") as string,
    /ln must be/,
  );
  assert.match(
    parsePasswordHash("$scrypt$ln=14,r=8,p=1$AA$AAAAAAAAAAAAAAAAAAAAAAAA") as string,
    /too short/,
  );
});

function grants(p: Partial<Permissions>): Grants {
  return new Grants("alice", { ...noPermissions(), ...p });
}

Deno.test("Grants: methods by glob, deny beats allow, nothing allowed by default", () => {
  const g = grants({ methods: { allow: ["echo", "sys.*"], deny: ["sys.stats"] } });
  assert.equal(g.refusal("methods", "echo"), undefined);
  assert.equal(g.refusal("methods", "sys.ping"), undefined);
  assert.equal(g.refusal("methods", "sys.stats"), 'call sys.stats (denied by "sys.stats")');
  assert.equal(g.refusal("methods", "add"), "call add (not allowed)");
  assert.equal(g.refusal("methods", "echoes"), "call echoes (not allowed)");
  assert.equal(grants({}).refusal("methods", "echo"), "call echo (not allowed)");
  assert.throws(
    () => g.require("methods", "add"),
    (e: DistError) =>
      e.code === "UNAUTHORIZED" && e.message === 'User "alice" may not call add (not allowed)',
  );
});

Deno.test("Grants: publish covers the subtree of an allowed topic, a deny covers its own", () => {
  const g = grants({
    publish: { allow: ["/telephony", "/stock/+/price"], deny: ["/telephony/secret"] },
  });
  assert.equal(g.refusal("publish", "/telephony"), undefined);
  assert.equal(g.refusal("publish", "/telephony/orange/calls"), undefined);
  assert.equal(g.refusal("publish", "/stock/acme/price"), undefined);
  assert.equal(g.refusal("publish", "/stock/acme/price/eur"), undefined);
  assert.match(g.refusal("publish", "/stock/acme/volume")!, /not allowed/);
  assert.match(g.refusal("publish", "/telephony/secret/x")!, /denied by "\/telephony\/secret"/);
  assert.match(g.refusal("publish", "/telephonyx")!, /not allowed/);
  assert.equal(
    grants({ publish: { allow: ["/"], deny: [] } }).refusal("publish", "/a/b"),
    undefined,
  );
});

Deno.test("Grants: a subscription must lie inside an allow pattern and overlap no deny", () => {
  const g = grants({ subscribe: { allow: ["/", "/x/+/y"], deny: ["/admin", "/bob/+/private"] } });
  assert.equal(g.refusal("subscribe", "/telephony"), undefined);
  assert.equal(g.refusal("subscribe", "/bob/x/public"), undefined);
  assert.match(g.refusal("subscribe", "/")!, /denied by "\/admin"/); // `/` reaches /admin
  assert.match(g.refusal("subscribe", "/admin/logs")!, /denied by "\/admin"/);
  assert.match(g.refusal("subscribe", "/bob")!, /denied by "\/bob\/\+\/private"/); // reaches it
  assert.match(g.refusal("subscribe", "/+/+/private")!, /denied/);
  const narrow = grants({ subscribe: { allow: ["/x/+/y"], deny: [] } });
  assert.equal(narrow.refusal("subscribe", "/x/a/y/z"), undefined);
  assert.equal(narrow.refusal("subscribe", "/x/+/y"), undefined);
  assert.match(narrow.refusal("subscribe", "/x")!, /not allowed/); // wider than allowed
  assert.match(narrow.refusal("subscribe", "/x/a/+")!, /not allowed/);
});

Deno.test("Grants: services and privileged roles", () => {
  const g = grants({
    register: { allow: ["compute"], deny: [] },
    resolve: { allow: ["*"], deny: ["admin*"] },
    roles: ["worker"],
  });
  assert.equal(g.refusal("register", "compute"), undefined);
  assert.match(g.refusal("register", "billing")!, /register billing \(not allowed\)/);
  assert.equal(g.refusal("resolve", "billing"), undefined);
  assert.match(g.refusal("resolve", "admin-api")!, /denied by "admin\*"/);
  assert.equal(g.mayActAs("worker"), true);
  assert.equal(g.mayActAs("binder"), false);
  assert.equal(g.mayActAs("client"), true); // a role that grants nothing is not checked
});

Deno.test("parseUsers() reads entries and names the line and key of every problem", async () => {
  const pw = await hashPassword("pw", CHEAP);
  const users = parseUsers(
    `[users.alice]\npassword = "${pw}"\nmethods = ["echo"]\nsubscribe = { allow = ["telephony/"], deny = ["/telephony/secret"] }\n` +
      `[users.w1]\ntoken = "${hashToken("tok")}"\nroles = ["worker"]\n`,
    "users.toml",
  );
  assert.deepEqual([...users.entries.keys()], ["alice", "w1"]);
  assert.deepEqual(users.entries.get("alice")!.permissions.subscribe, {
    allow: ["/telephony"],
    deny: ["/telephony/secret"],
  });
  assert.deepEqual(users.entries.get("w1")!.permissions.roles, ["worker"]);
  assert.throws(
    () =>
      parseUsers(
        `[users.bob]\npassword = "hunter2"\nroles = ["client"]\npublish = ["/a//b"]\ncolour = 1\n[groups]\n`,
        "u.toml",
      ),
    (e: UsageError) => {
      assert.match(e.message, /u\.toml: line 2: users\.bob\.password: must be "\$scrypt/);
      assert.match(
        e.message,
        /line 3: users\.bob\.roles: "client" is not a role that needs granting/,
      );
      assert.match(
        e.message,
        /line 4: users\.bob\.publish: Invalid topic "\/a\/\/b": empty segment/,
      );
      assert.match(e.message, /line 5: users\.bob\.colour: unknown key/);
      assert.match(e.message, /line 6: groups: unknown key/);
      return true;
    },
  );
  assert.throws(() => parseUsers("[users\n", "bad.toml"), /Cannot load bad\.toml/);
});

function hello(credentials: HelloClaim["credentials"], more: Partial<HelloClaim> = {}): HelloClaim {
  return {
    role: "client",
    name: "c",
    credentials,
    host: "10.0.0.1",
    address: "10.0.0.1:5000",
    closed: new Promise(() => {}),
    ...more,
  };
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof DistError);
    return `${err.code}: ${err.message}`;
  }
  return "accepted";
}

Deno.test("Gate: the shared token gives every right; a wrong or missing one is UNAUTHORIZED", async () => {
  const gate = new Gate({ token: "cluster-secret", delays: { baseMs: 1 } });
  const ok = await gate.authenticate(hello({ token: "cluster-secret" }));
  assert.equal(ok.user, TOKEN_USER);
  assert.equal(ok.access, undefined);
  assert.equal(
    await refusal(gate.authenticate(hello({ token: "cluster-secreT" }))),
    "UNAUTHORIZED: Invalid credentials",
  );
  assert.equal(
    await refusal(gate.authenticate(hello({}))),
    "UNAUTHORIZED: Credentials required: a token, or a user and password",
  );
  assert.match(
    await refusal(gate.authenticate(hello({ user: "a", password: "b" }))),
    /takes a token/,
  );
  assert.deepEqual(gate.counters, { accepted: 1, refused: 3, throttled: 0 });
});

Deno.test("Gate: users by password, by their own token and by certificate subject, with their rights", async () => {
  const text =
    `[users.alice]\npassword = "${await hashPassword("pw", CHEAP)}"\nmethods = ["echo"]\n` +
    `[users.w1]\ntoken = "${
      hashToken("w1-token")
    }"\nroles = ["worker"]\n[users.server-1]\nregister = ["compute"]\n`;
  const gate = new Gate({ users: parseUsers(text, "u.toml"), delays: { baseMs: 1 } });
  const alice = await gate.authenticate(hello({ user: "alice", password: "pw" }));
  assert.equal(alice.user, "alice");
  alice.access!.check("echo");
  assert.throws(() => alice.access!.check("add"), /may not call add/);
  alice.access!.check("sys.ping"); // open to every user
  // Remembered: the second check of the same password skips scrypt, and says the same.
  assert.equal((await gate.authenticate(hello({ user: "alice", password: "pw" }))).user, "alice");
  assert.equal(
    await refusal(gate.authenticate(hello({ user: "alice", password: "PW" }))),
    "UNAUTHORIZED: Invalid credentials",
  );
  assert.equal(
    await refusal(gate.authenticate(hello({ user: "mallory", password: "pw" }))),
    "UNAUTHORIZED: Invalid credentials",
  );
  assert.equal(
    (await gate.authenticate(hello({ token: "w1-token" }, { role: "worker" }))).user,
    "w1",
  );
  assert.match(
    await refusal(gate.authenticate(hello({ user: "alice", password: "pw" }, { role: "binder" }))),
    /^UNAUTHORIZED: User "alice" may not act as binder \(permission roles: binder\)$/,
  );
  const cert = await gate.authenticate(hello({}, { certSubject: "server-1" }));
  assert.equal(cert.user, "server-1");
  cert.access!.check("binder.register", { action: "register", name: "compute" });
  assert.throws(
    () => cert.access!.check("binder.register", { action: "register", name: "x" }),
    /may not register x/,
  );
  assert.match(
    await refusal(gate.authenticate(hello({}, { certSubject: "eve" }))),
    /not in the users file/,
  );
});

Deno.test("Gate: an address's failures are answered after a growing delay; its flood is bounded, a right credential is not slowed, even during the flood", async () => {
  const gate = new Gate({ token: "t", delays: { baseMs: 40, maxDelayMs: 160, maxBusy: 3 } });
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => gate.delayAfter(n)), [40, 80, 160, 160, 160]);
  const bad = (host = "10.0.0.1") =>
    gate.authenticate(hello({ token: "guess" }, { host, address: `${host}:1` }));
  const timed = async (p: Promise<unknown>) => {
    const t0 = performance.now();
    const answer = await refusal(p);
    return { answer, ms: performance.now() - t0 };
  };
  // One guess at a time: each answer comes later than the last.
  const first = await timed(bad());
  const second = await timed(bad());
  assert.equal(first.answer, "UNAUTHORIZED: Invalid credentials");
  assert.ok(first.ms >= 35 && second.ms >= 75, `${first.ms}, ${second.ms}`);
  // A burst: 3 are checked and held (160 ms), the 4th is refused at once, unchecked.
  const burst = [bad(), bad(), bad()].map(timed);
  const fourth = await timed(bad());
  assert.equal(fourth.answer, "OVERLOADED: Too many failing hellos from 10.0.0.1; retry later");
  assert.ok(fourth.ms < 30);
  // While the flood holds the address, a right token from it is still let in at once.
  const t3 = performance.now();
  assert.equal(
    (await gate.authenticate(hello({ token: "t" }, { host: "10.0.0.1" }))).user,
    "token",
  );
  assert.ok(performance.now() - t3 < 30);
  // Meanwhile another address is not delayed, and neither is a right token from the guesser's
  // own address once a slot is free.
  const t1 = performance.now();
  assert.equal(
    (await gate.authenticate(hello({ token: "t" }, { host: "10.0.0.2" }))).user,
    "token",
  );
  assert.ok(performance.now() - t1 < 30);
  for (const b of await Promise.all(burst)) {
    assert.equal(b.answer, "UNAUTHORIZED: Invalid credentials");
    assert.ok(b.ms >= 150, `held ${b.ms} ms`);
  }
  const t2 = performance.now();
  assert.equal((await gate.authenticate(hello({ token: "t" }))).user, "token");
  assert.ok(performance.now() - t2 < 30);
  assert.deepEqual(gate.counters, { accepted: 3, refused: 5, throttled: 1 });
});

Deno.test("Gate: a refusal held for its delay ends early when the dialer goes", async () => {
  const gate = new Gate({ token: "t", delays: { baseMs: 10_000 } });
  let close!: () => void;
  const closed = new Promise<void>((r) => close = r);
  const t0 = performance.now();
  const waiting = refusal(gate.authenticate(hello({ token: "x" }, { closed })));
  setTimeout(close, 20);
  assert.equal(await waiting, "UNAUTHORIZED: Invalid credentials");
  assert.ok(performance.now() - t0 < 2000);
});

Deno.test("HashSlots: at most N at once, a bounded queue, OVERLOADED past it", async () => {
  const slots = new HashSlots(1, 1);
  let running = 0;
  let most = 0;
  const job = () =>
    slots.run(async () => {
      most = Math.max(most, ++running);
      await new Promise((r) => setTimeout(r, 20));
      running--;
    });
  const a = job();
  const b = job();
  await assert.rejects(job(), (e: DistError) => e.code === "OVERLOADED");
  await Promise.all([a, b]);
  assert.equal(most, 1);
});
