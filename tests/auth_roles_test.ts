/**
 * Permissions of a users file, checked at the one dispatch point of real
 * `dist` processes: each denial on each role (a server's methods, a
 * binder's registration, resolution and replication, a balancer's client
 * port with and without pass-through, its worker port), answered
 * UNAUTHORIZED naming the permission missing, the connection kept.
 */
import assert from "node:assert/strict";
import { hashToken } from "../auth/mod.ts";
import { parseAddress } from "../config/mod.ts";
import { type Credentials, dial, DistError, type Peer } from "../wire/mod.ts";
import { startDist } from "./helpers/dist.ts";
import { startBalancer, startWorker } from "./helpers/balancer.ts";

/** Each user's token (the users file keeps only their digests). */
const T = {
  admin: "admin-token-0123456789",
  calc: "calc-token-0123456789",
  srv: "srv-token-0123456789",
  look: "look-token-0123456789",
  work: "work-token-0123456789",
  peer: "peer-token-0123456789",
};

const USERS = `
[users.admin]
token = "${hashToken(T.admin)}"
roles = ["binder", "worker"]
methods = ["*"]
register = ["*"]
resolve = ["*"]

[users.calc]
token = "${hashToken(T.calc)}"
methods = { allow = ["add", "sub", "sys.*"], deny = ["sys.stats"] }

[users.srv]
token = "${hashToken(T.srv)}"
register = ["compute"]

[users.look]
token = "${hashToken(T.look)}"
resolve = ["compute"]

[users.work]
token = "${hashToken(T.work)}"
roles = ["worker"]

[users.peer]
token = "${hashToken(T.peer)}"
roles = ["binder"]
`;

async function usersFile(): Promise<string> {
  const file = await Deno.makeTempFile({ suffix: ".toml" });
  await Deno.writeTextFile(file, USERS, { mode: 0o600 });
  return file;
}

function as(address: string, token: string, role = "client"): Promise<Peer> {
  const credentials: Credentials = { token };
  return dial(parseAddress(address), { role, name: `t-${role}`, credentials });
}

async function denied(p: Promise<unknown>, message: string): Promise<void> {
  await assert.rejects(p, (e: DistError) => {
    assert.equal(`${e.code}: ${e.message}`, `UNAUTHORIZED: ${message}`);
    return true;
  });
}

Deno.test("server with --users: a user calls only the methods it is allowed", async () => {
  const file = await usersFile();
  const server = await startDist(["server", "--port", "0", "--users", file]);
  try {
    const calc = await as(server.address, T.calc);
    assert.equal(await calc.call("add", { a: 2, b: 3 }), 5);
    assert.equal(((await calc.call("sys.ping")) as { pong: boolean }).pong, true);
    await denied(calc.call("mul", { a: 2, b: 3 }), 'User "calc" may not call mul (not allowed)');
    await denied(
      calc.call("sys.stats"),
      'User "calc" may not call sys.stats (denied by "sys.stats")',
    );
    assert.equal(await calc.call("sub", { a: 5, b: 3 }), 2, "the connection is kept");
    // A user with no methods at all: only sys.ping.
    const look = await as(server.address, T.look);
    await denied(look.call("echo", { text: "x" }), 'User "look" may not call echo (not allowed)');
    // The shared command line client says so and exits 1.
    const admin = await as(server.address, T.admin);
    assert.equal(await admin.call("mul", { a: 2, b: 3 }), 6);
    for (const p of [calc, look, admin]) p.close();
  } finally {
    await server.stop();
    await Deno.remove(file);
  }
});

Deno.test("binder with --users: register, resolve and replication each need their permission", async () => {
  const file = await usersFile();
  const binder = await startDist(["binder", "--port", "0", "--users", file]);
  try {
    const at = binder.address;
    const srv = await as(at, T.srv, "server");
    const reg = (service: string, port: number) =>
      srv.call("binder.register", { service, host: "127.0.0.1", port });
    const { id } = await reg("compute", 5001) as { id: string };
    await denied(reg("billing", 5002), 'User "srv" may not register billing (not allowed)');
    assert.equal((await srv.call("binder.renew", { id }) as { id: string }).id, id);
    const look = await as(at, T.look);
    assert.equal(
      (await look.call("binder.lookup", { service: "compute" }) as { id: string }).id,
      id,
    );
    await denied(
      look.call("binder.lookup", { service: "billing" }),
      'User "look" may not resolve billing (not allowed)',
    );
    await denied(look.call("binder.list", {}), 'User "look" may not resolve * (not allowed)');
    await denied(
      look.call("binder.deregister", { id }),
      'User "look" may not register compute (not allowed)',
    );
    await denied(
      look.call("binder.register", { service: "compute", host: "h", port: 1 }),
      'User "look" may not register compute (not allowed)',
    );
    // Replication: a user without the binder role cannot even say it is one,
    const claimed = as(at, T.srv, "binder");
    await assert.rejects(claimed, (e: DistError) => {
      assert.equal(e.code, "UNAUTHORIZED");
      assert.match(e.message, /User "srv" may not act as binder \(permission roles: binder\)$/);
      return true;
    });
    // and as a client it is refused binder.sync, which would evict the server.
    const evict = {
      node: "evil",
      records: [{
        id,
        service: "compute",
        host: "127.0.0.1",
        port: 5001,
        ttl_ms: 60_000,
        left_ms: 0,
        v: [Date.now() + 1000, 0, "evil"],
        removed: "deregistered",
      }],
    };
    await assert.rejects(look.call("binder.sync", evict), /UNAUTHORIZED|is for binders/);
    // A user granted the binder role replicates.
    const peer = await as(at, T.peer, "binder");
    const diff = await peer.call("binder.diff", {
      node: "p",
      digest: { x: Array(64).fill(0), n: Array(64).fill(0) },
    }).catch((e) => e);
    assert.ok(!(diff instanceof DistError && diff.code === "UNAUTHORIZED"), String(diff));
    assert.equal(
      (await look.call("binder.lookup", { service: "compute" }) as { id: string }).id,
      id,
    );
    for (const p of [srv, look, peer]) p.close();
  } finally {
    await binder.stop();
    await Deno.remove(file);
  }
});

for (const passthrough of [true, false]) {
  Deno.test(`balancer with --users${passthrough ? "" : " --no-passthrough"}: clients' methods checked before forwarding; only the worker role registers`, async () => {
    const file = await usersFile();
    const server = await startDist(["server", "--port", "0", "--token", T.admin]);
    const lb = await startBalancer([server], [
      "--users",
      file,
      "--token",
      T.admin,
      ...(passthrough ? [] : ["--no-passthrough"]),
    ]);
    try {
      const calc = await as(lb.address, T.calc);
      assert.equal(await calc.call("add", { a: 2, b: 3 }), 5);
      await denied(calc.call("mul", { a: 2, b: 3 }), 'User "calc" may not call mul (not allowed)');
      await denied(
        calc.call("balancer.backends"),
        'User "calc" may not call balancer.backends (not allowed)',
      );
      // Worker port: a worker's hello needs the role; registering needs it too.
      await assert.rejects(as(lb.workerAddress, T.calc, "worker"), /may not act as worker/);
      const fake = await as(lb.workerAddress, T.calc);
      await denied(
        fake.call("worker.register", { name: "fake", capacity: 1 }),
        'User "calc" may not act as worker (roles)',
      );
      const worker = await startWorker(lb.workerAddress, ["--token", T.work, "--name", "w1"]);
      try {
        assert.match(worker.stderr(), /Registered with/);
      } finally {
        await worker.stop();
      }
      calc.close();
      fake.close();
    } finally {
      await lb.stop();
      await server.stop();
      await Deno.remove(file);
    }
  });
}

Deno.test("broker with --users: publish and subscribe each need their topic; fire-and-forget publishes are checked too", async () => {
  const file = await Deno.makeTempFile({ suffix: ".toml" });
  await Deno.writeTextFile(
    file,
    USERS + `
[users.tel]
token = "${hashToken("tel-token-0123456789")}"
publish = { allow = ["/telephony"], deny = ["/telephony/secret"] }
subscribe = ["/telephony/+/calls"]
`,
    { mode: 0o600 },
  );
  const broker = await startDist(["broker", "--port", "0", "--users", file]);
  try {
    // An admin-like reader of everything: it sees what got through.
    const seen: string[] = [];
    const reader = await dial(parseAddress(broker.address), {
      role: "client",
      name: "reader",
      credentials: { token: T.admin },
      onNotification: (_m, p) => seen.push((p as { topic: string }).topic),
    });
    await denied(
      reader.call("broker.subscribe", { topic: "/" }),
      'User "admin" may not subscribe / (not allowed)',
    );
    await Deno.writeTextFile(file, "", { mode: 0o600 }); // Read once at start: editing it changes nothing.
    const errors: string[] = [];
    const tel = await dial(parseAddress(broker.address), {
      role: "client",
      name: "tel",
      credentials: { token: "tel-token-0123456789" },
      onNotification: (m, p) => errors.push(`${m} ${JSON.stringify(p)}`),
    });
    const calls = await tel.call("broker.subscribe", { topic: "/telephony/orange/calls" });
    assert.ok((calls as { sid: number }).sid > 0);
    await denied(
      tel.call("broker.subscribe", { topic: "/telephony" }),
      'User "tel" may not subscribe /telephony (not allowed)',
    );
    await denied(
      tel.call("broker.subscribe", { topic: "/telephony/+" }),
      'User "tel" may not subscribe /telephony/+ (not allowed)',
    );
    assert.equal(
      ((await tel.call("broker.publish", { topic: "/telephony/orange/calls", value: 1 })) as {
        deliveries: number;
      }).deliveries,
      1,
    );
    await denied(
      tel.call("broker.publish", { topic: "/telephony/secret/x", value: 2 }),
      'User "tel" may not publish /telephony/secret/x (denied by "/telephony/secret")',
    );
    await denied(
      tel.call("broker.publish", { topic: "/weather", value: 3 }),
      'User "tel" may not publish /weather (not allowed)',
    );
    // Fire-and-forget (the broker's byte-level path for others): refused and said, not delivered.
    tel.notify("broker.publish", { topic: "/telephony/secret/y", value: 4 });
    tel.notify("broker.publish", { topic: "/telephony/orange/calls", value: 5 });
    const deadline = Date.now() + 5000;
    while (
      errors.filter((e) => e.startsWith("broker.message")).length < 2 && Date.now() < deadline
    ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const delivered = errors.filter((e) => e.startsWith("broker.message"));
    assert.deepEqual(delivered.map((e) => JSON.parse(e.slice(15)).value), [1, 5]);
    // The refused one was counted (and answered with an error frame, id null).
    const stats = await reader.call("sys.stats") as { bad_publishes: number };
    assert.equal(stats.bad_publishes, 1);
    reader.close();
    tel.close();
  } finally {
    await broker.stop();
    await Deno.remove(file);
  }
});
