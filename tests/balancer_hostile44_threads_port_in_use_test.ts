/**
 * hostile44c H-C6: `--threads N` binds its ports with SO_REUSEPORT, so a
 * second `dist balancer --threads 2 --port P` started while one runs
 * there (a restart before the old one left, two entries for one port)
 * does not fail "in use" as with one thread: both run, and the kernel
 * splits new connections between them (23 and 17 of 40), each with its own
 * backends and options. A port of another process is the user's mistake,
 * said at once: `dist: … --port P is in use` and a non-zero exit.
 */
import assert from "node:assert/strict";
import { startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { distCommand } from "./helpers/dist.ts";

Deno.test("balancer --threads 2 on a port another balancer --threads 2 holds: refused as in use, not shared (hostile44c H-C6)", async () => {
  const servers = await startServers(1);
  const first = await startBalancer(servers, ["--threads", "2"]);
  const port = first.address.split(":")[1];
  const { exe, args } = distCommand([
    "balancer",
    "--port",
    port,
    "--worker-port",
    "0",
    "--threads",
    "2",
    "--backends",
    servers[0].address,
  ]);
  const second = new Deno.Command(exe, { args, stdout: "null", stderr: "piped" }).spawn();
  let stderr = "";
  const reading = (async () => {
    for await (const chunk of second.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  try {
    // Either it exits (in use), or it says it accepts: whichever comes first, 15 s at most.
    const exited = await Promise.race([
      second.status.then((s) => s.code),
      new Promise<undefined>((resolve) => {
        const t0 = performance.now();
        const poll = setInterval(() => {
          if (stderr.includes("Accepting on 2 threads") || performance.now() - t0 > 15_000) {
            clearInterval(poll);
            resolve(undefined);
          }
        }, 20);
      }),
    ]);
    assert.ok(
      exited !== undefined && exited !== 0,
      `a second balancer on port ${port}: ${
        exited === undefined ? "running, sharing the port" : `exit ${exited}`
      }\n${stderr}`,
    );
    assert.match(stderr, /in use/);
  } finally {
    try {
      second.kill("SIGKILL");
    } catch {
      // Exited already.
    }
    await second.status;
    await reading;
    await stopAll([first, ...servers]);
  }
});
