/**
 * hostile43a A1: the balancer's raw `send` (wire/raw_send.ts) finds a
 * connection's descriptor by its "ends", the local port and the peer's
 * address and port, without the local address. Two clients behind one NAT
 * that reach two addresses of a balancer listening on a wildcard (0.0.0.0)
 * can show the same peer address and port on two connections (their
 * 4-tuples differ only by the balancer's address): one connection then
 * takes the other's descriptor, and its answers go to the other client.
 *
 * Run in a network namespace of its own (`unshare -rn`: only loopback, so
 * the wildcard listener is reachable from nowhere else), where 127.0.0.1
 * and 127.0.0.2 are two addresses of the balancer's host and both clients
 * bind 127.0.0.5 and one port (SO_REUSEADDR), as a NAT gives them. A user
 * checks that each client gets its own answers, and only its own.
 */
import assert from "node:assert/strict";
import { distCommand } from "./helpers/dist.ts";

/**
 * Inside the namespace: a server, a balancer on 0.0.0.0, then the two
 * clients, each calling `echo` 30 times one at a time; prints one JSON line
 * {a_own, a_other, b_own, b_other} and stops the processes it started.
 */
const SCENARIO = String.raw`
import json, socket, struct, subprocess, sys, time
exe, args = sys.argv[1], sys.argv[2:]
procs, logs = [], []
def start(extra, log):
    f = open(log, "w+"); logs.append(f)
    procs.append(subprocess.Popen([exe] + args + extra, stdout=subprocess.DEVNULL, stderr=f))
    return f
def listening(f):
    end = time.time() + 15
    while time.time() < end:
        f.seek(0)
        if "Listening on" in f.read(): return True
        time.sleep(0.1)
    return False
def frame(o):
    b = json.dumps(o).encode(); return struct.pack(">I", len(b)) + b
def dial(dst):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.5", 40123)); s.connect((dst, 21000))
    s.sendall(frame({"op": "hello", "v": 1, "codec": "json", "role": "client", "name": "c", "heartbeat": 60000}))
    s.settimeout(0.02)
    return s
bufs = {}
def answers(s, into):
    b = bufs.get(s, b"")
    try:
        while True:
            d = s.recv(65536)
            if not d: break
            b += d
    except (socket.timeout, BlockingIOError):
        pass
    while len(b) >= 4:
        n = struct.unpack(">I", b[:4])[0]
        if len(b) < 4 + n: break
        m = json.loads(b[4:4 + n]); b = b[4 + n:]
        if "result" in m: into.append(str(m["result"]))
    bufs[s] = b
try:
    if not listening(start(["server", "--port", "21001", "--name", "s1"], "/tmp/h43a_ends_s.log")):
        raise SystemExit("no server")
    if not listening(start(["balancer", "--host", "0.0.0.0", "--port", "21000", "--worker-port",
                            "21002", "--backends", "127.0.0.1:21001"], "/tmp/h43a_ends_b.log")):
        raise SystemExit("no balancer")
    time.sleep(1)
    a, b = dial("127.0.0.1"), dial("127.0.0.2")
    ga, gb = [], []
    for i in range(30):
        a.sendall(frame({"id": 1000 + i, "method": "echo", "params": {"text": "A-%d" % i}}))
        b.sendall(frame({"id": 2000 + i, "method": "echo", "params": {"text": "B-%d" % i}}))
        time.sleep(0.05); answers(a, ga); answers(b, gb)
    end = time.time() + 2
    while time.time() < end and (len(ga) + len(gb) < 60):
        time.sleep(0.05); answers(a, ga); answers(b, gb)
    print(json.dumps({"a_own": sum(r.startswith("A-") for r in ga), "a_other": sum(r.startswith("B-") for r in ga),
                      "b_own": sum(r.startswith("B-") for r in gb), "b_other": sum(r.startswith("A-") for r in gb)}))
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
    "two clients behind one NAT reaching two addresses of a 0.0.0.0 balancer each get their own answers",
  ignore: !namespaces(),
  async fn() {
    const { exe, args } = distCommand([]);
    const out = await new Deno.Command("timeout", {
      args: [
        "40",
        "unshare",
        "-rn",
        "sh",
        "-c",
        'ip link set lo up && exec python3 -c "$0" "$@"',
        SCENARIO,
        exe,
        ...args,
      ],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim();
    assert.ok(out.success, `scenario failed: ${text}\n${new TextDecoder().decode(out.stderr)}`);
    const got = JSON.parse(text.split("\n").at(-1)!);
    const summary = JSON.stringify(got);
    assert.equal(got.b_other, 0, `B received answers to A's requests (${summary})`);
    assert.equal(got.a_other, 0, `A received answers to B's requests (${summary})`);
    assert.equal(got.a_own, 30, `A got all its answers (${summary})`);
    assert.equal(got.b_own, 30, `B got all its answers (${summary})`);
  },
});
