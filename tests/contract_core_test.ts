/**
 * wire/contract.ts without sockets: dispatch() (own methods only, prefixes,
 * aliases, fallback, notifications, hooks, handshake roles) and the typed
 * calls, which check an answer as the server checks a request.
 */
import assert from "node:assert/strict";
import {
  call,
  type Contract,
  dispatch,
  DistError,
  int,
  method,
  obj,
  type Peer,
  request,
  type RequestMeta,
  str,
} from "../wire/mod.ts";
import { ops, sys } from "../clients/contracts/mod.ts";

const META: RequestMeta = { idempotent: true };
const peerAs = (role: string) => ({ remote: { role, name: `${role}-1` } }) as unknown as Peer;
const PEER = peerAs("client");

const counter = {
  service: "counter",
  prefix: "counter.",
  methods: {
    add: method("counter.add", { params: obj({ n: int(1, 10) }), result: int(0, 1e9) }),
    push: method("counter.push", {
      params: obj({ n: int(1, 10) }),
      result: int(0, 1e9),
      notify: true,
    }),
    reset: method("counter.reset", {
      params: obj({}, { omittable: true }),
      result: int(0, 0),
      from: ["admin"],
    }),
  },
  events: {},
} as const satisfies Contract;

function counterDispatch(options: Parameters<typeof dispatch>[2] = {}) {
  let total = 0;
  const d = dispatch([counter], {
    "counter.add": (p) => total += p.n,
    "counter.push": (p) => total += p.n,
    "counter.reset": () => total = 0,
  }, options);
  return { d, total: () => total };
}

const code = (c: string) => (err: unknown) => {
  assert.ok(err instanceof DistError, `${err}`);
  assert.equal(err.code, c, err.message);
  return true;
};

Deno.test("dispatch() answers own methods only: prototype names and other prefixes are unknown", () => {
  const { d } = counterDispatch();
  assert.equal(d.onRequest("counter.add", { n: 2 }, PEER, META), 2);
  for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty", "counter.nope"]) {
    assert.throws(() => d.onRequest(name, {}, PEER, META), (err: unknown) => {
      assert.ok(err instanceof DistError);
      assert.equal(err.code, "UNKNOWN_METHOD");
      assert.equal(err.message, `Unknown method: ${name}`);
      return true;
    });
  }
  assert.equal(d.claims("counter.add"), true);
  assert.equal(d.claims("counter.nope"), true, "under the owned prefix");
  assert.equal(d.claims("echo"), false);
});

Deno.test("dispatch() parses params before the handler: a bad field is BAD_REQUEST naming it", () => {
  const { d, total } = counterDispatch();
  assert.throws(() => d.onRequest("counter.add", { n: 11 }, PEER, META), (err: unknown) => {
    assert.ok(err instanceof DistError);
    assert.equal(err.code, "BAD_REQUEST");
    assert.equal(err.message, `"n" must be an integer 1-10, got 11`);
    return true;
  });
  assert.equal(total(), 0, "the handler never ran");
});

Deno.test("dispatch() refuses a method to a handshake role it is not for (UNAUTHORIZED)", () => {
  const { d } = counterDispatch();
  d.onRequest("counter.add", { n: 3 }, PEER, META);
  assert.throws(
    () => d.onRequest("counter.reset", undefined, PEER, META),
    /counter.reset is for admins \(handshake role "admin"\), not client/,
  );
  assert.equal(d.onRequest("counter.reset", undefined, peerAs("admin"), META), 0);
});

Deno.test("dispatch() hands what no contract owns to the fallback, never what one owns", () => {
  const seen: string[] = [];
  const { d } = counterDispatch({
    fallback: (name) => (seen.push(name), "forwarded"),
    unknown: (name) => `Unknown method here: ${name}`,
  });
  assert.equal(d.onRequest("echo", "hi", PEER, META), "forwarded");
  assert.throws(() => d.onRequest("counter.nope", {}, PEER, META), /Unknown method here/);
  assert.deepEqual(seen, ["echo"]);
});

Deno.test("dispatch() takes aliases as their methods (the lab's somma is add)", () => {
  const d = dispatch([ops], {
    echo: (p) => p.text,
    add: (p) => p.a + p.b,
    sub: (p) => p.a - p.b,
    mul: (p) => p.a * p.b,
    div: (p) => p.a / p.b,
    sum: (p) => p.values.reduce((a, b) => a + b, 0),
    sleep: (p) => p.ms,
    eval: (p) => p.expr.length,
  });
  assert.equal(d.onRequest("somma", [3, 4], PEER, META), 7);
  assert.equal(d.onRequest("echo", "bare", PEER, META), "bare");
  assert.equal(d.onRequest("sum", "1, 2,3", PEER, META), 6);
  assert.throws(() => d.onRequest("add", [1], PEER, META), /Expected 2 numbers, got 1/);
  assert.throws(() => d.onRequest("sys.ping", {}, PEER, META), code("UNKNOWN_METHOD"));
});

Deno.test("dispatch() takes notifications for notify methods only; bad and unknown are reported", () => {
  const bad: string[] = [];
  const unknown: string[] = [];
  const { d, total } = counterDispatch({
    onBadNotification: (name, err) => bad.push(`${name}: ${err.message}`),
    onUnknownNotification: (name) => unknown.push(name),
  });
  d.onNotification("counter.push", { n: 4 }, PEER);
  d.onNotification("counter.add", { n: 1 }, PEER); // a method, but not one that takes notifications
  d.onNotification("counter.push", { n: 0 }, PEER);
  d.onNotification("constructor", {}, PEER);
  assert.equal(total(), 4);
  assert.deepEqual(bad, [`counter.push: "n" must be an integer 1-10, got 0`]);
  assert.deepEqual(unknown, ["counter.add", "constructor"]);
});

Deno.test("dispatch() runs hooks around each request in order, with the outcome", async () => {
  const log: string[] = [];
  const slow = {
    service: "s",
    prefix: "s.",
    methods: {
      wait: method("s.wait", { params: int(0, 100), result: int(0, 100) }),
      fail: method("s.fail", { params: int(0, 100), result: int(0, 100) }),
    },
    events: {},
  } as const satisfies Contract;
  const d = dispatch([slow], {
    "s.wait": async (n) => (log.push(`handler ${n}`), await Promise.resolve(), n),
    "s.fail": () => {
      throw new DistError("NOT_FOUND", "no");
    },
  }, {
    hooks: {
      before: (m, params) => {
        log.push(`before ${m.name} ${params}`);
        if (params === 13) throw new DistError("UNAUTHORIZED", "not 13");
      },
      after: (m, t0, err) => log.push(`after ${m.name} ${err?.code ?? "ok"} ${t0 > 0}`),
    },
  });
  assert.equal(await d.onRequest("s.wait", 5, PEER, META), 5);
  assert.throws(() => d.onRequest("s.wait", 13, PEER, META), code("UNAUTHORIZED"));
  assert.throws(() => d.onRequest("s.wait", 500, PEER, META), code("BAD_REQUEST"));
  assert.throws(() => d.onRequest("s.fail", 1, PEER, META), code("NOT_FOUND"));
  assert.deepEqual(log, [
    "before s.wait 5",
    "handler 5",
    "after s.wait ok true",
    "before s.wait 13",
    "after s.wait UNAUTHORIZED true",
    "after s.wait BAD_REQUEST true",
    "before s.fail 1",
    "after s.fail NOT_FOUND true",
  ]);
});

Deno.test("dispatch() refuses to be built with a handler missing", () => {
  assert.throws(
    // @ts-expect-error the compiler refuses it too
    () => dispatch([sys], { "sys.ping": () => ({ pong: true, role: "r", name: "n" }) }),
    /No handler for sys.stats/,
  );
});

/** A Requester answering every request with `result`, recording what it was sent. */
function fake(result: unknown, by = "srv-1") {
  const sent: unknown[] = [];
  return {
    sent,
    request: (method: string, params?: unknown, options?: unknown) => {
      sent.push({ method, params, options });
      return Promise.resolve({ result, by });
    },
  };
}

Deno.test("call() resolves with the checked result; request() also with by", async () => {
  const to = fake({ pong: true, role: "server", name: "s", extra: 1 });
  const pong = await call(to, sys.methods.ping, undefined);
  assert.equal(pong.name, "s");
  const r = await request(to, sys.methods.ping, undefined, { timeout: 50 });
  assert.equal(r.by, "srv-1");
  assert.deepEqual(to.sent[1], { method: "sys.ping", params: undefined, options: { timeout: 50 } });
});

Deno.test("call() fails a malformed answer with INTERNAL naming the method, the sender and the field", async () => {
  await assert.rejects(call(fake({ pong: true, role: "server" }), sys.methods.ping, {}), (err) => {
    assert.ok(err instanceof DistError);
    assert.equal(err.code, "INTERNAL");
    assert.equal(
      err.message,
      `Malformed answer to sys.ping from srv-1: "name" must be a string, got undefined`,
    );
    return true;
  });
  await assert.rejects(
    call(fake("7"), ops.methods.add, { a: 3, b: 4 }),
    /"result" must be a finite/,
  );
});

Deno.test("call() marks a method that is not idempotent idem: false", async () => {
  const once = {
    service: "o",
    prefix: "o.",
    methods: { go: method("o.go", { params: str, result: str, idempotent: false }) },
    events: {},
  } as const satisfies Contract;
  const to = fake("done");
  await call(to, once.methods.go, "x", { timeout: 9 });
  assert.deepEqual(to.sent[0], {
    method: "o.go",
    params: "x",
    options: { timeout: 9, idempotent: false },
  });
});
