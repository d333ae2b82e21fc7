/**
 * Who counts as one source for the balancer's shares and slots (hostile33's
 * review): an IPv6 client by its /64, not by each of its 2^64 addresses;
 * and a worker that registers again is the same worker for its backoff.
 */
import assert from "node:assert/strict";
import { clientSource } from "../auth/mod.ts";
import { dial, type DistError, type Peer } from "../wire/mod.ts";
import {
  backendsOf,
  connectTo,
  eventually,
  startBalancer,
  startServers,
  stopAll,
} from "./helpers/balancer.ts";

Deno.test("clientSource() groups IPv6 addresses by their /64", () => {
  const net = "2001:db8:0:1::/64";
  for (
    const host of [
      "2001:db8:0:1::5",
      "2001:db8:0:1:ffff:ffff:ffff:fffe",
      "2001:0DB8:0000:0001:1:2:3:4",
      "2001:db8:0:1::9%eth0",
    ]
  ) assert.equal(clientSource(undefined, host), net, host);
  assert.equal(clientSource(undefined, "2001:db8:0:2::5"), "2001:db8:0:2::/64");
  assert.equal(clientSource(undefined, "fe80::1"), "fe80:0:0:0::/64");
  // IPv4 (also IPv4-mapped) and loopback stay themselves; a user is a user.
  assert.equal(clientSource(undefined, "10.0.0.1"), "10.0.0.1");
  assert.equal(clientSource(undefined, "::ffff:10.0.0.1"), "10.0.0.1");
  assert.equal(clientSource(undefined, "::1"), "::1");
  assert.equal(clientSource("alice", "2001:db8:0:1::5"), "user alice");
  assert.equal(clientSource("token", "2001:db8:0:1::5"), net);
});

Deno.test("a worker that held its trial is not tried again within its trial backoff; nothing closed, its source not benched, no request failed", async () => {
  const servers = await startServers(1);
  const lb = await startBalancer(servers, ["--timeout", "1s"]);
  const [host, port] = lb.workerAddress.split(":");
  let tasks = 0;
  const fakes: Peer[] = [];
  /** A worker named `name` that answers health checks and never a task. */
  const fake = async (name: string) => {
    const peer = await dial({ host, port: Number(port) }, {
      role: "worker",
      name,
      onRequest: (method) => {
        if (method === "sys.ping") return { pong: true };
        tasks++;
        return new Promise(() => {});
      },
    });
    fakes.push(peer);
    await peer.call("worker.register", { name, capacity: 100 });
    return peer;
  };
  const client = await connectTo(lb.address);
  const fakeView = async () => (await backendsOf(client)).find((b) => b.name === "fake");
  /** Eight closed loops of `add` for `ms`: the codes they got. */
  const loops = async (ms: number) => {
    const codes = new Map<string, number>();
    const until = performance.now() + ms;
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let i = 0; performance.now() < until; i++) {
        const code = await client.call("add", { a: i, b: 1 }, { timeout: 5000 }).then(
          () => "ok",
          (e) => (e as DistError).code,
        );
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    }));
    return JSON.stringify([...codes]);
  };
  try {
    const first = await fake("fake");
    await eventually(async () => (await fakeView())?.state === "up", 3000, "the fake up");
    const before = await loops(1500);
    assert.equal(tasks, 1, "slow start: one task");
    // Held past its bound, its trial went to the server: the client got an answer (trials.ts).
    assert.doesNotMatch(before, /TIMEOUT|UNAVAILABLE/);
    // Not closed, and its source not benched: before (hostile39a P1's fix), it was closed and any
    // worker of its address refused for 10 s, real ones included (hostile39c R1).
    assert.ok(first.canCall);
    await fake("other");
    const codes = await loops(1500);
    // Its trial backoff (10 s): no task for it again; one trial for the newcomer.
    assert.ok(tasks <= 2, `${tasks} tasks (${codes})`);
    assert.doesNotMatch(codes, /TIMEOUT|UNAVAILABLE/);
    assert.equal((await fakeView())?.served, 0);
  } finally {
    client.close();
    for (const f of fakes) f.close();
    await stopAll([lb, ...servers]);
  }
});
