/**
 * Scenario tests of `dist up` supervision: a killed server comes back on
 * its port, `dist status` counts the restart, and an instance that keeps
 * failing backs off and is reported as a crash loop.
 */
import assert from "node:assert/strict";
import { dial } from "../wire/mod.ts";
import { freePort, runDist } from "./helpers/dist.ts";
import { sleep } from "./helpers/raw.ts";
import { stopCleanly, topologyFile, withUp } from "./helpers/up.ts";

/** Whether `port` answers `echo` within a short timeout. */
async function answers(port: number): Promise<boolean> {
  try {
    const peer = await dial({ host: "127.0.0.1", port }, {
      role: "client",
      name: "test",
      connectTimeoutMs: 300,
      timeoutMs: 300,
    });
    try {
      return await peer.call("echo", { text: "hi" }) === "hi";
    } finally {
      peer.close();
    }
  } catch {
    return false;
  }
}

const TWO_SERVERS = [
  "[[server]]",
  'name = "server"',
  "replicas = 2",
  "port = 0",
  "[[client]]",
  'connect = "server-1"',
  "random = 2",
].join("\n");

Deno.test("a server killed with SIGKILL is restarted, serves again within 2 s, and status counts it", async () => {
  await withUp(TWO_SERVERS, [], async (up, file) => {
    const [, port] = (await up.waitFor(/server-1 ready at 127\.0\.0\.1:(\d+)/)).map(Number);
    await up.waitFor(/client exited \(exit code 0\)/);
    const [, pid] = (await up.waitFor(/server-1 started, pid (\d+)/)).map(Number);
    assert.ok(await answers(port));

    Deno.kill(pid, "SIGKILL");
    const killed = performance.now();
    while (!(await answers(port))) {
      assert.ok(
        performance.now() - killed < 2000,
        `not serving 2 s after the kill:\n${up.stdout()}`,
      );
      await sleep(20);
    }
    assert.match(up.stdout(), /server-1 exited \(signal SIGKILL\); restarting it/);
    const [, newPid] = (await up.waitFor(/server-1 restarted \(restart 1\), pid (\d+)/)).map(
      Number,
    );

    const status = await runDist(["status", file, "--json"]);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    const rows = Object.fromEntries(
      status.stdout.trim().split("\n").map((l) => JSON.parse(l)).map((r) => [r.instance, r]),
    );
    assert.equal(rows["server-1"].state, "up");
    assert.equal(rows["server-1"].pid, newPid);
    assert.equal(rows["server-1"].restarts, 1);
    assert.equal(rows["server-1"].address, `127.0.0.1:${port}`);
    assert.equal(rows["server-2"].restarts, 0);
    assert.ok(rows["server-2"].rss_bytes > 1024 * 1024);
    assert.equal(typeof rows["server-2"].figures.requests, "number");
    assert.deepEqual(
      [rows.client.state, rows.client.last_exit, rows.client.restarts],
      ["exited", "exit code 0", 0],
    );

    const table = await runDist(["status", file]);
    assert.match(
      table.stdout,
      /^INSTANCE +ROLE +ADDRESS +STATE +PID +UPTIME +RESTARTS +RSS +FIGURES$/m,
    );
    assert.match(
      table.stdout,
      new RegExp(
        `^server-1 +server +127\\.0\\.0\\.1:\\d+ +up +${newPid} +\\d+s +1 +[\\d.]+ MiB +.*requests=`,
        "m",
      ),
    );
    assert.match(table.stdout, /^client +client +- +exited \(exit code 0\) +- /m);

    // A second launcher of the same file would fight over its ports.
    const twin = await runDist(["up", file]);
    assert.equal(twin.code, 2, twin.stdout + twin.stderr);
    assert.match(twin.stderr, /^dist: dist up of .* already runs here \(pid \d+\)/);
    await stopCleanly(up);
  });
});

Deno.test("dist status says down, exit 1, for a topology nobody runs", async () => {
  const file = await topologyFile(`[[server]]\nport = ${freePort()}\n[[client]]\nrandom = 1\n`);
  try {
    const status = await runDist(["status", file]);
    assert.equal(status.code, 1, status.stderr);
    assert.match(status.stdout, /^server +server +127\.0\.0\.1:\d+ +down +- +- +- +-/m);
    assert.match(status.stdout, /^client +client +- +unknown/m);
    assert.match(status.stdout, /No dist up of .* runs on this machine/);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("an instance that keeps failing backs off 1 s, then 2 s, and is reported as a crash loop", async () => {
  const flaky = `[[client]]\nname = "flaky"\nconnect = "127.0.0.1:${freePort()}"\n` +
    'random = 1\nrestart = "always"\n';
  await withUp(flaky, ["--duration", "20s"], async (up) => {
    await up.waitFor(/flaky exited \(exit code 1\); restarting it$/m);
    await up.waitFor(/flaky exited \(exit code 1\); restarting it in 1s/);
    const t1 = performance.now();
    await up.waitFor(
      /flaky exited \(exit code 1\): crash loop \(3 quick exits in a row\); restarting it in 2s/,
    );
    // The second wait lasted about a second (plus a start): the launcher did not spin.
    assert.ok(performance.now() - t1 >= 900, "backed off at least 1 s");
    const restarts = up.stdout().match(/flaky restarted/g)?.length ?? 0;
    assert.ok(restarts <= 3, `few restarts while backing off:\n${up.stdout()}`);
    // Stopped by us while it backs off: a clean stop.
    await stopCleanly(up);
  });
});
