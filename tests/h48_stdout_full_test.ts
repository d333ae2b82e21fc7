/**
 * hostile h48 P5: an output that fails (a full disk: `dist consumer > log`
 * when the disk fills; here /dev/full, ENOSPC) ends the consumer with an
 * uncaught error, `error: Uncaught (in promise) Error: No space left on
 * device (os error 28)` and Deno's stack (roles/_role.ts StdoutLines
 * #drain), and the client and the producer with a JavaScript stack trace
 * under `dist: Error: No space left on device` (`at writeSync … at
 * writeStdout (roles/_role.ts:85)`). A closed pipe (EPIPE) is handled
 * (`dist consumer | head -3` exits 0); other write errors are not. GNU
 * tools say `write error: No space left on device` and exit 1. Asked: one
 * `dist:` line naming the failure, no stack, a non-zero exit.
 */
import assert from "node:assert/strict";
import { distCommand, runDist } from "./helpers/dist.ts";
import { startBroker } from "./helpers/broker.ts";
import { startServerRole } from "./helpers/server_role.ts";

const RUN_MS = 15_000;

/** Runs `dist ...args` with its standard output on /dev/full. */
async function runToFull(
  args: string[],
): Promise<{ code: number; stderr: string; timedOut: boolean }> {
  const { exe, args: argv } = distCommand(args);
  const child = new Deno.Command("sh", {
    args: ["-c", `exec "$0" "$@" > /dev/full`, exe, ...argv],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // Exited just now.
    }
  }, RUN_MS);
  try {
    const { code, stderr } = await child.output();
    return { code, stderr: new TextDecoder().decode(stderr), timedOut };
  } finally {
    clearTimeout(timer);
  }
}

function judged(what: string, run: { code: number; stderr: string; timedOut: boolean }): string[] {
  const wrong: string[] = [];
  if (run.timedOut) wrong.push(`${what}: still running after ${RUN_MS} ms`);
  else if (run.code === 0) wrong.push(`${what}: exit 0 though nothing could be written`);
  if (/Uncaught|^\s+at /m.test(run.stderr)) {
    wrong.push(`${what}: a crash or a stack trace: ${run.stderr.slice(0, 300)}`);
  }
  if (!/^dist: .*No space left on device/m.test(run.stderr)) {
    wrong.push(`${what}: no "dist: … No space left on device" line`);
  }
  return wrong;
}

Deno.test("an output that fails (ENOSPC) is said in one dist: line, with no crash or stack (h48 P5)", async () => {
  const broker = await startBroker();
  const server = await startServerRole();
  try {
    const retained = await runDist([
      "producer",
      "-b",
      broker.address,
      "--topic",
      "/t",
      "--value",
      "1",
    ]);
    assert.equal(retained.code, 0, retained.stderr);
    const wrong = [
      ...judged(
        "consumer",
        await runToFull(["consumer", "-b", broker.address, "--topic", "/t", "--count", "1"]),
      ),
      ...judged(
        "client",
        await runToFull(["client", "-c", `127.0.0.1:${server.port}`, "add", "1", "2"]),
      ),
      ...judged(
        "producer",
        await runToFull(["producer", "-b", broker.address, "--topic", "/t", "--value", "2"]),
      ),
    ];
    assert.deepEqual(wrong, []);
  } finally {
    await server.stop();
    await broker.stop();
  }
});
