/**
 * review45 R5: password checks wait their turn by lane, and a lane was a
 * host and a user of the users file, so a flood from one address naming 80
 * users of the file (wrong passwords, 16 hellos each at a time) was 80
 * lanes, and a password user it never names waited her turn behind all of
 * them. Now every record of a host with failures shares the host's lane;
 * and a host holds at most `maxHostHeld` failing hellos whatever names
 * they try. She gets in, with a secret in clear (MQTT's CONNECT, an older
 * dialer) as with the challenge (which hashes nothing on the listener).
 */
import assert from "node:assert/strict";
import { hashPassword, hashToken } from "../auth/mod.ts";
import { parseAddress } from "../config/mod.ts";
import { dial } from "../wire/mod.ts";
import { startDist } from "./helpers/dist.ts";
import { jsonFrame, RawReader, sleep, writeAll } from "./helpers/raw.ts";

/** USERS users named u0…, 16 hellos each at a time from 127.0.0.1, wrong passwords in clear. */
const FLOOD = `
import asyncio, json, struct, sys
port, users, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
def frame(user):
    hello = json.dumps({"op": "hello", "v": 1, "codec": "json", "role": "client",
                        "name": "guess", "user": user, "password": "guess"}).encode()
    return struct.pack(">I", len(hello)) + hello
sent = 0
async def guesser(user):
    global sent
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    data = frame(user)
    while loop.time() < end:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(data)
            await w.drain()
            sent += 1
            try:
                await asyncio.wait_for(r.read(4096), 2.0)
            except asyncio.TimeoutError:
                pass
            w.close()
        except OSError:
            await asyncio.sleep(0.05)
async def main():
    tasks = [guesser(f"u{u}") for u in range(users) for _ in range(16)]
    print("ready", flush=True)
    await asyncio.gather(*tasks)
    print("sent", sent, flush=True)
asyncio.run(main())
`;

const OPS_TOKEN = "ops-token-0123456789";

/** Alice's hello with her password in clear (as MQTT's CONNECT or an older dialer sends it). */
async function clearHello(address: string, password: string): Promise<string> {
  const at = parseAddress(address);
  const conn = await Deno.connect({ hostname: at.host, port: at.port });
  try {
    await writeAll(
      conn,
      jsonFrame({
        op: "hello",
        v: 1,
        codec: "json",
        role: "client",
        name: "alice",
        user: "alice",
        password,
      }),
    );
    const answer = await new RawReader(conn).json(5000);
    return answer?.op === "welcome" ? "welcome" : JSON.stringify(answer);
  } finally {
    conn.close();
  }
}

Deno.test("review45 R5: a flood from one address naming 80 users of the users file does not keep out a password user it never names", async () => {
  const file = await Deno.makeTempFile({ suffix: ".toml" });
  const other = await hashPassword("not-guessed-0123"); // the default cost: a check takes ~100 ms
  const lines = [
    "[users.alice]",
    `password = "${await hashPassword("alice-pw")}"`,
    'methods = ["add"]',
  ];
  lines.push("[users.ops]", `token = "${hashToken(OPS_TOKEN)}"`, 'methods = ["sys.*"]');
  for (let u = 0; u < 80; u++) lines.push(`[users.u${u}]`, `password = "${other}"`);
  await Deno.writeTextFile(file, lines.join("\n") + "\n", { mode: 0o600 });
  const server = await startDist(["server", "--port", "0", "--users", file]);
  const port = parseAddress(server.address).port;
  const flood = new Deno.Command("python3", {
    args: ["-c", FLOOD, String(port), "80", "60"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = flood.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    assert.match((await out.read()).value ?? "", /ready/);
    // Until the flood's first guess at each of the 80 users has failed: its first wave (one hash
    // per user named, which a first login cannot be told from) is over.
    const ops = await dial(parseAddress(server.address), {
      role: "client",
      name: "ops",
      credentials: { token: OPS_TOKEN },
    });
    const t0 = performance.now();
    let refused = 0;
    while (refused < 80 && performance.now() - t0 < 40_000) {
      refused = (await ops.call("sys.stats") as { auth: { refused: number } }).auth.refused;
      await sleep(250);
    }
    ops.close();
    assert.ok(refused >= 80, `${refused} refused`);
    // Her first login, her password in clear (MQTT's CONNECT, an older dialer): a hash on the
    // listener, in its turn. It was one of 81 lanes, each 16 checks deep, refilled by the flood.
    let t1 = performance.now();
    const clear = await clearHello(server.address, "alice-pw");
    const clearMs = Math.round(performance.now() - t1);
    assert.equal(clear, "welcome", `alice in clear after ${clearMs} ms: ${clear}`);
    // And through the challenge (no hash on the listener).
    t1 = performance.now();
    const peer = await dial(parseAddress(server.address), {
      role: "client",
      name: "alice",
      credentials: { user: "alice", password: "alice-pw" },
      connectTimeoutMs: 5000,
    });
    assert.equal(await peer.call("add", { a: 2, b: 3 }), 5);
    peer.close();
    const provedMs = Math.round(performance.now() - t1);
    console.log(`alice in: in clear after ${clearMs} ms, with the challenge after ${provedMs} ms`);
  } finally {
    flood.kill("SIGKILL");
    await out.cancel().catch(() => {});
    await flood.status;
    await server.stop();
    await Deno.remove(file);
  }
});
