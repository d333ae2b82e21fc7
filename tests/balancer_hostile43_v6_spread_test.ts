/**
 * hostile43a A11: hostile42a Y1 over IPv6. Redials count for an IPv4
 * address's /24 (roles/balancer/redial_nets.ts), but an IPv6 source is only
 * its /64 and nothing groups /64s: a host or site usually holds a /48 or a
 * /56 (65,536 or 256 /64s). 40 non-readers that dial again once paused,
 * each new connection from the next of 100 /64s of one /48, are never a
 * redialing source: every new connection is read and refused (42,637 and
 * 76,379 refusals a second), and another address's client fell from
 * 3,590-5,016 calls a second to 5-12. From one /64 the same 40 are paced:
 * 131 refusals a second, the client at 3,031 (hostile43a-scripts
 * run_v6_spread.sh). The IPv4 shape (100 addresses of one /24) is paced:
 * 885-2,400 a second (balancer_redial_nets_test.ts).
 *
 * Run in a network namespace of its own (`unshare -rn`: only loopback, with
 * fd00::/48 routed to it), so the attackers can bind any of its addresses.
 */
import assert from "node:assert/strict";
import { distCommand } from "./helpers/dist.ts";

/**
 * Inside the namespace: a server, a balancer on [fd00::1], a client calling
 * `add` in turn from fd00:0:0:ffff::1 (2 s alone, then 3 s beside the
 * redialers), a probe reading `sys.stats`; prints one JSON line.
 */
const SCENARIO = String.raw`
import json, socket, struct, subprocess, sys, threading, time
exe, args = sys.argv[1], sys.argv[2:]
port, conns, spread, secs = 21600, 40, 100, 3
procs, logs = [], []
def start(extra, log, line):
    f = open(log, "w+"); logs.append(f)
    procs.append(subprocess.Popen([exe] + args + extra, stdout=subprocess.DEVNULL, stderr=f))
    end = time.time() + 15
    while time.time() < end:
        f.seek(0)
        if line in f.read(): return
        time.sleep(0.1)
    raise SystemExit("no " + line)
try:
    start(["server", "--port", "21601", "--name", "s1"], "/tmp/h43a_v6t_s.log", "Listening on")
    start(["balancer", "--host", "fd00::1", "--port", "21600", "--worker-port", "21602", "--backends",
           "127.0.0.1:21601", "--queue", "1000"], "/tmp/h43a_v6t_b.log", "is up")

    def frb(b): return struct.pack(">I", len(b)) + b
    def fr(o): return frb(json.dumps(o, separators=(",", ":")).encode())
    hello = fr({"op": "hello", "v": 1, "codec": "json", "role": "client", "name": "r", "heartbeat": 60000})
    burst = b"".join(fr({"id": i + 1, "method": "sleep", "params": {"ms": 5000}}) for i in range(2000))
    made = [0]; stop = [False]
    def sock(src):
        s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
        s.bind((src, 0)); s.connect(("fd00::1", port)); return s
    def redialer(k):
        n = k
        while not stop[0]:
            n += conns; made[0] += 1
            try:
                s = sock(f"fd00:0:0:{1 + n % spread:x}::1")
                s.sendall(hello); s.settimeout(0.3)
                while not stop[0]: s.sendall(burst)
            except Exception:
                pass
            try: s.close()
            except Exception: pass
    def read(s, buf):
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
            d = s.recv(65536)
            if not d: raise EOFError
            buf += d
        n = struct.unpack(">I", buf[:4])[0]; return json.loads(buf[4:4+n]), buf[4+n:]
    def client_conn(src):
        s = sock(src); s.settimeout(10); s.sendall(fr({"op": "hello", "v": 1, "codec": "json", "role": "client", "name": "c"}))
        _, b = read(s, b""); return s, b
    probe, pb = client_conn("fd00:0:0:fffe::1")
    def stats():
        global pb
        with locks[probe]: probe.sendall(fr({"id": 1, "method": "sys.stats"}))
        while True:
            m, pb = read(probe, pb)
            if m.get("id") == 1 and "method" not in m: return m["result"]
    cl, cb = client_conn("fd00:0:0:ffff::1")
    def calls(t):
        global cb
        n = 0; end = time.time() + t; i = 0
        while time.time() < end:
            i += 1
            with locks[cl]: cl.sendall(fr({"id": i, "method": "add", "params": {"a": 1, "b": 2}}))
            while True:
                m, cb = read(cl, cb)
                if m.get("id") == i and "method" not in m: break
            if "result" in m: n += 1
        return n / t
    locks = {}
    def keepalive():
        while not stop[0]:
            for so in (probe, cl):
                with locks[so]: so.sendall(fr({"method": "ping"}))
            time.sleep(0.4)
    locks[probe] = threading.Lock(); locks[cl] = threading.Lock()
    threading.Thread(target=keepalive, daemon=True).start()
    alone = calls(2)
    ths = [threading.Thread(target=redialer, args=(k,), daemon=True) for k in range(conns)]
    for t in ths: t.start()
    time.sleep(3)
    s0 = stats(); t0 = time.time()
    rate = calls(secs)
    s1 = stats(); el = time.time() - t0
    stop[0] = True
    print(json.dumps({"refused": (s1["overloaded"] - s0["overloaded"]) / el, "made": made[0], "redialing": s1.get("redialing_sources"), "alone": alone, "beside": rate}))

finally:
    for p in procs: p.terminate()
    for p in procs:
        try: p.wait(5)
        except subprocess.TimeoutExpired: p.kill()
`;

function namespaces(): boolean {
  try {
    return new Deno.Command("unshare", { args: ["-rn", "true"] }).outputSync().success;
  } catch {
    return false;
  }
}

Deno.test({
  name:
    "40 non-readers redialing from 100 /64s of one IPv6 /48: paced as the /24 rule paces IPv4, refusals bounded",
  ignore: !namespaces(),
  async fn() {
    const { exe, args } = distCommand([]);
    const setup = "ip link set lo up && ip -6 addr add fd00::1/128 dev lo nodad && " +
      'ip -6 route add local fd00::/48 dev lo && exec python3 -c "$0" "$@"';
    const out = await new Deno.Command("timeout", {
      args: ["50", "unshare", "-rn", "sh", "-c", setup, SCENARIO, exe, ...args],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim();
    assert.ok(out.success, `scenario failed: ${text}\n${new TextDecoder().decode(out.stderr)}`);
    const got = JSON.parse(text.split("\n").at(-1)!);
    const summary =
      `refused ${got.refused.toFixed(0)}/s, made ${got.made}, redialing ${got.redialing}; ` +
      `client alone ${got.alone.toFixed(0)} calls/s, beside them ${got.beside.toFixed(0)}; ` +
      `load ${Deno.loadavg()[0]}`;
    console.log(summary);
    assert.ok(got.made > 80, `they redialed (${summary})`);
    assert.ok(got.refused < 3000, `refusals bounded (${summary})`);
  },
});
