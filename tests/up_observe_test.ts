/**
 * launch/observe/: rates from counters, the bounded history, health from
 * the launcher's state and the last poll, and the poller against real
 * listeners on port 0 (one kept connection, polls only while watched,
 * connections closed after the last watcher).
 */
import assert from "node:assert/strict";
import {
  ClusterView,
  formatRate,
  healthOf,
  History,
  rateBetween,
  ratesOf,
  StatsPoller,
} from "../launch/observe/mod.ts";
import { listen, type Listener } from "../wire/mod.ts";
import { sleep, waitFor } from "./helpers/raw.ts";

Deno.test("rateBetween() is the growth per second of one process's counter", () => {
  const a = { at: 1000, uptimeMs: 5000, stats: { requests: 10 } };
  const b = { at: 3000, uptimeMs: 7000, stats: { requests: 30 } };
  assert.equal(rateBetween(a, b, "requests"), 10);
  assert.equal(rateBetween(undefined, b, "requests"), undefined, "no earlier sample");
  assert.equal(rateBetween(a, b, "missing"), undefined);
  // A restarted process: its uptime went back, or its counter did.
  assert.equal(rateBetween(a, { ...b, uptimeMs: 100 }, "requests"), undefined);
  assert.equal(rateBetween(a, { ...b, stats: { requests: 3 } }, "requests"), undefined);
  assert.equal(rateBetween(a, { ...b, at: 1000 }, "requests"), undefined, "no time between");
  // Not a count: never a rate.
  assert.equal(rateBetween(a, { ...b, stats: { requests: "30" } }, "requests"), undefined);
  assert.equal(rateBetween(a, { ...b, stats: { requests: Infinity } }, "requests"), undefined);
});

Deno.test("formatRate() keeps three figures at most", () => {
  assert.equal(formatRate(undefined), "-");
  assert.equal(formatRate(0), "0");
  assert.equal(formatRate(0.5), "0.5");
  assert.equal(formatRate(2.004), "2");
  assert.equal(formatRate(9.345), "9.35");
  assert.equal(formatRate(12.34), "12.3");
  assert.equal(formatRate(20.01), "20");
  assert.equal(formatRate(1234.6), "1235");
});

Deno.test("ratesOf() names each listening role's key rate first, and none for the others", () => {
  assert.equal(ratesOf("server")[0].unit, "requests/s");
  assert.equal(ratesOf("balancer")[0].unit, "requests/s");
  assert.equal(ratesOf("broker")[0].unit, "messages/s");
  assert.equal(ratesOf("binder")[0].unit, "lookups/s");
  assert.deepEqual(ratesOf("consumer"), []);
  assert.deepEqual(ratesOf("__proto__"), [], "no lookup through the prototype");
});

Deno.test("History keeps the newest points up to its capacity", () => {
  const h = new History(10);
  for (let i = 0; i < 25; i++) h.push(i, i % 3 === 0 ? null : i);
  const { times, values } = h.points();
  assert.ok(times.length <= 10 && times.length >= 8, `${times.length} points`);
  assert.equal(times.at(-1), 24);
  assert.equal(values.at(-1), null);
  assert.deepEqual(times, [...times].sort((a, b) => a - b));
  assert.equal(h.last, 24);
});

Deno.test("healthOf() is red for a crash, a restart in progress and a silent instance", () => {
  const ok = { at: 200, ok: true, stats: {} };
  const silent = { at: 200, ok: false, error: "refused" };
  const at = { listens: true, changedAt: 100 };
  const s = (state: string, extra = {}) => ({ role: "server", state, restarts: 0, ...extra });
  assert.equal(healthOf(s("ready"), ok, at), "up");
  assert.equal(healthOf(s("ready"), silent, at), "down");
  // A poll older than the state's last change says nothing of the new process.
  assert.equal(healthOf(s("ready"), silent, { ...at, changedAt: 300 }), "up");
  assert.equal(healthOf(s("running"), undefined, { listens: false, changedAt: 0 }), "up");
  assert.equal(healthOf(s("starting"), undefined, at), "starting");
  assert.equal(healthOf(s("starting", { restarts: 1 }), undefined, at), "down");
  assert.equal(healthOf(s("backoff", { restarts: 2 }), undefined, at), "down");
  assert.equal(healthOf(s("exited", { last_exit: "signal SIGKILL" }), undefined, at), "down");
  assert.equal(healthOf(s("exited", { last_exit: "exit code 0" }), undefined, at), "done");
  assert.equal(healthOf(s("waiting"), undefined, at), "starting");
  assert.equal(healthOf(s("stopped"), undefined, at), "stopped");
  // Another host's instance: the polls alone.
  assert.equal(healthOf(undefined, ok, { ...at, remote: true }), "up");
  assert.equal(healthOf(undefined, silent, { ...at, remote: true }), "down");
});

/** A listener answering sys.stats as `name`, with a request counter the test moves. */
function statsServer(name: string): { listener: Listener; counter: { requests: number } } {
  const counter = { requests: 0 };
  const started = performance.now();
  const listener = listen({
    host: "127.0.0.1",
    port: 0,
    role: "server",
    name,
    onRequest: (method) => {
      if (method !== "sys.stats") return null;
      return {
        role: "server",
        name,
        uptime_ms: Math.round(performance.now() - started),
        rss_bytes: 1,
        requests: counter.requests,
      };
    },
  });
  return { listener, counter };
}

Deno.test("StatsPoller polls over one kept connection, only while watched", async () => {
  const a = statsServer("a");
  const poller = new StatsPoller([
    { name: "a", address: () => `127.0.0.1:${a.listener.addr.port}` },
    { name: "nowhere", address: () => undefined },
  ], { intervalMs: 50, timeoutMs: 1000, lingerMs: 100 });
  try {
    await sleep(150);
    assert.equal(poller.rounds, 0, "nobody watches: no polls");
    assert.equal(a.listener.peers.size, 0);
    const release = poller.watch();
    await waitFor(() => poller.rounds >= 4, 5000, "four rounds");
    assert.equal(poller.latest.get("a")?.ok, true);
    assert.equal(poller.latest.get("nowhere")?.ok, false);
    assert.equal(a.listener.peers.size, 1, "one kept connection for every round");
    const second = poller.watch();
    release();
    release(); // A second call of one release does nothing.
    const rounds = poller.rounds;
    await waitFor(() => poller.rounds >= rounds + 2, 5000, "polling on for the other watcher");
    second();
    await sleep(120);
    const after = poller.rounds;
    await sleep(200);
    assert.equal(poller.rounds, after, "no watcher: no more rounds");
    await waitFor(() => a.listener.peers.size === 0, 5000, "the connection closed after linger");
  } finally {
    await poller.close();
    await a.listener.close();
  }
});

Deno.test("StatsPoller says when another process answers on an instance's port", async () => {
  const other = statsServer("someone-else");
  const poller = new StatsPoller(
    [{ name: "a", address: () => `127.0.0.1:${other.listener.addr.port}` }],
    { intervalMs: 50, timeoutMs: 1000 },
  );
  const release = poller.watch();
  try {
    await waitFor(() => poller.rounds >= 1, 5000, "a round");
    const result = poller.latest.get("a")!;
    assert.equal(result.ok, false);
    assert.equal(result.impostor, "someone-else");
  } finally {
    release();
    await poller.close();
    await other.listener.close();
  }
});

Deno.test("ClusterView: rates from rounds, state changes at once, edges from references", async () => {
  const a = statsServer("a");
  let view: ClusterView | undefined = undefined;
  const poller = new StatsPoller(
    [{ name: "a", address: () => view?.addressOf("a") }],
    { intervalMs: 100, timeoutMs: 1000 },
  );
  view = new ClusterView("t.toml", [
    { name: "a", role: "server", address: `127.0.0.1:${a.listener.addr.port}`, refs: {} },
    { name: "c", role: "client", refs: { connect: ["a"], other: ["gone"] } },
  ], { poller });
  assert.deepEqual(view.edges, [{ from: "c", to: "a", key: "connect" }]);
  const events: string[] = [];
  const unsubscribe = view.subscribe((e) => events.push(e.type));
  view.setState("a", { role: "server", state: "ready", restarts: 0, pid: 1, started_ms: 1 });
  assert.deepEqual(events, ["instance"], "a state change is told at once");
  const release = view.watch();
  try {
    // 50 requests a second for a while: the key rate follows.
    const pump = setInterval(() => a.counter.requests += 5, 100);
    try {
      await waitFor(
        () => (view!.instances()[0].rate ?? 0) > 20,
        5000,
        "a rate near 50 requests/s",
      );
    } finally {
      clearInterval(pump);
    }
    const [server, client] = view.instances();
    assert.equal(server.health, "up");
    assert.equal(server.rate_unit, "requests/s");
    assert.ok(server.rate! < 120, `rate ${server.rate}`);
    assert.equal(client.rate_unit, null, "a client has no rate");
    assert.ok(events.includes("round"));
    const points = view.history().a;
    assert.ok(points.values.some((v) => v !== null && v > 20), "the history has the rate");
    // Killed: down now, whatever the last poll said.
    view.setState("a", {
      role: "server",
      state: "exited",
      restarts: 0,
      last_exit: "signal SIGKILL",
    });
    assert.equal(view.instances()[0].health, "down");
    assert.equal(view.instances()[0].rate, null);
  } finally {
    unsubscribe();
    release();
    await poller.close();
    await a.listener.close();
  }
});
