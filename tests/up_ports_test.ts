/**
 * A port held by another process, as a user meets it: `dist status` says
 * who answers there instead of "down"; `dist up` says so once, does not
 * start (or restart) the instance in a loop, and exits 1. A launcher whose
 * instances never all became ready exits 1, with `--duration` too.
 */
import assert from "node:assert/strict";
import { freePort, runDist, startDist } from "./helpers/dist.ts";
import { endsWith, startUp, topologyFile, withUp } from "./helpers/up.ts";
import { sleep } from "./helpers/raw.ts";

/** Holds a port as a process that is not dist would: it accepts and says nothing. */
function holdPort(): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  (async () => {
    try {
      for await (const conn of listener) held.push(conn);
    } catch {
      // Closed.
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      listener.close();
      for (const conn of held) conn.close();
    },
  };
}

Deno.test("dist status says a port another process holds answers, but not as the instance", async () => {
  const other = holdPort();
  const dist = await startDist(["server", "--port", "0", "--name", "stranger"]);
  const file = await topologyFile(
    `[[server]]\nname = "server-1"\nport = ${other.port}\n` +
      `[[server]]\nname = "server-2"\nport = ${dist.port}\n` +
      `[[server]]\nname = "server-3"\nport = ${freePort()}\n`,
  );
  try {
    const table = await runDist(["status", file, "--timeout", "500ms"]);
    assert.equal(table.code, 1, table.stderr);
    assert.match(table.stdout, /^server-1 +server +127\.0\.0\.1:\d+ +taken +- /m);
    assert.match(table.stdout, /^server-2 +server +127\.0\.0\.1:\d+ +taken +- /m);
    assert.match(table.stdout, /^server-3 +server +127\.0\.0\.1:\d+ +down +- /m);
    assert.match(
      table.stdout,
      new RegExp(`^server-1: port ${other.port} answers, but not as server-1 \\(.+\\)$`, "m"),
    );
    assert.match(
      table.stdout,
      new RegExp(`^server-2: port ${dist.port} answers as stranger, not as server-2$`, "m"),
    );
    const json = await runDist(["status", file, "--json", "--timeout", "500ms"]);
    const rows = json.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(rows.map((r) => [r.instance, r.state]), [
      ["server-1", "taken"],
      ["server-2", "taken"],
      ["server-3", "down"],
    ]);
    assert.match(rows[0].note, /^port \d+ answers, but not as server-1/);
  } finally {
    other.close();
    await dist.stop();
    await Deno.remove(file);
  }
});

Deno.test("dist up says once that a port is held by another process, starts nothing in a loop, exits 1", async () => {
  const other = holdPort();
  const file = await topologyFile(
    `[[server]]\nport = ${other.port}\n[[client]]\nconnect = "server"\nrandom = 1\n`,
  );
  try {
    const t0 = performance.now();
    const up = startUp([file, "--duration", "20s"]);
    const { stdout, stderr } = await endsWith(up, 1);
    // At once: not after a crash loop, nor at the end of --duration.
    assert.ok(performance.now() - t0 < 15_000, stdout);
    const said = `server cannot listen on 127.0.0.1:${other.port}: in use by another process`;
    assert.equal(stdout.split("in use by another process").length - 1, 1, stdout);
    assert.match(stdout, new RegExp(`dist up: ${said}; not starting it`));
    assert.doesNotMatch(stdout, /server started|restarting/, stdout);
    assert.equal(stderr.trim(), `dist: ${said}`);
  } finally {
    other.close();
    await Deno.remove(file);
  }
});

Deno.test("dist up --duration exits 1 when an instance never became ready", async () => {
  // The client waits for a server on another host that nobody runs.
  const file = await topologyFile(
    `[[server]]\nhost = "127.0.0.2"\nport = ${freePort()}\n` +
      `[[client]]\nhost = "127.0.0.1"\nconnect = "server"\nrandom = 1\n`,
  );
  try {
    const up = startUp([file, "--on", "127.0.0.1", "--duration", "1s"]);
    const { stdout, stderr } = await endsWith(up, 1);
    assert.match(stdout, /dist up: Stopping \(--duration 1s is over\)/);
    assert.equal(stderr.trim(), "dist: client never became ready");
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("an instance whose port another process took while it was down is said, tried again with its backoff, and back once the port is free (hostile45c K-C7)", async () => {
  const topology = '[[server]]\nname = "server"\nreplicas = 2\nport = 0\n';
  await withUp(topology, [], async (up) => {
    const [, port] = (await up.waitFor(/server-1 ready at 127\.0\.0\.1:(\d+)/)).map(Number);
    const [, first] = (await up.waitFor(/server-1 started, pid (\d+)/)).map(Number);
    Deno.kill(first, "SIGKILL");
    const [, second] = (await up.waitFor(/server-1 restarted \(restart 1\), pid (\d+)/)).map(
      Number,
    );
    // A second quick exit backs off a second: time for another process to take the port.
    Deno.kill(second, "SIGKILL");
    await up.waitFor(/server-1 exited \(signal SIGKILL\); restarting it in 1s/);
    let other: Deno.Listener | undefined;
    for (let tries = 0; other === undefined; tries++) {
      try {
        other = Deno.listen({ hostname: "127.0.0.1", port });
      } catch (err) {
        // The killed process's socket may take a moment to go.
        if (!(err instanceof Deno.errors.AddrInUse) || tries > 100) throw err;
        await sleep(10);
      }
    }
    try {
      const said = `server-1 cannot listen on 127.0.0.1:${port}: in use by another process`;
      await up.waitFor(new RegExp(`dist up: ${said}; not starting it now`));
      // A failed start, tried again with the crash loop's backoff (before: never again).
      await up.waitFor(/server-1 exited \(exit code 1\)[^\n]*; restarting it in \d+s/);
      assert.equal(up.stdout().split("server-1 ready at").length - 1, 1, up.stdout());
    } finally {
      other.close();
    }
    // The port free again: server-1 is back at its next try.
    const deadline = performance.now() + 20_000;
    while (up.stdout().split("server-1 ready at").length - 1 < 2) {
      assert.ok(performance.now() < deadline, up.stdout());
      await sleep(100);
    }
    const result = await up.stop();
    assert.equal(result.code, 0, result.stdout + result.stderr);
  });
});
