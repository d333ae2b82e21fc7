/**
 * hostile45c K-C7: `dist up` checks an instance's fixed ports before each
 * (re)start, and when one is held by another process it says so and never
 * starts that instance again (launch/supervisor.ts #portTaken: "after, it
 * stays down"), whatever its `restart`. So any local user who holds a
 * crashed instance's port for a second or two while the launcher restarts
 * it takes that instance out for the launcher's whole life, though the
 * port is free again a moment later (and when it was the last instance
 * running, the whole `dist up` ends). systemd's Restart=always and
 * Docker's restart policy keep trying.
 */
import assert from "node:assert/strict";
import { parseAddress } from "../config/mod.ts";
import { dial } from "../wire/mod.ts";
import { sleep } from "./helpers/raw.ts";
import { freeRange, startUp, topologyFile } from "./helpers/up.ts";

/** Spins binding 127.0.0.1:PORT until it has it, holds it HOLD s, lets go. */
const GRAB = `
import socket, sys, time
port, hold = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + 20
print("spinning", flush=True)
while time.time() < end:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port)); s.listen(1)
    except OSError:
        s.close(); continue
    print("grabbed", flush=True); time.sleep(hold); s.close(); print("released", flush=True)
    break
`;

async function answers(address: string, name: string): Promise<boolean> {
  try {
    const peer = await dial(parseAddress(address), {
      role: "client",
      name: "k-c7",
      connectTimeoutMs: 1000,
      timeoutMs: 1000,
    });
    const ok = peer.remote.name === name && (await peer.call("sys.ping")) !== undefined;
    peer.close();
    return ok;
  } catch {
    return false;
  }
}

Deno.test("hostile45c K-C7: an instance whose port another process held for a moment at its restart is started again once the port is free", async () => {
  const state = await Deno.makeTempDir({ prefix: "dist-k-c7-" });
  const port = freeRange(2);
  const file = await topologyFile(`
[[server]]
name = "server"
replicas = 2
port = ${port}
restart = "always"
`);
  const up = startUp([file, "--no-dashboard"], { env: { DIST_STATE_DIR: state } });
  let grabber: Deno.ChildProcess | undefined;
  try {
    await up.waitFor(/All 2 ready/);
    const pid = Number((await up.waitFor(/server-1 started, pid (\d+)/))[1]);
    grabber = new Deno.Command("python3", {
      args: ["-c", GRAB, String(port), "3"],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const said = grabber.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const until = async (word: string) => {
      while (!text.includes(word)) {
        const { value, done } = await said.read();
        if (done) throw new Error(`the grabber ended before "${word}": ${text}`);
        text += value;
      }
    };
    await until("spinning");
    // A crash (the OOM killer, a bug); should the restarted server-1 win the port before the
    // grabber does, it crashes again (at most 3 times).
    let victim = pid;
    for (let crash = 0; crash < 3 && !text.includes("grabbed"); crash++) {
      Deno.kill(victim, "SIGKILL");
      await Promise.race([until("grabbed"), sleep(3000)]);
      const again = [...up.stdout().matchAll(/server-1 restarted \(restart \d+\), pid (\d+)/g)];
      if (again.length > 0) victim = Number(again.at(-1)![1]);
    }
    await until("grabbed");
    await until("released"); // 3 s later
    await said.cancel();
    await grabber.status;
    // The port is free again: a supervisor with restart = "always" brings server-1 back.
    const address = `127.0.0.1:${port}`;
    const end = performance.now() + 15_000;
    let back = false;
    while (!back && performance.now() < end) {
      back = await answers(address, "server-1");
      if (!back) await sleep(250);
    }
    assert.ok(
      back,
      `server-1 not back 15 s after its port was freed:\n${up.stdout().slice(-1500)}`,
    );
  } finally {
    try {
      grabber?.kill("SIGKILL");
    } catch { /* gone */ }
    await grabber?.status;
    await up.stop();
    await Deno.remove(file);
    await Deno.remove(state, { recursive: true });
  }
});
