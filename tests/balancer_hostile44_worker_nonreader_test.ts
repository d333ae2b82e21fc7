/**
 * hostile44a H-A6: a registered worker's connection is marked keepReading
 * (links.ts WorkerLink: a backend's answers drain the clients, so its
 * reading never stops for output). That exemption covers what the worker
 * itself asks of the balancer too: a fake worker that pipelines `sys.ping`
 * (answered at once, never waiting in the control turns) and reads
 * nothing is read on at line rate, its answers queued until the 64 MiB
 * slow-consumer cut or the write timeout, past the process's 256 MiB
 * output rule and README's per-backend bound (the high-water mark, one
 * frame, the kernel's buffers). The same from client connections stops at
 * their 4 MiB high-water mark. 10 such workers: balancer RSS 72 → 495 MiB,
 * 20: 695 MiB (hostile44a-scripts/worker_nonreader.py; 10 clients: 182);
 * registering is free by default, up to `--max-workers` 1,000.
 *
 * A user checks the balancer's RSS while four registered workers flood
 * it with pings they never read the answers of, against four clients.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { Buffer } from "node:buffer";
import { startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { HELLO, jsonFrame, sleep } from "./helpers/raw.ts";

function rssMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(status.match(/VmRSS:\s+(\d+)/)![1]) / 1024;
}

/**
 * A worker (or a client) from `from` that registers (a worker), then writes pings it never reads
 * the answers of.
 */
function pingFlooder(
  address: string,
  from: string,
  name: string,
  all: net.Socket[],
  role: "worker" | "client",
): void {
  const [host, port] = address.split(":");
  const socket = net.connect({ host, port: Number(port), localAddress: from });
  all.push(socket);
  socket.on("error", () => {});
  const pings = Buffer.concat(
    Array.from({ length: 2000 }, (_, i) => jsonFrame({ id: i + 2, method: "sys.ping" })),
  );
  socket.on("connect", () => {
    socket.write(jsonFrame({ ...HELLO, role, name, heartbeat: 60_000 }));
    if (role === "worker") {
      socket.write(jsonFrame({ id: 1, method: "worker.register", params: { name, capacity: 1 } }));
    }
    socket.pause(); // reads nothing from now on
    const more = () => {
      while (!socket.destroyed && socket.write(pings));
    };
    socket.on("drain", more);
    more();
  });
}

/** The balancer's RSS before and at its peak while 4 flooders of `role` run for 12 s. */
async function flood(role: "worker" | "client"): Promise<[number, number, number]> {
  const servers = await startServers(1);
  const balancer = await startBalancer(servers);
  const sockets: net.Socket[] = [];
  try {
    const before = rssMiB(balancer.child.pid);
    const address = role === "worker" ? balancer.workerAddress : balancer.address;
    for (let k = 0; k < 4; k++) pingFlooder(address, `127.0.0.${20 + k}`, `nr${k}`, sockets, role);
    let peak = before;
    const end = performance.now() + 12_000;
    while (performance.now() < end) {
      peak = Math.max(peak, rssMiB(balancer.child.pid));
      await sleep(100);
    }
    return [before, peak, (balancer.stderr().match(/slow_consumer/g) ?? []).length];
  } finally {
    for (const s of sockets) s.destroy();
    await stopAll([balancer, ...servers]);
  }
}

Deno.test("registered workers that flood pings and read nothing take no more of the balancer's memory than clients doing so (hostile44a H-A6)", async () => {
  const [cBefore, cPeak] = await flood("client");
  const [wBefore, wPeak, cut] = await flood("worker");
  const summary = `4 clients: RSS ${cBefore.toFixed(0)} -> ${cPeak.toFixed(0)} MiB; 4 workers: ` +
    `${wBefore.toFixed(0)} -> ${wPeak.toFixed(0)} MiB (${cut} cut as slow consumers); ` +
    `load ${Deno.loadavg()[0]}`;
  console.log(summary);
  // Main: clients +59 MiB, workers +304 MiB (eight cut at 64 MiB). Bound: twice the clients' growth
  // plus 64 MiB.
  assert.ok(
    wPeak - wBefore <= 2 * (cPeak - cBefore) + 64,
    `workers take about what clients do (${summary})`,
  );
});
