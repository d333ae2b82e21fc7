/**
 * hostile44c H-C7: `--check-interval 0` is taken: in `--mode tcp` a TCP
 * check (a connect and a close) of each backend goes out back to back,
 * about 250 a second a backend (2,572 TIME_WAITs to two nginx in 5 s, 13 %
 * of a core; a PostgreSQL behind it forks a process a connect), and in
 * RPC mode a `sys.ping` whose timeout is the interval, 0 ms, takes healthy
 * servers out every second or so. HAProxy refuses `inter 0` ("invalid
 * value 0 for argument 'inter'"). A user who means "no checks" (as
 * `--idle-timeout 0` means no timeout) is told so at once.
 */
import assert from "node:assert/strict";
import { rawBackend } from "./helpers/tcp_backend.ts";
import { spawnDist } from "./helpers/dist.ts";
import { sleep } from "./helpers/raw.ts";

Deno.test("balancer --mode tcp --check-interval 0: refused with a dist: line, or no check at all, never checks back to back (hostile44c H-C7)", async () => {
  let connects = 0;
  const backend = rawBackend(async (conn) => {
    connects++;
    await conn.read(new Uint8Array(16));
  });
  const lb = spawnDist([
    "balancer",
    "--mode",
    "tcp",
    "--port",
    "0",
    "--check-interval",
    "0",
    "--backends",
    backend.address,
  ]);
  try {
    const exited = await Promise.race([lb.child.status.then((s) => s.code), sleep(3000)]);
    if (typeof exited === "number") {
      // Refused: a usage error says which flag.
      assert.equal(exited, 2, lb.stderr());
      assert.match(lb.stderr(), /^dist: .*--check-interval/m);
    } else {
      // Running: its checks of the one backend in 3 s are what a sane interval gives.
      assert.ok(connects <= 10, `${connects} checks of the backend in 3 s`);
    }
  } finally {
    try {
      lb.child.kill("SIGKILL");
    } catch {
      // Exited.
    }
    await lb.child.status;
    await lb.read;
    await backend.close();
  }
});
