/**
 * hostile45c K-C3: password checks wait their turn by record, and a record
 * is one source address (or address and known user), so guesses from many
 * addresses are many lanes and fill the 1,024 checks the listener queues
 * (HashSlots' maxTotal). Any local process may dial from any address of
 * 127.0.0.0/8 (an IPv6 peer from any of its /64's). So 80 addresses of
 * made-up users keep a password user the flood never names from logging in
 * at all (OVERLOADED), where README says such a flood "does not keep out
 * … any password user it does not guess at".
 */
import assert from "node:assert/strict";
import { hashPassword } from "../auth/mod.ts";
import { parseAddress } from "../config/mod.ts";
import { dial, type DistError } from "../wire/mod.ts";
import { startDist } from "./helpers/dist.ts";
import { sleep } from "./helpers/raw.ts";

/** ADDRESSES source addresses of 127.0.1.0/24, 16 hellos each at a time, made-up users. */
const FLOOD = `
import asyncio, json, struct, sys
port, addresses, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
hello = json.dumps({"op": "hello", "v": 1, "codec": "json", "role": "client",
                    "name": "guess", "user": "ghost", "password": "guess"}).encode()
frame = struct.pack(">I", len(hello)) + hello
sent = 0
async def guesser(source):
    global sent
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            w.write(frame)
            await w.drain()
            sent += 1
            try:
                await asyncio.wait_for(r.read(4096), 1.0)
            except asyncio.TimeoutError:
                pass
            w.close()
        except OSError:
            await asyncio.sleep(0.05)
async def main():
    tasks = [guesser(f"127.0.1.{a + 1}") for a in range(addresses) for _ in range(16)]
    print("ready", flush=True)
    await asyncio.gather(*tasks)
    print("sent", sent, flush=True)
asyncio.run(main())
`;

Deno.test("hostile45c K-C3: a flood of made-up users from many loopback addresses does not keep out a password user it never names", async () => {
  const file = await Deno.makeTempFile({ suffix: ".toml" });
  await Deno.writeTextFile(
    file,
    `[users.alice]\npassword = "${await hashPassword("alice-pw")}"\nmethods = ["add"]\n`,
    { mode: 0o600 },
  );
  const server = await startDist(["server", "--port", "0", "--users", file]);
  const port = parseAddress(server.address).port;
  const flood = new Deno.Command("python3", {
    args: ["-c", FLOOD, String(port), "80", "14"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = flood.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    assert.match((await out.read()).value ?? "", /ready/);
    await sleep(4000); // the flood's guesses queue up
    // Alice logs in for the first time (no success to remember yet), as a user would: tries
    // for 6 s in all.
    const t0 = performance.now();
    let answer = "";
    while (performance.now() - t0 < 6000) {
      try {
        const peer = await dial(parseAddress(server.address), {
          role: "client",
          name: "alice",
          credentials: { user: "alice", password: "alice-pw" },
          connectTimeoutMs: 6000,
          timeoutMs: 6000,
        });
        answer = String(await peer.call("add", { a: 2, b: 3 }));
        peer.close();
        break;
      } catch (err) {
        answer = `${(err as DistError).code}: ${(err as Error).message}`;
        await sleep(250);
      }
    }
    const waited = Math.round(performance.now() - t0);
    assert.equal(answer, "5", `alice after ${waited} ms: ${answer}`);
  } finally {
    flood.kill("SIGKILL");
    await out.cancel().catch(() => {});
    await flood.status;
    await server.stop();
    await Deno.remove(file);
  }
});
