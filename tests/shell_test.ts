/**
 * Scenario tests of how the client and server stop and read (issue 10): the
 * interactive shell on a pseudo-terminal (Ctrl-C, Ctrl-D), stdin from a file
 * or a pipe (SIGINT, `# comments`, a server restart), a closed stdout, a
 * second interrupt, and `--json` logs. Real processes, stopped in `finally`.
 */
import assert from "node:assert/strict";
import { dial } from "../wire/mod.ts";
import { distCommand, type DistProcess, lines, runDist, startDist } from "./helpers/dist.ts";
import { tempFile, waitServed, withServer } from "./helpers/cli.ts";
import { ptyUnavailable, startPty } from "./helpers/pty.ts";

/** Spawns `dist ...args` with piped stdio, for tests that signal it mid-run. */
function spawnDist(args: string[], stdin: "piped" | "null" = "null"): Deno.ChildProcess {
  const { exe, args: argv } = distCommand(args);
  return new Deno.Command(exe, { args: argv, stdin, stdout: "piped", stderr: "piped" }).spawn();
}

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const NO_PTY = await ptyUnavailable();
if (NO_PTY) console.warn(`shell_test: the pseudo-terminal tests are skipped: ${NO_PTY}`);

Deno.test({
  name:
    "the shell: Ctrl-C cancels a command and returns to the prompt; at an empty prompt it leaves",
  ignore: NO_PTY !== undefined,
  async fn() {
    await withServer(async (server) => {
      const shell = startPty(["client", "--connect", server.address]);
      try {
        const prompt = /dist> $/;
        await shell.waitFor(prompt);
        // A request that would take 3 s: cancelled at once, the shell carries on.
        let from = shell.screen().length;
        await shell.type("sleep 3000\r");
        await sleep(300);
        const t0 = performance.now();
        await shell.type("\x03");
        await shell.waitFor(/cancelled: sleep 3000\r?\n[\s\S]*dist> /, { from });
        assert.ok(performance.now() - t0 < 2500, "the cancel waited for the answer");
        from = shell.screen().length;
        await shell.type("add 1 2\r");
        await shell.waitFor(/\s3\r\n[\s\S]*dist> /, { from });
        // A long batch stops with a partial summary.
        from = shell.screen().length;
        await shell.type("random 100000\r");
        await shell.waitFor(/= -?[\d.]+ {2}\(server-\d+\)/, { from });
        await shell.type("\x03");
        await shell.waitFor(
          /\d+ requests?: \d+ ok, 0 errors; by: server-\d+ ×\d+ \(interrupted: \d+ not sent\)\r?\n[\s\S]*dist> /,
          { from },
        );
        // A line typed while a command runs is run after it, not lost.
        from = shell.screen().length;
        await shell.type("sleep 500\r");
        await shell.type("mul 6 7\r");
        await shell.waitFor(/\s500\r\n[\s\S]*\s42\r\n[\s\S]*dist> /, { from });
        // Ctrl-C drops a half-typed line; at an empty prompt it leaves, exit 0.
        from = shell.screen().length;
        await shell.type("div 1");
        await shell.type("\x03");
        await shell.waitFor(/\^C\r\n[\s\S]*dist> /, { from });
        await shell.type("\x03");
        assert.equal(await shell.status, 0, shell.screen());
        assert.doesNotMatch(shell.screen(), /Error|error:|readline was closed/);
      } finally {
        await shell.kill();
      }
    });
  },
});

Deno.test({
  name: "the shell: Ctrl-D leaves with exit 0, and a `# comment` is skipped",
  ignore: NO_PTY !== undefined,
  async fn() {
    await withServer(async (server) => {
      const shell = startPty(["client", "--connect", server.address]);
      try {
        await shell.waitFor(/dist> $/);
        const from = shell.screen().length;
        await shell.type("# not a method\r");
        await shell.type("sub 5 3\r");
        await shell.waitFor(/\s2\r\n[\s\S]*dist> /, { from });
        await shell.type("\x04");
        assert.equal(await shell.status, 0, shell.screen());
        assert.doesNotMatch(shell.screen().slice(from), /error/);
      } finally {
        await shell.kill();
      }
    });
  },
});

Deno.test("a piped client skips # comments and reconnects after a server restart", async () => {
  const first = await startDist(["server", "--port", "0"]);
  let second: DistProcess | undefined;
  const client = spawnDist(["client", "--connect", first.address], "piped");
  const writer = client.stdin.getWriter();
  const say = (line: string) => writer.write(new TextEncoder().encode(line + "\n"));
  const reader = client.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  /** Reads stdout until it has `n` lines (at most 10 s). */
  const untilLines = async (n: number) => {
    const deadline = Date.now() + 10_000;
    while (lines(text).length < n && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    return lines(text);
  };
  try {
    await say("# a comment line");
    await say("  # an indented one");
    await say("add 1 2");
    assert.deepEqual(await untilLines(1), ["3"]);
    await first.stop("SIGKILL");
    // Nothing listens now: that line fails, the session goes on.
    await say("add 2 2");
    assert.equal(
      (await untilLines(2))[1],
      `error UNAVAILABLE: Cannot connect to ${first.address} (nothing listening)`,
    );
    second = await startDist(["server", "--port", String(first.port)]);
    await say("add 3 3");
    await writer.close();
    assert.deepEqual((await untilLines(4)).slice(2), ["6"]);
    const { code } = await client.status;
    assert.equal(code, 1, "a failed line makes the exit code 1");
  } finally {
    await writer.close().catch(() => {});
    await reader.cancel().catch(() => {});
    await client.stderr.cancel().catch(() => {});
    try {
      client.kill("SIGKILL");
    } catch {
      // Exited already.
    }
    await client.status;
    await first.stop();
    await second?.stop();
  }
});

Deno.test("SIGINT stops a client reading a file: the rest is not sent, exit 0", async () => {
  await withServer(async (server) => {
    const file = await tempFile("ops.txt", "sleep 20\n".repeat(300));
    try {
      const { exe, args } = distCommand(["client", "--connect", server.address]);
      const client = new Deno.Command("sh", {
        args: ["-c", 'exec "$0" "$@" < "$OPS"', exe, ...args],
        env: { OPS: file.path },
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      await waitServed(server.address, 2);
      const t0 = performance.now();
      client.kill("SIGINT");
      const out = await client.output();
      assert.ok(performance.now() - t0 < 3000, "took too long to stop");
      assert.equal(out.code, 0, decode(out.stderr));
      const done = lines(decode(out.stdout));
      assert.ok(done.length > 0 && done.length < 300, `${done.length} lines ran`);
      assert.ok(done.every((l) => l === "20"), done.join("\n"));
    } finally {
      await file.remove();
    }
  });
});

Deno.test("a closed stdout (| head -2) ends the client quietly", async () => {
  await withServer(async (server) => {
    const { exe, args } = distCommand(["client", "--connect", server.address, "--random", "2000"]);
    const quoted = [exe, ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
    const r = await new Deno.Command("bash", {
      args: ["-c", `set -o pipefail; ${quoted} | head -2`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(lines(decode(r.stdout)).length, 2);
    assert.equal(decode(r.stderr), "", "no 'Broken pipe' or other complaint");
    assert.equal(r.code, 0);
  });
});

Deno.test("a second SIGINT exits at once, saying what it abandons", async () => {
  await withServer(async (server) => {
    // A piped client waits for its answer on the first SIGINT; not on the second.
    const client = spawnDist(["client", "--connect", server.address], "piped");
    const writer = client.stdin.getWriter();
    await writer.write(new TextEncoder().encode("sleep 8000\n"));
    const clientOut = client.output();
    // A server finishing a slow request on the first SIGTERM; not on the second.
    const slow = await startDist(["server", "--port", "0", "--grace", "20s"]);
    const call = runDist(["client", "--connect", slow.address, "sleep", "10000"]);
    try {
      // Both requests in flight before any signal (a fixed sleep was not
      // enough on a loaded machine: the slow server stopped with nothing to
      // finish, exit 0).
      await statsUntil(server.port, (s) => s.requests >= 1 && s.connections >= 1);
      await statsUntil(slow.port, (s) => s.requests >= 1);
      await sleep(300);
      client.kill("SIGINT");
      await sleep(300);
      client.kill("SIGINT");
      const c = await clientOut;
      assert.equal(c.code, 130, decode(c.stderr));
      assert.equal(
        decode(c.stderr).trim(),
        "dist: Interrupted again: exiting now, abandoning 1 request in flight",
      );

      slow.child.kill("SIGTERM");
      await sleep(300);
      const stopped = await slow.stop("SIGTERM");
      assert.equal(stopped.code, 130, stopped.stderr);
      assert.equal(stopped.killed, false);
      assert.match(
        stopped.stderr,
        /dist: Interrupted again: exiting now, abandoning 1 request\(s\) being handled/,
      );
    } finally {
      await writer.close().catch(() => {});
      await slow.stop("SIGKILL");
      await call;
    }
  });
});

/** Polls `port`'s sys.stats (up to 10 s) until `done` says so; the probe itself is not counted. */
async function statsUntil(
  port: number,
  done: (stats: { requests: number; connections: number }) => boolean,
): Promise<void> {
  const probe = await dial({ host: "127.0.0.1", port }, { role: "test", name: "t" });
  try {
    for (let i = 0; i < 1000; i++) {
      const stats = await probe.call("sys.stats") as { requests: number; connections: number };
      if (done({ requests: stats.requests - i - 1, connections: stats.connections - 1 })) return;
      await sleep(10);
    }
    throw new Error(`port ${port}: sys.stats never showed the requests awaited`);
  } finally {
    probe.close();
  }
}

Deno.test("a one-shot client interrupted before its answer says so, exit 130", async () => {
  await withServer(async (server) => {
    const client = spawnDist(["client", "--connect", server.address, "sleep", "10000"]);
    // Once the client has connected, its signal handlers are in place (a fixed
    // sleep is not enough on a loaded machine: SIGINT would kill it outright).
    const probe = await dial({ host: "127.0.0.1", port: server.port }, { role: "test", name: "t" });
    try {
      for (let i = 0; i < 1000; i++) {
        const stats = await probe.call("sys.stats") as { connections: number };
        if (stats.connections >= 2) break;
        await sleep(10);
      }
    } finally {
      probe.close();
    }
    await sleep(100);
    const t0 = performance.now();
    client.kill("SIGINT");
    const out = await client.output();
    assert.ok(performance.now() - t0 < 2000, "waited for the answer");
    assert.equal(out.code, 130);
    assert.equal(decode(out.stderr).trim(), "dist: Interrupted: no answer to sleep 10000");
  });
});

Deno.test("--json makes a server's logs JSON lines a program can read the port from", async () => {
  const server = await startDist(["server", "--port", "0", "--json"]);
  try {
    const first = JSON.parse(lines(server.stderr())[0]);
    assert.equal(first.level, "INFO");
    assert.equal(first.message, `Listening on 127.0.0.1:${server.port}`);
    assert.deepEqual(first.properties, {
      instance: `server-${server.port}`,
      address: `127.0.0.1:${server.port}`,
      host: "127.0.0.1",
      port: server.port,
    });
    const r = await runDist(["client", "--connect", server.address, "add", "1", "1"]);
    assert.equal(r.stdout, "2\n", r.stderr);
  } finally {
    const { stderr } = await server.stop();
    for (const line of lines(stderr)) JSON.parse(line);
  }
});

Deno.test("at debug a server logs each connection, at trace each request", async () => {
  const server = await startDist(["server", "--port", "0", "--log-level", "trace"]);
  try {
    const r = await runDist(["client", "--connect", server.address, "add", "1", "1"]);
    assert.equal(r.stdout, "2\n", r.stderr);
  } finally {
    const { stderr } = await server.stop();
    assert.match(
      stderr,
      /\[DBG\] server-\d+: Connection from 127\.0\.0\.1:\d+: client-\d+ \(client, json\)/,
    );
    assert.match(stderr, /\[TRC\] server-\d+: Request \d+ add from client-\d+/);
    assert.match(
      stderr,
      /\[DBG\] server-\d+: Connection with client-\d+ .*closed: \w+; 1 requests/,
    );
  }
});
