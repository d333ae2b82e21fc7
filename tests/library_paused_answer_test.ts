/**
 * The library, hostile47 Q13: an answer that came while the calling process
 * was paused (SIGSTOP here; a long GC or a blocked loop alike) is taken,
 * not failed TIMEOUT because the call's timer fired first on resume.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** Runs the caller; `pause` is called once it has sent; returns its outcome line. */
async function caller(
  address: string,
  sleepMs: number,
  timeoutMs: number,
  pause: (pid: number) => Promise<void>,
): Promise<{ ok?: boolean; code?: string; message?: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "tests/helpers/paused_caller.ts",
      address,
      String(sleepMs),
      String(timeoutMs),
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const line = async (n: number) => {
    while (text.split("\n").length <= n) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`caller ended after ${JSON.stringify(text)}`);
      text += value;
    }
    return text.split("\n")[n - 1];
  };
  try {
    assert.equal(await line(1), "sent");
    await pause(child.pid);
    return JSON.parse(await line(2));
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Ended.
    }
    await reader.cancel().catch(() => {});
    await child.status;
  }
}

Deno.test("library: an answer that came while the caller was stopped is taken, not TIMEOUT (hostile47 Q13)", async () => {
  const server = await startDist(["server", "--port", "0"]);
  try {
    // The answer comes 300 ms after the request; the caller is stopped from 100 ms to 2.5 s,
    // past its 1.5 s deadline: the answer waits in its socket, and the timer is due at resume.
    const outcomes = [];
    for (let i = 0; i < 3; i++) {
      outcomes.push(
        await caller(server.address, 300, 1500, async (pid) => {
          await new Promise((r) => setTimeout(r, 100));
          Deno.kill(pid, "SIGSTOP");
          await new Promise((r) => setTimeout(r, 2400));
          Deno.kill(pid, "SIGCONT");
        }),
      );
    }
    assert.deepEqual(outcomes.map((o) => o.ok ?? o.code), [true, true, true]);
    // An answer that truly comes after the deadline still fails TIMEOUT, on time.
    const late = await caller(server.address, 2000, 500, async () => {});
    assert.equal(late.code, "TIMEOUT", JSON.stringify(late));
  } finally {
    await server.stop();
  }
});
