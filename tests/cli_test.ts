/**
 * Scenario tests of the command line as a user meets it (issue 10): flags,
 * topology files, conflicting input and the errors they give. Real `dist`
 * processes on port 0, stopped in `finally`.
 */
import assert from "node:assert/strict";
import { lines, runDist, startDist } from "./helpers/dist.ts";
import { assertUserError, tempFile } from "./helpers/cli.ts";

/** Whether a TCP connect to `port` on 127.0.0.1 is refused right now. */
async function refused(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return false;
  } catch {
    return true;
  }
}

// The client's default address is the default topology's balancer (5556). The
// test only dials it, and only when nothing listens there.
const DEFAULT_FREE = await refused(5556);

Deno.test({
  name: "a refused connection to the client's default address says what to try",
  ignore: !DEFAULT_FREE,
  async fn() {
    const r = await runDist(["client", "add", "3", "4"]);
    assert.equal(
      assertUserError(r, 1, "client add 3 4"),
      "dist: UNAVAILABLE: Cannot connect to 127.0.0.1:5556 (nothing listening; " +
        "is the balancer up? give --connect HOST:PORT)",
    );
  },
});

Deno.test("the client takes --connect, not --port, -p or --host", async () => {
  const [port, short, host] = await Promise.all([
    runDist(["client", "--port", "5557", "add", "3", "4"]),
    runDist(["client", "-p", "5557", "add", "3", "4"]),
    runDist(["client", "--host", "127.0.0.1", "add", "3", "4"]),
  ]);
  assert.match(
    assertUserError(port, 2, "--port"),
    /^dist: Unknown flag --port for client: .*--connect HOST:PORT/,
  );
  assert.match(
    assertUserError(short, 2, "-p"),
    /^dist: Unknown flag -p for client: .*--connect HOST:PORT/,
  );
  assert.match(
    assertUserError(host, 2, "--host"),
    /^dist: Unknown flag --host for client: .*--connect/,
  );
});

Deno.test("--config FILE --name INSTANCE works for instances named like roles", async () => {
  const server = await startDist(["server", "--port", "0"]);
  const file = await tempFile(
    "cluster.toml",
    [
      "[[server]]",
      'name = "server"',
      `port = ${server.port}`,
      "",
      "[[client]]",
      'name = "client"',
      'connect = "server"',
      "",
    ].join("\n"),
  );
  try {
    const [noRole, withRole, roleFlag, noName, twoRoles] = await Promise.all([
      // README's example: the value of --name is never a role.
      runDist(["--config", file.path, "--name", "client", "add", "3", "4"]),
      runDist(["client", "--config", file.path, "--name", "client", "mul", "3", "4"]),
      runDist(["--name", "client", "--role", "client", "--config", file.path, "sum", "1,2"]),
      runDist(["--config", file.path]),
      runDist(["server", "--role", "client", "--connect", server.address, "add", "1", "2"]),
    ]);
    assert.equal(noRole.stdout, "7\n", noRole.stderr);
    assert.equal(withRole.stdout, "12\n", withRole.stderr);
    assert.equal(roleFlag.stdout, "3\n", roleFlag.stderr);
    assert.equal(
      assertUserError(noName, 2, "--config without --name"),
      "dist: --config needs --name INSTANCE: one of server, client",
    );
    assert.equal(
      assertUserError(twoRoles, 2, "server --role client"),
      "dist: Two roles given: server and --role client: give one",
    );
  } finally {
    await server.stop();
    await file.remove();
  }
});

Deno.test("a topology file with several problems lists them all, one `dist:` line each", async () => {
  const file = await tempFile(
    "bad.toml",
    [
      "[[server]]",
      'name = "s1"',
      "prot = 5557",
      "",
      "[[client]]",
      'name = "c1"',
      'conect = "s1"',
      "random = 0",
      "",
    ].join("\n"),
  );
  try {
    const r = await runDist(["--config", file.path, "--name", "s1"]);
    assertUserError(r, 2, "bad topology", 3);
    const where = `dist: Cannot load ${file.path}: `;
    assert.deepEqual(lines(r.stderr), [
      `${where}line 3: server.prot: unknown key (did you mean "port"?)`,
      `${where}line 7: client.conect: unknown key (did you mean "connect"?)`,
      `${where}line 8: client.random: must be at least 1, got 0`,
    ]);
  } finally {
    await file.remove();
  }
});

Deno.test("range errors say what the value must be", async () => {
  const [random, liveness] = await Promise.all([
    runDist(["client", "--random", "0"]),
    runDist(["server", "--liveness", "0"]),
  ]);
  assert.equal(
    assertUserError(random, 2, "--random 0"),
    "dist: --random: must be at least 1, got 0",
  );
  assert.equal(
    assertUserError(liveness, 2, "--liveness 0"),
    "dist: --liveness: must be at least 1, got 0",
  );
});

/** Whether this machine has an IPv6 loopback (CI containers may not). */
const IPV6 = (() => {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "IPv6 addresses print with brackets (needs an IPv6 loopback)",
  ignore: !IPV6,
  fn: async () => {
    const server = await startDist(["server", "--host", "::1", "--port", "0"]);
    try {
      const m = server.stderr().match(/Listening on \[::1\]:(\d+)/);
      assert.ok(m, `no bracketed address in:\n${server.stderr()}`);
      const address = `[::1]:${m[1]}`;
      const r = await runDist(["client", "--connect", address, "--json", "add", "3", "4"]);
      assert.equal(JSON.parse(r.stdout).result, 7, r.stderr);
      assert.equal(JSON.parse(r.stdout).by, `server-${m[1]}`);
      const [busy, refused] = await Promise.all([
        runDist(["server", "--host", "::1", "--port", m[1]]),
        runDist(["client", "--connect", "[::1]:1", "add", "1", "2"]),
      ]);
      assert.match(assertUserError(busy, 1, "busy"), /Cannot listen on \[::1\]:\d+: /);
      assert.match(assertUserError(refused, 1, "refused"), /Cannot connect to \[::1\]:1 /);
    } finally {
      await server.stop();
    }
  },
});
