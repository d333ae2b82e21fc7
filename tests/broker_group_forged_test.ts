/**
 * Queue groups against members that never read but have their kernel
 * acknowledge megabytes: a client that sets SO_RCVBUF 4 MiB before it
 * connects gets a receive buffer of 8 MB (hostile review 38b M1: the broker
 * took 256 KiB acknowledged as proof that a member reads, so ten such
 * members took 84 % of a group's 100,000 messages, 8.4 MB each). Proof is
 * now 256 KiB past what its receive buffer can hold: such members stay on
 * trial and share at most the group's trial budget, while a member that
 * reads takes the rest. Deno cannot set SO_RCVBUF: the members are a
 * python3 MQTT 5 client.
 */
import assert from "node:assert/strict";
import { mqttClient, mqttOpts, withMqttBroker } from "./helpers/mqtt.ts";
import { waitFor } from "./helpers/raw.ts";
import { publishKb } from "./helpers/groups.ts";

/** `count` MQTT 5 members of `$share/g/q/#` with an 8 MB receive buffer that read nothing past SUBACK. */
const FORGER = `
import socket, struct, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
def s(b): return struct.pack(">H", len(b)) + b
socks = []
for i in range(count):
    sk = socket.socket()
    sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sk.connect(("127.0.0.1", port))
    body = s(b"MQTT") + bytes([5, 0x02]) + struct.pack(">H", 0) + b"\\x00" + s(b"forger-%d" % i)
    sk.sendall(bytes([0x10, len(body)]) + body)
    sub = struct.pack(">H", 1) + b"\\x00" + s(b"$share/g/q/#") + b"\\x00"
    sk.sendall(bytes([0x82, len(sub)]) + sub)
    got = b""
    while b"\\x90" not in got[4:]:  # CONNACK, then SUBACK
        got += sk.recv(64)
    socks.append(sk)
print("ready", flush=True)
sys.stdin.readline()
total = 0
for sk in socks:
    sk.setblocking(False)
    try:
        while True:
            b = sk.recv(1 << 20)
            if not b: break
            total += len(b)
    except BlockingIOError:
        pass
print(total, flush=True)
`;

Deno.test(
  "MQTT shared subscription: members with an 8 MB receive buffer that never read cannot take most of its messages (hostile review 38b M1)",
  mqttOpts,
  async () => {
    await withMqttBroker(async (b) => {
      const alice = await mqttClient(b.mqttPort, { protocolVersion: 5 });
      let got = 0;
      alice.on("message", () => got++);
      await alice.subscribeAsync("$share/g/q/#", { qos: 0 });
      // Alice alone reads 10 MB: more than the biggest receive buffer (8 MB here) could take unread.
      const warm = 10_000;
      await publishKb(b.native, warm);
      await waitFor(() => got === warm, 20_000, `alice's first deliveries (${got})`);
      got = 0;
      const forger = new Deno.Command("python3", {
        args: ["-c", FORGER, String(b.mqttPort), "10"],
        stdin: "piped",
        stdout: "piped",
      }).spawn();
      const lines = forger.stdout.pipeThrough(new TextDecoderStream()).getReader();
      const stdin = forger.stdin.getWriter();
      try {
        assert.equal((await lines.read()).value?.trim(), "ready");
        const n = 30_000;
        await publishKb(b.native, n);
        // Before: each was acknowledged its 8 MB unread and counted as one that reads; alice got
        // about 16 % (30 MB fit in their buffers: they could take it all).
        await waitFor(() => got >= 0.75 * n, 30_000, `alice's deliveries (${got})`);
        await stdin.write(new TextEncoder().encode("\n"));
        const taken = Number((await lines.read()).value?.trim());
        assert.ok(taken < 0.25 * n * 1000, `the members that never read took ${taken} bytes`);
      } finally {
        await stdin.close().catch(() => {});
        await lines.cancel().catch(() => {});
        await forger.status;
        await alice.endAsync(true);
      }
    });
  },
);
