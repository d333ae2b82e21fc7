/**
 * hostile44c H-C4: over libc's sockets (tcp/raw_splice.ts) a read shorter
 * than the buffer while the peer's FIN is in (EPOLLRDHUP) is taken for the
 * stream's last bytes: the other side is shut down after them and this
 * side is not read again. A read also stops short at TCP's urgent mark
 * (MSG_OOB: telnet's interrupt, FTP's ABOR), so whatever the client sent
 * after an urgent byte, before its FIN, is dropped, and the backend sees a
 * clean end: 1,000,005 of 1,004,005 bytes, 5 runs of 5 (straight to the
 * backend, and through Deno's sockets: every byte; HAProxy 2.6: 2 of 5
 * cut).
 */
import assert from "node:assert/strict";
import { waitFor } from "./helpers/raw.ts";
import { rawBackend, startTcpBalancer } from "./helpers/tcp_backend.ts";

/** Sends 1 MB, "HEAD-", one urgent byte, 4,000 bytes and its FIN; says "sent"; waits for the answer. */
const CLIENT = `
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"F" * 1000000)
s.send(b"HEAD-")
s.send(b"!", socket.MSG_OOB)
s.sendall(b"TAIL" * 1000)
s.shutdown(socket.SHUT_WR)
print("sent", flush=True)
s.settimeout(10)
try:
    s.recv(10)
except OSError:
    pass
`;

Deno.test({
  name:
    "balancer --mode tcp over libc: bytes after an urgent byte and before the client's end all reach the backend (hostile44c H-C4)",
  ignore: Deno.build.os !== "linux",
}, async () => {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => open = resolve);
  const counts: number[] = [];
  const backend = rawBackend(async (conn) => {
    // Reads nothing until the client has sent all: its bytes wait in the balancer's socket.
    await gate;
    const buf = new Uint8Array(64 * 1024);
    let total = 0;
    for (let n; (n = await conn.read(buf)) !== null;) total += n;
    if (total > 0) counts.push(total);
    await conn.write(new TextEncoder().encode("ok"));
  });
  const lb = await startTcpBalancer([backend.address], ["--check-interval", "1h"]);
  const client = new Deno.Command("python3", {
    args: ["-c", CLIENT, lb.address.split(":")[1]],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const said = client.stdout.pipeThrough(new TextDecoderStream()).getReader();
    assert.match((await said.read()).value ?? "", /sent/);
    said.releaseLock();
    open();
    await waitFor(() => counts.length > 0, 10_000, "the backend to read to the end");
    // Read straight from the client, the urgent byte is out of band: 1,000,000 + 5 + 4,000.
    assert.equal(counts[0], 1_004_005, "bytes the backend read before the end of the stream");
  } finally {
    open();
    await client.status;
    await lb.stop();
    await backend.close();
  }
});
