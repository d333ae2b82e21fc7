/**
 * Authentication with real `dist` processes: a listener given `--token`
 * lets in only dialers that send it, and every dialer of a topology whose
 * `[defaults]` set a token carries it, while the token never shows on a
 * command line.
 */
import assert from "node:assert/strict";
import { freePort, runDist, startDist } from "./helpers/dist.ts";
import { assertUserError } from "./helpers/cli.ts";
import { linesOf, topologyFile, withUp } from "./helpers/up.ts";
import { waitFor } from "./helpers/raw.ts";

const TOKEN = "Zq0-test-token-3b9f1c";

Deno.test("a server with --token answers clients that send it (flag or DIST_TOKEN) and refuses the rest", async () => {
  const server = await startDist(["server", "--port", "0", "--token", TOKEN]);
  try {
    const at = server.address;
    const right = await runDist(["client", "--connect", at, "--token", TOKEN, "add", "2", "5"]);
    assert.equal(right.stdout.trim(), "7", right.stderr);
    const env = await runDist(["client", "--connect", at, "echo", "hi"], {
      env: { DIST_TOKEN: TOKEN },
    });
    assert.equal(env.stdout.trim(), "hi", env.stderr);
    const none = await runDist(["client", "--connect", at, "echo", "hi"]);
    assert.equal(
      assertUserError(none, 1, "no token"),
      `dist: UNAUTHORIZED: ${at} refused the hello: Credentials required: a token, or a user and password`,
    );
    const wrong = await runDist(["client", "--connect", at, "echo", "hi"], {
      env: { DIST_TOKEN: "guess" },
    });
    assert.equal(
      assertUserError(wrong, 1, "wrong token"),
      `dist: UNAUTHORIZED: ${at} refused the hello: Invalid credentials`,
    );
    await waitFor(() => server.stderr().includes("wrong token"), 5000, "the refusal's line");
    const refusals = server.stderr().split("\n").filter((l) => l.includes("Refused a hello"));
    assert.equal(refusals.length, 2, server.stderr());
    assert.match(
      refusals[0],
      /\[WRN\].*Refused a hello from 127\.0\.0\.1:\d+ \(client client-\d+\): no credentials$/,
    );
    assert.match(
      refusals[1],
      /Refused a hello from 127\.0\.0\.1:\d+ \(client client-\d+\): wrong token$/,
    );
    assert.ok(!server.stderr().includes(TOKEN) && !server.stderr().includes("guess"));
    const stats = await runDist(["client", "--connect", at, "--token", TOKEN, "sys.stats"]);
    const auth = JSON.parse(stats.stdout).auth;
    assert.deepEqual({ ...auth, accepted: auth.accepted >= 3 }, {
      accepted: true,
      refused: 2,
      throttled: 0,
      addresses: 1,
    });
  } finally {
    await server.stop();
  }
});

Deno.test("dist up with a token in [defaults]: every dialer carries it, no command line shows it", async () => {
  const [b1, b2, bal, wp, brk] = [freePort(), freePort(), freePort(), freePort(), freePort()];
  const topology = [
    "[defaults]",
    `token = "${TOKEN}"`,
    "[[binder]]",
    'name = "b1"',
    `port = ${b1}`,
    'peers = ["b1", "b2"]',
    "[[binder]]",
    'name = "b2"',
    `port = ${b2}`,
    'peers = ["b1", "b2"]',
    "[[server]]",
    'name = "compute"',
    "replicas = 2",
    "port = 0",
    'service = "compute"',
    'binders = ["b1", "b2"]',
    "[[balancer]]",
    `port = ${bal}`,
    `worker_port = ${wp}`,
    'backends = ["compute"]',
    "[[worker]]",
    'balancer = "balancer"',
    "[[broker]]",
    `port = ${brk}`,
    "[[producer]]",
    'broker = "broker"',
    'topic = "/t"',
    'value = "42"',
    'restart = "no"',
    "[[client]]",
    'name = "resolver"',
    'service = "compute"',
    'binders = ["b2"]',
    "random = 5",
    "json = true",
    "[[client]]",
    'name = "via-balancer"',
    'connect = "balancer"',
    "random = 20",
    "json = true",
  ].join("\n");
  await withUp(topology, [], async (up, file) => {
    await up.waitFor(/^dist up: All \d+ ready/m);
    // Each child's command line, as ps shows it to every user of the machine.
    for (const pid of up.pids()) {
      const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "");
      assert.ok(!cmdline.includes(TOKEN), `pid ${pid}: ${cmdline.replaceAll("\0", " ")}`);
    }
    await up.waitFor(/^via-balancer +\| .*"summary"/m);
    await up.waitFor(/^resolver +\| .*"summary"/m);
    const out = up.stdout();
    assert.equal(JSON.parse(linesOf(out, "resolver").at(-1)!).summary.ok, 5, out);
    const summary = JSON.parse(linesOf(out, "via-balancer").at(-1)!).summary;
    assert.equal(summary.ok, 20, out);
    assert.ok(Object.keys(summary.by).length >= 2, `servers and the worker answer: ${out}`);
    // The consumer side of the broker, and dist status, with the token; without it, refused.
    const consumed = await runDist(
      ["consumer", "--broker", `127.0.0.1:${brk}`, "--topic", "/t", "--count", "1"],
      { env: { DIST_TOKEN: TOKEN }, timeoutMs: 10_000 },
    );
    assert.equal(consumed.stdout.trim(), "/t 42 (retained)", consumed.stderr);
    const status = await runDist(["status", file, "--json"], { env: { DIST_TOKEN: "" } });
    const rows = status.stdout.trim().split("\n").map((l) => JSON.parse(l));
    const b1Row = rows.find((r) => r.instance === "b1");
    assert.equal(b1Row?.state, "up", status.stdout);
    assert.equal(b1Row?.figures.ready, true, "sys.stats answered the launcher with the token");
    const outsider = await runDist(["client", "--connect", `127.0.0.1:${bal}`, "echo", "x"]);
    assert.match(assertUserError(outsider, 1, "outsider"), /UNAUTHORIZED/);
    assert.doesNotMatch(up.stdout() + up.stderr(), /Refused a hello from .*\((?!client client-)/);
  });
});

Deno.test("dist up --dry-run shows no token in the command lines it prints", async () => {
  const file = await topologyFile(`[defaults]\ntoken = "${TOKEN}"\n[[server]]\nport = 0\n`);
  try {
    const dry = await runDist(["up", file, "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.ok(!dry.stdout.includes(TOKEN), dry.stdout);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("dist passwd writes a users file a server checks: right password or the user's token in, wrong out", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/users.toml`;
  try {
    // Permissions written first: dist passwd keeps them.
    await Deno.writeTextFile(
      file,
      '# who may do what\n[users.alice]\nmethods = ["add"]\n\n[users.bot]\nmethods = ["echo"]\n',
      { mode: 0o600 },
    );
    const set = await runDist(["passwd", file, "alice", "--cost", "10"], { stdin: "s3cret!\n" });
    assert.equal(set.code, 0, set.stderr);
    const made = await runDist(["passwd", file, "bot", "--token"]);
    assert.equal(made.code, 0, made.stderr);
    const botToken = made.stdout.trim();
    assert.match(botToken, /^[A-Za-z0-9_-]{43}$/);
    const text = await Deno.readTextFile(file);
    assert.ok(!text.includes("s3cret!") && !text.includes(botToken), text);
    assert.match(
      text,
      /^# who may do what\n\[users\.alice\]\npassword = "\$scrypt\$ln=10,r=8,p=1\$[^"]+"\nmethods = \["add"\]\n\n\[users\.bot\]\ntoken = "\$sha256\$[^"]+"\nmethods = \["echo"\]\n$/,
    );
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    const server = await startDist(["server", "--port", "0", "--users", file]);
    try {
      const at = server.address;
      const alice = await runDist(["client", "--connect", at, "add", "2", "5"], {
        env: { DIST_USER: "alice", DIST_PASSWORD: "s3cret!" },
      });
      assert.equal(alice.stdout.trim(), "7", alice.stderr);
      const bot = await runDist(["client", "--connect", at, "--token", botToken, "echo", "hi"]);
      assert.equal(bot.stdout.trim(), "hi", bot.stderr);
      for (
        const env of [
          { DIST_USER: "alice", DIST_PASSWORD: "wrong" } as Record<string, string>,
          { DIST_USER: "mallory", DIST_PASSWORD: "s3cret!" },
          { DIST_TOKEN: "not-the-token" },
        ]
      ) {
        const refused = await runDist(["client", "--connect", at, "echo", "x"], { env });
        assert.equal(
          assertUserError(refused, 1, JSON.stringify(env)),
          `dist: UNAUTHORIZED: ${at} refused the hello: Invalid credentials`,
        );
      }
      const half = await runDist(["client", "--connect", at, "--user", "alice", "echo", "x"]);
      assert.equal(
        assertUserError(half, 2, "user without password"),
        "dist: --user alice needs --password (or DIST_PASSWORD)",
      );
      assert.ok(!server.stderr().includes("s3cret!") && !server.stderr().includes(botToken));
    } finally {
      await server.stop();
    }
    // A bad users file stops the role before it listens, naming the line.
    await Deno.writeTextFile(file, '[users.alice]\npassword = "plain"\n', { mode: 0o600 });
    const bad = await runDist(["server", "--port", "0", "--users", file]);
    assert.equal(
      assertUserError(bad, 2, "bad users file"),
      `dist: Cannot load ${file}: line 2: users.alice.password: must be "$scrypt$ln=N,r=N,p=N$SALT$HASH" as dist passwd writes it`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dist up with only a users file: instances dial with their user, and each is ready though the launcher has no credential", async () => {
  const dir = await Deno.makeTempDir();
  const users = `${dir}/users.toml`;
  try {
    await Deno.writeTextFile(
      users,
      '[users.app]\nmethods = ["add", "sub", "mul", "div", "sum"]\n',
      { mode: 0o600 },
    );
    const set = await runDist(["passwd", users, "app", "--cost", "10"], { stdin: "app-pass\n" });
    assert.equal(set.code, 0, set.stderr);
    const topology = [
      "[[server]]",
      "port = 0",
      `users = "${users}"`,
      "[[client]]",
      'connect = "server"',
      'user = "app"',
      'password = "app-pass"',
      "random = 3",
      "json = true",
      'restart = "no"',
    ].join("\n");
    await withUp(topology, [], async (up, file) => {
      await up.waitFor(/^client +\| .*"summary"/m);
      // dist status without a credential: the server is up, and it says why it has no figures.
      const status = await runDist(["status", file, "--json"]);
      const row = status.stdout.trim().split("\n").map((l) => JSON.parse(l))
        .find((r) => r.instance === "server");
      assert.equal(row?.state, "up", status.stdout);
      assert.match(row.note, /^refused dist status: .*Credentials required.*\(set DIST_TOKEN/);
      const out = up.stdout();
      const summary = JSON.parse(linesOf(out, "client").at(-1)!).summary;
      assert.equal(summary.ok, 3, out);
      for (const pid of up.pids()) {
        const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "");
        assert.ok(!cmdline.includes("app-pass"), cmdline.replaceAll("\0", " "));
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the client library sends credentials where asked: connect() and binders()", async () => {
  const { binder: binderContract, binders, connect, ops } = await import("../clients/mod.ts");
  const server = await startDist(["server", "--port", "0", "--token", TOKEN]);
  const binder = await startDist(["binder", "--port", "0", "--token", TOKEN]);
  try {
    const conn = await connect(server.address, { credentials: { token: TOKEN } });
    assert.equal(await conn.request(ops.methods.add, { a: 3, b: 4 }), 7);
    conn.close();
    await assert.rejects(
      connect(server.address),
      (e: Error) =>
        e.message ===
          `${server.address} refused the hello: Credentials required: a token, or a user and password`,
    );
    const client = binders([binder.address], { credentials: { token: TOKEN } });
    const reg = binderContract.methods.register;
    await client.call(reg, { service: "lib", host: "127.0.0.1", port: 9 });
    assert.equal((await client.call(binderContract.methods.lookup, { service: "lib" })).port, 9);
    client.close();
  } finally {
    await server.stop();
    await binder.stop();
  }
});
