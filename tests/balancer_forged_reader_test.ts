/**
 * The bulk allowance goes to clients that read their answers, judged by
 * their answers (hostile39a P2): the balancer asked only the kernel, and a
 * client that sets SO_RCVBUF 4 MiB (no privilege where rmem_max is 4 MiB)
 * has 8 MB acknowledged without reading a byte, so four such pipeliners
 * that never read took the allowance in turn with a deep pipeliner that
 * reads (the reviewer: 5.5-7.4k answers in a window, against 0.2-1.0k for
 * a plain non-reader). Now the balancer sends a bulk flow's client, behind
 * its answers, a `sys.ping` under a random nonce id (wire/read_proof.ts):
 * one that leaves it unanswered with 64 KiB given past its last answer
 * gets no allowance. Deno cannot set SO_RCVBUF: the forgers are python3.
 */
import assert from "node:assert/strict";
import { startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { deepBesideLight } from "./helpers/nonreaders.ts";
import { sleep } from "./helpers/raw.ts";

/**
 * A dist client with an 8 MB receive buffer that pipelines `add` forever
 * (pre-built batches of 2,000) and never reads past the welcome; prints
 * "ready" after the handshake, exits when stdin closes.
 */
const FORGER = `
import json, socket, struct, sys, threading
port = int(sys.argv[1])
def frame(o):
    b = json.dumps(o).encode()
    return struct.pack(">I", len(b)) + b
batches = [b"".join(frame({"id": i, "method": "add", "params": {"a": i, "b": 1}})
                    for i in range(k * 2000 + 1, k * 2000 + 2001)) for k in range(4)]
sk = socket.socket()
sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
sk.connect(("127.0.0.1", port))
sk.sendall(frame({"op": "hello", "v": 1, "codec": "json", "role": "client", "name": "forger"}))
got = b""
while len(got) < 4 or len(got) < 4 + struct.unpack(">I", got[:4])[0]:
    got += sk.recv(4096)
print("ready", flush=True)
def pipeline():
    k = 0
    try:
        while True:
            sk.sendall(batches[k % 4])
            k += 1
    except OSError:
        pass
threading.Thread(target=pipeline, daemon=True).start()
sys.stdin.read()
`;

Deno.test("a deep pipeliner that reads keeps the allowance beside four that forge reading with SO_RCVBUF", async () => {
  const servers = await startServers(2);
  const balancer = await startBalancer(servers);
  const forgers = Array.from({ length: 4 }, () =>
    new Deno.Command("python3", {
      args: ["-c", FORGER, String(balancer.port)],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn());
  const readers = forgers.map((f) => f.stdout.pipeThrough(new TextDecoderStream()).getReader());
  try {
    for (const r of readers) assert.match((await r.read()).value ?? "", /ready/);
    // Alone a while, they are answered (and read nothing); their kernels take it all.
    await sleep(1000);
    const during = await deepBesideLight(balancer.address);
    console.log(`the deep pipeliner got ${during} answers beside 800 light calls`);
    // One for every eight of the light client's, all the reader's (before: 36 in two runs, the
    // forgers taking their turns of it; beside plain non-readers, 103-111: balancer_reader_test).
    assert.ok(during >= 70, `the deep pipeliner got ${during} answers beside 800 light calls`);
  } finally {
    for (const f of forgers) await f.stdin.close().catch(() => {});
    for (const r of readers) await r.cancel().catch(() => {});
    for (const f of forgers) await f.status;
    await stopAll([balancer, ...servers]);
  }
});
