/**
 * Hostile review h47b N1 (stop 47's G5 fix, roles/balancer/churn.ts): the
 * young ends that hold a flapping worker out of rotation are remembered by
 * its NAME, whoever registered it. Any process that can reach the worker
 * port (no users: anyone; with users: any user with the worker role) may
 * register the name a real worker will use while it is free (before the
 * real worker starts, or while it restarts) and drop the connection at
 * once, a few times: each such registration "ended young", and the real
 * worker that registers next under that name is held out of rotation for
 * 1 s · 2^(ends − 2), up to 5 min. Eight connections of a few ms each
 * hold the real w1 out for 64 s; its clients get nothing from it.
 *
 * A name's churn must be charged to the source (or user) whose
 * registrations ended young, not passed to another source's worker of the
 * name (as outlier backoffs already are not: workers.ts #kept, hostile39a
 * P8 and hostile42a Y5).
 */
import assert from "node:assert/strict";
import { dial, type Peer } from "../wire/mod.ts";
import { backendsOf, connectTo, startBalancer, startWorker, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";

/** Registers `name` on the worker port and drops the connection at once, `times` times. */
async function squat(address: string, name: string, times: number): Promise<number> {
  const [host, port] = address.split(":");
  let registered = 0;
  for (let i = 0; i < times; i++) {
    let peer: Peer | undefined;
    try {
      peer = await dial({ host, port: Number(port) }, {
        role: "worker",
        name,
        onRequest: () => null,
      });
      await peer.call("worker.register", { name, capacity: 1 }, { timeout: 2000 });
      registered++;
    } finally {
      peer?.close();
    }
    await sleep(30);
  }
  return registered;
}

Deno.test("h47b N1: a stranger that registers a worker's name and drops it a few times before the real worker starts does not get the real worker held out of rotation", async () => {
  const lb = await startBalancer([]);
  let real: Awaited<ReturnType<typeof startWorker>> | undefined;
  let client: Peer | undefined;
  try {
    // The attacker: 8 registrations of "w1", each closed at once (~30 ms apart), from another
    // process (here: this test process; any address or user would do).
    assert.equal(await squat(lb.workerAddress, "w1", 8), 8);
    await sleep(200);
    // The operator's worker w1 starts.
    real = await startWorker(lb.workerAddress, ["--name", "w1", "--capacity", "4"]);
    client = await connectTo(lb.address);
    // Its health checks run every 200 ms: a worker that is not held out is up well within 5 s.
    const end = performance.now() + 5000;
    let view = (await backendsOf(client)).find((b) => b.name === "w1");
    while (view?.state !== "up" && performance.now() < end) {
      await sleep(100);
      view = (await backendsOf(client)).find((b) => b.name === "w1");
    }
    assert.equal(
      view?.state,
      "up",
      `the real w1 is not in rotation 5 s after it registered: ${JSON.stringify(view)}`,
    );
    // And it answers its clients.
    assert.equal(await client.call("echo", { text: "hi" }, { timeout: 5000 }), "hi");
  } finally {
    client?.close();
    await real?.stop();
    await stopAll([lb]);
  }
});
