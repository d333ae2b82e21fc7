/**
 * One conformance suite per service contract (clients/contracts/), run
 * against the real role in this process: every method's happy path through
 * the typed call (so the answer passes the contract's result parser), and
 * one case per error code the method lists, answered by the role (serving
 * side) and arriving as that DistError code (calling side). A listed code
 * without a case fails the suite. Then a fake service answering garbage
 * makes every typed call fail INTERNAL.
 */
import assert from "node:assert/strict";
import {
  type AnyMethod,
  balancer as balancerContract,
  binder as binderContract,
  broker as brokerContract,
  connect,
  type Connection,
  type Contract,
  DistError,
  type ErrorCode,
  ops,
  sys,
  worker as workerContract,
} from "../clients/mod.ts";
import { listen } from "../wire/mod.ts";
import { server } from "../roles/server.ts";
import { binder } from "../roles/binder/mod.ts";
import { broker } from "../roles/broker/mod.ts";
import { balancer } from "../roles/balancer/mod.ts";
import { type InProcessRole, startRole } from "./helpers/roles.ts";
import { freePort } from "./helpers/dist.ts";

/** What a case runs on: the role, a connection to it, and helpers to start more. */
interface Ctx {
  role: InProcessRole;
  conn: Connection;
  /** Another instance of the role with `flags`, stopped with the suite. */
  another(flags: Record<string, unknown>): Promise<{ role: InProcessRole; conn: Connection }>;
}

interface Case {
  method: AnyMethod;
  /** The error code the case must end with; none for the happy path. */
  code?: ErrorCode;
  /** What the message must say (BAD_REQUEST: the field). */
  message?: RegExp;
  /** Makes the call (typed, through `ctx.conn` or a connection of its own). */
  call(ctx: Ctx): Promise<unknown>;
  /** Checks a happy path's result beyond its type. */
  check?(result: unknown): void;
}

interface Suite {
  contract: Contract;
  start(): Promise<InProcessRole>;
  /** Flags for `ctx.another` roles. */
  role: Parameters<typeof startRole>[0];
  cases: Case[];
  /** Where the contract is served when not on the role's port (the worker port). */
  connectTo?(role: InProcessRole): Promise<Connection>;
}

function run(suite: Suite): void {
  const name = suite.contract.service;
  Deno.test(`${name} contract: every method has a happy path and a case per listed error code`, () => {
    const missing: string[] = [];
    for (const m of Object.values(suite.contract.methods)) {
      for (const code of [undefined, ...m.errors]) {
        if (!suite.cases.some((c) => c.method === m && c.code === code)) {
          missing.push(`${m.name} ${code ?? "happy path"}`);
        }
      }
    }
    assert.deepEqual(missing, [], "cases to write");
  });

  Deno.test(`${name} contract: the role answers each case as the contract says`, async () => {
    const role = await suite.start();
    const started: { role: InProcessRole; conn: Connection }[] = [];
    const conn = await (suite.connectTo?.(role) ?? connect(role.address));
    const ctx: Ctx = {
      role,
      conn,
      async another(flags) {
        const r = await startRole(suite.role, flags);
        const c = await connect(r.address);
        started.push({ role: r, conn: c });
        return { role: r, conn: c };
      },
    };
    try {
      for (const c of suite.cases) {
        const what = `${c.method.name} ${c.code ?? "happy path"}`;
        if (c.code === undefined) {
          c.check?.(await c.call(ctx));
          continue;
        }
        await assert.rejects(c.call(ctx), (err) => {
          assert.ok(err instanceof DistError, `${what}: ${err}`);
          assert.equal(err.code, c.code, `${what}: ${err.message}`);
          if (c.message) assert.match(err.message, c.message, what);
          return true;
        }, what);
      }
    } finally {
      conn.close();
      for (const s of started) {
        s.conn.close();
        await s.role.stop();
      }
      await role.stop();
    }
  });

  Deno.test(`${name} contract: a malformed answer fails every typed call INTERNAL`, async () => {
    const liar = listen({
      host: "127.0.0.1",
      port: 0,
      role: "liar",
      name: "liar",
      by: "liar",
      onRequest: () => ({ garbage: true }),
    });
    const conn = await connect(`127.0.0.1:${liar.addr.port}`);
    try {
      for (const m of Object.values(suite.contract.methods)) {
        await assert.rejects(conn.request(m, {} as never), (err) => {
          assert.ok(err instanceof DistError);
          assert.equal(err.code, "INTERNAL", m.name);
          assert.match(err.message, new RegExp(`^Malformed answer to ${m.name} from liar: `));
          return true;
        });
      }
    } finally {
      conn.close();
      await liar.close(0);
    }
  });
}

const happy = (method: AnyMethod, params: unknown, check?: Case["check"]): Case => ({
  method,
  call: (ctx) => ctx.conn.request(method, params as never),
  check,
});
const fails = (method: AnyMethod, code: ErrorCode, params: unknown, message?: RegExp): Case => ({
  method,
  code,
  message,
  call: (ctx) => ctx.conn.request(method, params as never),
});

// ---- sys and ops: the server ----

run({
  contract: sys,
  role: server,
  start: () => startRole(server, { name: "conf-server" }),
  cases: [
    happy(sys.methods.ping, undefined, (r) =>
      assert.deepEqual(r, {
        pong: true,
        role: "server",
        name: "conf-server",
      })),
    happy(sys.methods.stats, {}, (r) => assert.equal((r as { role: string }).role, "server")),
  ],
});

const BAD = "BAD_REQUEST";
run({
  contract: ops,
  role: server,
  start: () => startRole(server),
  cases: [
    happy(ops.methods.echo, { text: "hé" }, (r) => assert.equal(r, "hé")),
    fails(ops.methods.echo, BAD, { text: 5 }, /echo takes a string "text"/),
    happy(ops.methods.add, { a: 2, b: 3 }, (r) => assert.equal(r, 5)),
    fails(ops.methods.add, BAD, { a: "x", b: 1 }, /"a" must be a finite number, got x/),
    happy(ops.methods.sub, [2, 3], (r) => assert.equal(r, -1)),
    fails(ops.methods.sub, BAD, [1], /Expected 2 numbers, got 1/),
    happy(ops.methods.mul, { a: 2, b: 3 }, (r) => assert.equal(r, 6)),
    fails(ops.methods.mul, BAD, { a: 1 }, /Missing number "b"/),
    happy(ops.methods.div, { a: 3, b: 2 }, (r) => assert.equal(r, 1.5)),
    fails(ops.methods.div, BAD, { a: 1, b: 0 }, /Division by zero/),
    happy(ops.methods.sum, { values: [1, 2, 3] }, (r) => assert.equal(r, 6)),
    fails(ops.methods.sum, BAD, { values: [1, "x"] }, /sum: not a number: x/),
    happy(ops.methods.sleep, { ms: 1 }, (r) => assert.equal(r, 1)),
    fails(ops.methods.sleep, BAD, { ms: -1 }, /sleep takes 0 to 60000 ms, got -1/),
    happy(ops.methods.eval, { expr: "2^3 + max(1, 2)" }, (r) => assert.equal(r, 10)),
    fails(ops.methods.eval, BAD, { expr: "2 +" }, /Unexpected end/),
  ],
});

// ---- binder ----

const b = binderContract.methods;
const at = (port: number, extra: Record<string, unknown> = {}) => ({
  service: "conf",
  host: "127.0.0.1",
  port,
  ttl_ms: 60_000,
  ...extra,
});
run({
  contract: binderContract,
  role: binder,
  start: () => startRole(binder, { catchUp: 0 }),
  cases: [
    happy(
      b.register,
      at(9, { meta: { zone: "a" } }),
      (r) => assert.deepEqual(r, { id: "conf@127.0.0.1:9", ttl_ms: 60_000 }),
    ),
    fails(b.register, BAD, at(0), /"port" must be an integer 1-65535, got 0/),
    {
      method: b.register,
      code: "OVERLOADED",
      message: /Registry full: 1 live instances/,
      async call(ctx) {
        const full = await ctx.another({ maxInstances: 1, catchUp: 0 });
        await full.conn.request(b.register, at(1));
        return full.conn.request(b.register, at(2));
      },
    },
    happy(b.lookup, { service: "conf" }, (r) =>
      assert.deepEqual(r, {
        id: "conf@127.0.0.1:9",
        service: "conf",
        host: "127.0.0.1",
        port: 9,
        meta: { zone: "a" },
      })),
    fails(b.lookup, BAD, { service: "no spaces" }, /"service" must be a name/),
    fails(b.lookup, "NOT_FOUND", { service: "nobody" }),
    happy(b.renew, { id: "conf@127.0.0.1:9" }),
    fails(b.renew, BAD, { id: "" }, /"id" must be an instance id/),
    fails(b.renew, "NOT_FOUND", { id: "conf@127.0.0.1:1" }),
    happy(
      b.list,
      { service: "conf", limit: 10 },
      (r) =>
        assert.deepEqual((r as { instances: { port: number }[] }).instances.map((i) => i.port), [
          9,
        ]),
    ),
    fails(b.list, BAD, { limit: 0 }, /"limit" must be an integer 1-1000/),
    happy(
      b.watch,
      { service: "conf" },
      (r) => assert.equal((r as { instances: unknown[] }).instances.length, 1),
    ),
    fails(b.watch, BAD, { service: "" }, /"service" must be a name/),
    {
      method: b.watch,
      code: "FRAME_TOO_LARGE",
      message: /too many instances to send in one frame/,
      async call(ctx) {
        const small = await ctx.another({ maxFrame: 4096, catchUp: 0 });
        const meta = { pad: "x".repeat(1000) };
        for (let port = 1; port <= 20; port++) {
          await small.conn.request(b.register, at(port, { meta }));
        }
        return small.conn.request(b.watch, { service: "conf" });
      },
    },
    {
      method: b.watch,
      code: "OVERLOADED",
      message: /Too many watches on one connection/,
      async call(ctx) {
        const conn = await connect(ctx.role.address);
        try {
          await Promise.all(
            Array.from({ length: 10_000 }, (_, i) => conn.request(b.watch, { service: `w${i}` })),
          );
          return await conn.request(b.watch, { service: "one-more" });
        } finally {
          conn.close();
        }
      },
    },
    happy(
      b.unwatch,
      { service: "conf" },
      (r) => assert.deepEqual(r, { service: "conf", watching: false }),
    ),
    fails(b.unwatch, BAD, {}, /"service" must be a name/),
    happy(
      b.report_down,
      { id: "conf@127.0.0.1:9" },
      (r) => assert.deepEqual(r, { id: "conf@127.0.0.1:9", alive: false, removed: true }),
    ),
    fails(b.report_down, BAD, { id: 7 }, /"id" must be an instance id/),
    fails(b.report_down, "NOT_FOUND", { id: "conf@127.0.0.1:2" }),
    {
      method: b.report_down,
      code: "OVERLOADED",
      async call(ctx) {
        // Past a connection's burst of new verifications (50).
        const conn = await connect(ctx.role.address);
        try {
          for (let port = 100; port < 160; port++) await conn.request(b.register, at(port));
          const reports = await Promise.allSettled(
            Array.from(
              { length: 60 },
              (_, i) => conn.request(b.report_down, { id: `conf@127.0.0.1:${100 + i}` }),
            ),
          );
          const refused = reports.find((r) => r.status === "rejected");
          if (refused) throw (refused as PromiseRejectedResult).reason;
          return reports;
        } finally {
          conn.close();
        }
      },
    },
    {
      method: b.deregister,
      async call(ctx) {
        await ctx.conn.request(b.register, at(10));
        return ctx.conn.request(b.deregister, { id: "conf@127.0.0.1:10" });
      },
      check: (r) => assert.deepEqual(r, { id: "conf@127.0.0.1:10", removed: true }),
    },
    fails(b.deregister, BAD, { id: 5 }, /"id" must be an instance id/),
    fails(b.deregister, "NOT_FOUND", { id: "conf@127.0.0.1:3" }),
  ],
});

// ---- broker ----

const k = brokerContract.methods;
run({
  contract: brokerContract,
  role: broker,
  start: () => startRole(broker),
  cases: [
    happy(
      k.publish,
      { topic: "c/d/", value: { n: 1 } },
      (r) => assert.deepEqual(r, { topic: "/c/d", deliveries: 0 }),
    ),
    fails(k.publish, BAD, { topic: "/a//b", value: 1 }, /empty segment/),
    happy(
      k.subscribe,
      { topic: "/c" },
      (r) => assert.deepEqual((r as { topics: string[] }).topics, ["/c/d"]),
    ),
    fails(k.subscribe, BAD, { topic: "/c", policy: "nope" }, /Unknown policy nope/),
    {
      method: k.subscribe,
      code: "OVERLOADED",
      message: /at most 10000 subscriptions/,
      async call(ctx) {
        const conn = await connect(ctx.role.address);
        try {
          await Promise.all(
            Array.from({ length: 10_000 }, () => conn.request(k.subscribe, { topic: "/many" })),
          );
          return await conn.request(k.subscribe, { topic: "/many" });
        } finally {
          conn.close();
        }
      },
    },
    {
      method: k.unsubscribe,
      async call(ctx) {
        const { sid } = await ctx.conn.request(k.subscribe, { topic: "/u" });
        return ctx.conn.request(k.unsubscribe, { sid });
      },
      check: (r) => assert.equal((r as { delivered: number }).delivered, 0),
    },
    fails(k.unsubscribe, "NOT_FOUND", { sid: 99_999 }, /No subscription 99999/),
    happy(
      k.topics,
      { prefix: "/c" },
      (r) =>
        assert.deepEqual((r as { topics: { topic: string }[] }).topics.map((t) => t.topic), [
          "/c/d",
        ]),
    ),
    fails(k.topics, BAD, { limit: 0 }, /limit must be a positive integer/),
  ],
});

// ---- balancer (client port) and worker.register (worker port) ----

let backend: InProcessRole | undefined;
const workerPort = freePort();
const startBalancer = async () => {
  backend ??= await startRole(server, { name: "conf-backend" });
  return startRole(balancer, {
    workerPort,
    backends: [backend.address],
    checkInterval: 100,
  });
};
run({
  contract: balancerContract,
  role: balancer,
  start: startBalancer,
  cases: [{
    method: balancerContract.methods.backends,
    async call(ctx) {
      // Wait for the first health check to take the server in.
      for (let i = 0; i < 100; i++) {
        const list = await ctx.conn.request(balancerContract.methods.backends, undefined);
        if (list[0]?.state === "up") return list;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error("The backend never came up");
    },
    check: (r) => assert.equal((r as { peer: string }[])[0].peer, "conf-backend"),
  }],
});

run({
  contract: workerContract,
  role: balancer,
  start: async () => {
    const lb = await startBalancer();
    return { ...lb, stop: async () => (await lb.stop(), await backend?.stop()) };
  },
  connectTo: () => connect(`127.0.0.1:${workerPort}`, { role: "worker", name: "conf-worker" }),
  cases: [
    happy(
      workerContract.methods.register,
      { name: "conf-worker", capacity: 2 },
      (r) =>
        assert.deepEqual({ ...r as object, balancer: "b" }, {
          registered: "conf-worker",
          capacity: 2,
          balancer: "b",
        }),
    ),
    fails(workerContract.methods.register, BAD, { name: "" }, /name must be a string of 1-200/),
  ],
});
