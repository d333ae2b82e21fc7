/**
 * hostile41a W7: a connection told OVERLOADED is looked at (its socket's
 * unacknowledged bytes, a kernel read) until it has taken every answer.
 * One that keeps a few KB unacknowledged (a 1 KiB receive buffer, answers
 * never read, heartbeats sent) was looked at every 100 ms for good, a timer
 * and a read each: 2,000 of them took 19-24 % of a core (5-7 % before
 * 5021851). Now one timer looks at them all, and each socket twice as late
 * after each look at which its unacknowledged bytes did not fall, up to 2 s
 * apart (`refused_looks` in sys.stats). Deno cannot set SO_RCVBUF: the
 * clients are python3.
 */
import assert from "node:assert/strict";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { cpuSeconds } from "./helpers/dist.ts";
import { sleep } from "./helpers/raw.ts";

/**
 * N connections (argv): each says hello, asks 2 echoes of 3 KB and 37
 * `sleep 300` (past `--queue 10`: refused), never reads, and sends a ping
 * every 0.5 s; prints "ready" once all are open, closes them on stdin's end.
 */
const REFUSED = `
import socket, struct, json, sys, threading, time
port, n = int(sys.argv[1]), int(sys.argv[2])
def fr(o):
    b = json.dumps(o, separators=(",", ":")).encode(); return struct.pack(">I", len(b)) + b
socks = []
for i in range(n):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    s.connect(("127.0.0.1", port))
    s.sendall(fr({"op": "hello", "v": 1, "codec": "json", "role": "client", "name": f"c{i}"}))
    s.sendall(b"".join(fr({"id": k, "method": "echo", "params": {"text": "x" * 3000}}) for k in (1, 2)))
    s.sendall(b"".join(fr({"id": k, "method": "sleep", "params": {"ms": 300}}) for k in range(3, 40)))
    socks.append(s)
print("ready", flush=True)
done = threading.Event()
def keep():
    while not done.wait(0.5):
        for s in socks:
            try: s.send(fr({"method": "ping"}), socket.MSG_DONTWAIT)
            except OSError: pass
threading.Thread(target=keep, daemon=True).start()
sys.stdin.read()
done.set()
for s in socks: s.close()
`;

const CONNS = 300;

Deno.test("refused connections that keep a few KB unacknowledged are looked at less and less often", async () => {
  const servers = await startServers(1);
  const balancer = await startBalancer(servers, ["--queue", "10"]);
  const probe = await connectTo(balancer.address);
  const clients = new Deno.Command("python3", {
    args: ["-c", REFUSED, String(balancer.port), String(CONNS)],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const lines = clients.stdout.pipeThrough(new TextDecoderStream()).getReader();
    assert.match((await lines.read()).value ?? "", /ready/);
    const stats = () => probe.call("sys.stats") as Promise<Record<string, number>>;
    // Refused, their sleeps over, their looks backed off.
    await sleep(4000);
    const before = await stats();
    const cpu0 = cpuSeconds(balancer.child.pid);
    const t0 = performance.now();
    await sleep(4000);
    const after = await stats();
    const seconds = (performance.now() - t0) / 1000;
    const cpu = (cpuSeconds(balancer.child.pid) - cpu0) / seconds;
    const watched = after.refused_watched;
    const perSecond = (after.refused_looks - before.refused_looks) / seconds;
    const summary = `${watched} watched, ${perSecond.toFixed(0)} looks a second (${
      (perSecond / watched).toFixed(2)
    } each); ${after.overloaded} refused; balancer CPU ${(cpu * 100).toFixed(1)} %; load ${
      Deno.loadavg()[0]
    }`;
    console.log(summary);
    assert.ok(after.overloaded >= CONNS, `each was refused (${summary})`);
    // Those whose kernel holds their answers stay watched (main: each looked at 10 times a second).
    assert.ok(watched >= CONNS / 2, `they are watched (${summary})`);
    assert.ok(perSecond / watched <= 1.5, `each looked at rarely (${summary})`);
  } finally {
    probe.close();
    await clients.stdin.close().catch(() => {});
    await clients.status;
    await stopAll([balancer, ...servers]);
  }
});
