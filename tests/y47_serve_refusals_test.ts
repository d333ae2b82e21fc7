/**
 * serve()'s refusals (h47 Q22): options no balancer takes throw BAD_REQUEST
 * at once, naming the option; credentials refused before it ever registered
 * end serving with UNAUTHORIZED; a refusal that may pass (a name a live
 * worker holds) is dialed again, and the name is taken once it is free.
 * register() the same: a registration no binder takes throws at once, and a
 * binder's BAD_REQUEST or UNAUTHORIZED to a first registration ends it.
 */
import assert from "node:assert/strict";
import {
  binders,
  type Contract,
  DistError,
  method,
  obj,
  register,
  Registrar,
  serve,
  str,
} from "../clients/mod.ts";
import { startBalancer } from "./helpers/balancer.ts";
import { startBinder } from "./helpers/binder.ts";

const greeter = {
  service: "greeter",
  prefix: "greet.",
  methods: { hello: method("greet.hello", { params: obj({ name: str }), result: str }) },
  events: {},
} as const satisfies Contract;
const service = {
  contracts: [greeter],
  handlers: { "greet.hello": (p: { name: string }) => p.name },
};

Deno.test("serve(): a capacity or name no balancer takes is BAD_REQUEST at once", () => {
  for (const capacity of [0, -1, 1.5, NaN, 1e9]) {
    assert.throws(
      () => serve("127.0.0.1:1", service, { capacity, name: "y47" }),
      (err) =>
        err instanceof DistError && err.code === "BAD_REQUEST" &&
        /capacity must be an integer from 1 to 10000/.test(err.message),
      `capacity ${capacity}`,
    );
  }
  assert.throws(
    () => serve("127.0.0.1:1", service, { capacity: 1, name: "a\u0007b" }),
    (err) => err instanceof DistError && err.code === "BAD_REQUEST" && /name/.test(err.message),
  );
});

Deno.test("serve(): credentials the balancer refuses end serving with UNAUTHORIZED", async () => {
  const lb = await startBalancer([], ["--token", "y47-right-token"]);
  try {
    const w = serve(lb.workerAddress, service, {
      capacity: 2,
      name: "y47-wrong",
      credentials: { token: "y47-wrong-token" },
    });
    const outcome = await Promise.race([
      w.ended,
      new Promise((r) => setTimeout(() => r("still dialing"), 15_000)),
    ]);
    await w.stop();
    assert.ok(
      outcome instanceof DistError && outcome.code === "UNAUTHORIZED",
      `wrong token: ${outcome instanceof Error ? outcome.message : String(outcome)}`,
    );
    // The right one serves (what was refused was the token, nothing else).
    const ok = serve(lb.workerAddress, service, {
      capacity: 2,
      name: "y47-right",
      credentials: { token: "y47-right-token" },
    });
    assert.equal(await ok.registered(15_000), true);
    await ok.stop();
  } finally {
    await lb.stop();
  }
});

Deno.test("serve(): a name a live worker holds is tried again, and taken once free", async () => {
  const lb = await startBalancer([]);
  try {
    const first = serve(lb.workerAddress, service, { capacity: 2, name: "y47-same" });
    assert.equal(await first.registered(15_000), true);
    const second = serve(lb.workerAddress, service, { capacity: 2, name: "y47-same" });
    let settled: unknown = "pending";
    void second.ended.then((why) => settled = why);
    // Refused while the first holds the name (BAD_REQUEST, but not about its own options).
    assert.equal(await second.registered(2000), false);
    assert.equal(settled, "pending", `second gave up: ${String(settled)}`);
    await first.stop();
    assert.equal(await second.registered(20_000), true, "never took the freed name");
    assert.equal(settled, "pending");
    await second.stop();
  } finally {
    await lb.stop();
  }
});

Deno.test("register(): a registration no binder takes is BAD_REQUEST at once; one refused ends", async () => {
  const b = await startBinder();
  const bad = { service: "y47", host: "a b", port: 1 };
  try {
    assert.throws(
      () => register(binders([b.address]), bad),
      (err) => err instanceof DistError && err.code === "BAD_REQUEST" && /host/.test(err.message),
    );
    // What the binder answers a Registrar made without that check (the CLI's).
    const r = new Registrar(binders([b.address]), bad).start();
    const t0 = performance.now();
    assert.equal(await r.registered(10_000), false);
    assert.ok(performance.now() - t0 < 9000, "registered() waited out its timeout");
    const why = await r.ended;
    assert.ok(why instanceof DistError && why.code === "BAD_REQUEST", String(why));
    await r.stop();
  } finally {
    await b.stop();
  }
});

Deno.test("register(): credentials the binder refuses end registering with UNAUTHORIZED", async () => {
  const b = await startBinder({ token: "y47-binder-token" });
  try {
    const wrong = register(binders([b.address], { credentials: { token: "nope" } }), {
      service: "y47",
      host: "127.0.0.1",
      port: 5999,
    });
    const outcome = await Promise.race([
      wrong.ended,
      new Promise((r) => setTimeout(() => r("still trying"), 10_000)),
    ]);
    await wrong.stop();
    assert.ok(
      outcome instanceof DistError && outcome.code === "UNAUTHORIZED",
      `wrong token: ${outcome instanceof Error ? outcome.message : String(outcome)}`,
    );
    const right = register(binders([b.address], { credentials: { token: "y47-binder-token" } }), {
      service: "y47",
      host: "127.0.0.1",
      port: 5999,
    });
    assert.equal(await right.registered(10_000), true);
    await right.stop();
    assert.equal(await right.ended, undefined);
  } finally {
    await b.stop();
  }
});
