/**
 * The client library's serve() (clients/worker.ts): a worker inside this
 * test process, behind a real `dist balancer` child that is SIGKILLed and
 * restarted on its ports.
 */
import assert from "node:assert/strict";
import {
  balancer,
  connect,
  type Contract,
  DistError,
  int,
  method,
  obj,
  serve,
  type Serving,
  str,
} from "../clients/mod.ts";
import { startBalancer } from "./helpers/balancer.ts";
import { startDist } from "./helpers/dist.ts";
import { waitFor, within } from "./helpers/raw.ts";

/** A service of the test's own: the library serves any contract, not only dist's operations. */
const tokens = {
  service: "tokens",
  prefix: "tokens.",
  methods: {
    take: method("tokens.take", {
      params: obj({ token: str, ms: int(0, 1000) }),
      result: obj({ token: str, by: str }),
    }),
  },
  events: {},
} as const satisfies Contract;

Deno.test("serve(): requests through the balancer reach the program's handlers, typed", async () => {
  const lb = await startBalancer([]);
  let worker: Serving | undefined;
  try {
    worker = serve(lb.workerAddress, {
      contracts: [tokens],
      handlers: { "tokens.take": (p) => ({ token: p.token, by: "me" }) },
    }, { capacity: 4, name: "lib-worker" });
    assert.equal(await worker.registered(5000), true);
    const client = await connect(lb.address);
    try {
      const r = await client.exchange(tokens.methods.take, { token: "a", ms: 0 });
      assert.deepEqual(r, { result: { token: "a", by: "me" }, by: "lib-worker" });
      await assert.rejects(client.request("tokens.take", { token: 1 }), (err) => {
        assert.ok(err instanceof DistError);
        assert.equal(err.code, "BAD_REQUEST");
        assert.match(err.message, /"token" must be a string/);
        return true;
      });
      const [backend] = await client.request(balancer.methods.backends, undefined);
      assert.equal(backend.name, "lib-worker");
      assert.equal(backend.capacity, 4);
      const stats = await client.request("sys.stats") as { workers: number };
      assert.equal(stats.workers, 1);
    } finally {
      client.close();
    }
  } finally {
    await worker?.stop();
    await lb.stop();
  }
});

Deno.test("serve() under SIGKILL of the balancer: calls fail fast, it registers again, traffic resumes, nothing twice", async () => {
  const lb = await startBalancer([]);
  const [clientPort, workerPort] = [lb.address, lb.workerAddress].map((a) => a.split(":")[1]);
  const served = new Map<string, number>();
  const worker = serve(lb.workerAddress, {
    contracts: [tokens],
    handlers: {
      "tokens.take": async (p) => {
        served.set(p.token, (served.get(p.token) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, p.ms));
        return { token: p.token, by: "w" };
      },
    },
  }, { capacity: 8, name: "survivor" });
  let again: Awaited<ReturnType<typeof startDist>> | undefined;
  try {
    assert.equal(await worker.registered(5000), true);
    const before = await connect(lb.address, { redial: false });
    assert.deepEqual(await before.request(tokens.methods.take, { token: "t0", ms: 0 }), {
      token: "t0",
      by: "w",
    });
    const inFlight = before.request(tokens.methods.take, { token: "t1", ms: 800 })
      .then(() => undefined, (err) => err);
    await waitFor(() => served.has("t1"), 5000, "t1 to reach the worker");
    const t0 = performance.now();
    await lb.stop("SIGKILL");
    const lost = await inFlight;
    assert.ok(lost instanceof DistError && lost.code === "UNAVAILABLE", `${lost}`);
    assert.ok(performance.now() - t0 < 2000, "failed with the connection, not at a timeout");
    before.close();
    await waitFor(() => !worker.connected, 5000, "the worker to notice");

    again = await startDist([
      "balancer",
      "--port",
      clientPort,
      "--worker-port",
      workerPort,
      "--check-interval",
      "200ms",
    ]);
    await within(
      (async () => {
        while (worker.counters.registrations < 2) await new Promise((r) => setTimeout(r, 20));
      })(),
      10_000,
      "the second registration",
    );
    const after = await connect(again.address);
    try {
      const answers = await Promise.all(
        ["t2", "t3", "t4"].map((token) => after.request(tokens.methods.take, { token, ms: 10 })),
      );
      assert.deepEqual(answers.map((a) => a.token), ["t2", "t3", "t4"]);
    } finally {
      after.close();
    }
    for (const [token, n] of served) assert.equal(n, 1, `${token} served once`);
    assert.equal(worker.counters.tasks, 5);
  } finally {
    await worker.stop();
    await again?.stop();
  }
});

Deno.test("serve(): a balancer that sends past the worker's capacity gets OVERLOADED for the rest (hostile46c F6)", async () => {
  let running = 0, most = 0;
  const { listen } = await import("../wire/mod.ts");
  const calls: Promise<unknown>[] = [];
  let registered!: () => void;
  const ready = new Promise<void>((r) => registered = r);
  const fake = listen({
    port: 0,
    role: "balancer",
    name: "greedy",
    onRequest: (method, params) => {
      if (method !== "worker.register") throw new DistError("UNKNOWN_METHOD", method);
      registered();
      return { registered: (params as { name: string }).name, capacity: 2, balancer: "greedy" };
    },
    onPeer: (peer) => {
      ready.then(() => {
        for (let i = 0; i < 40; i++) {
          calls.push(
            peer.call("tokens.take", { token: `t${i}`, ms: 200 }).then(
              () => "ok",
              (err: DistError) => err.code,
            ),
          );
        }
      });
    },
  });
  const worker = serve(`127.0.0.1:${fake.addr.port}`, {
    contracts: [tokens],
    handlers: {
      "tokens.take": async (p) => {
        most = Math.max(most, ++running);
        await new Promise((r) => setTimeout(r, p.ms));
        running--;
        return { token: p.token, by: "me" };
      },
    },
  }, { capacity: 2, name: "capped" });
  try {
    await within(ready, 5000, "registered");
    await waitFor(() => calls.length === 40, 5000, "the greedy balancer's 40 tasks");
    const outcomes = await Promise.all(calls);
    // At most twice its capacity and 16 (a balancer's timed-out tasks may still run there).
    assert.equal(most, 20, `tasks at once in a worker of capacity 2: ${most}`);
    assert.equal(outcomes.filter((o) => o === "ok").length, 20, JSON.stringify(outcomes));
    assert.equal(outcomes.filter((o) => o === "OVERLOADED").length, 20, JSON.stringify(outcomes));
  } finally {
    await worker.stop();
    await fake.close(0);
  }
});
