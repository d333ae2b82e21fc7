/**
 * Scenario tests: real `dist server` and `dist client` processes on port 0.
 * Every process a test starts is stopped in `finally`; independent processes
 * run in parallel to keep the file fast (each start-up costs ~0.3-1 s).
 */
import assert from "node:assert/strict";
import { distCommand, freePort, lines, runDist, startDist } from "./helpers/dist.ts";
import { assertUserError, waitServed, withServer } from "./helpers/cli.ts";
import { randomOperation } from "../roles/mod.ts";
import { frame } from "./helpers/raw.ts";

Deno.test("client one shot prints the result of every operation and exits 0", async () => {
  await withServer(async (server) => {
    const c = ["client", "--connect", server.address];
    const cases: [string[], string][] = [
      [["add", "3", "4"], "7"],
      [["sub", "10", "4"], "6"],
      [["mul", "6", "7"], "42"],
      [["div", "7", "2"], "3.5"],
      [["sum", "1,2,3"], "6"],
      [["echo", "hello", "world"], "hello world"],
      [["somma", "2", "3"], "5"],
      [["add", "3", "-4"], "-1"],
    ];
    const results = await Promise.all(cases.map(([op]) => runDist([...c, ...op])));
    results.forEach((r, i) => {
      const what = cases[i][0].join(" ");
      assert.equal(r.code, 0, `${what}: stderr:\n${r.stderr}`);
      assert.equal(r.stdout, cases[i][1] + "\n", what);
    });
  });
});

Deno.test("client one shot turns a server error into one `dist:` line and exit 1", async () => {
  await withServer(async (server) => {
    const r = await runDist(["client", "--connect", server.address, "div", "1", "0"]);
    const line = assertUserError(r, 1, "div 1 0");
    assert.equal(line, "dist: BAD_REQUEST: Division by zero");
    assert.equal(r.stdout, "");
  });
});

Deno.test("client --json prints one JSON outcome per request", async () => {
  await withServer(async (server) => {
    const c = ["client", "--connect", server.address, "--json"];
    const [ok, bad] = await Promise.all([
      runDist([...c, "add", "3", "4"]),
      runDist([...c, "div", "1", "0"]),
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(lines(ok.stdout).length, 1);
    const outcome = JSON.parse(ok.stdout);
    assert.equal(typeof outcome.ms, "number");
    assert.deepEqual(outcome, { ok: true, result: 7, by: `server-${server.port}`, ms: outcome.ms });

    assert.equal(bad.code, 1, bad.stderr);
    const failure = JSON.parse(bad.stdout);
    assert.equal(failure.ok, false);
    assert.equal(failure.error.code, "BAD_REQUEST");
    assert.match(failure.error.message, /zero/i);
  });
});

Deno.test("client reads one operation per line from a pipe", async () => {
  await withServer(async (server) => {
    const c = ["client", "--connect", server.address];
    const [good, mixed, json] = await Promise.all([
      runDist(c, { stdin: "add 1 2\nsum 1,2,3\necho hi\n" }),
      runDist(c, { stdin: "add 1 2\ndiv 1 0\n\nadd 1\nsum 1,2,3\necho hi\n" }),
      runDist([...c, "--json"], { stdin: "add 1 2\ndiv 1 0\n" }),
    ]);
    assert.equal(good.code, 0, good.stderr);
    assert.deepEqual(lines(good.stdout), ["3", "6", "hi"]);

    // A failing line (at the server or in parsing) is reported; later lines still run.
    assert.equal(mixed.code, 1, mixed.stderr);
    const out = lines(mixed.stdout);
    assert.equal(out.length, 5, mixed.stdout);
    assert.equal(out[0], "3");
    assert.match(out[1], /^error BAD_REQUEST: .*zero/i);
    assert.match(out[2], /^error BAD_REQUEST: /);
    assert.deepEqual(out.slice(3), ["6", "hi"]);

    assert.equal(json.code, 1, json.stderr);
    const [first, second] = lines(json.stdout).map((l) => JSON.parse(l));
    assert.equal(first.ok, true);
    assert.equal(first.result, 3);
    assert.equal(second.ok, false);
    assert.equal(second.error.code, "BAD_REQUEST");
  });
});

Deno.test("client --random 20 prints 20 results and a summary naming the server", async () => {
  await withServer(async (server) => {
    const c = ["client", "--connect", server.address, "--random", "20"];
    const by = `server-${server.port}`;
    const [text, json] = await Promise.all([runDist(c), runDist([...c, "--json"])]);

    // Random operations never divide by zero, so a healthy server answers all 20.
    const out = lines(text.stdout);
    assert.equal(out.length, 21, text.stdout);
    for (const l of out.slice(0, 20)) {
      assert.match(l, new RegExp(`^\\w+ \\S+( \\S+)? = \\S+  \\(${by}\\)$`));
    }
    assert.equal(out[20], `20 requests: 20 ok, 0 errors; by: ${by} ×20`);
    assert.equal(text.code, 0, text.stderr);

    const objects = lines(json.stdout).map((l) => JSON.parse(l));
    assert.equal(objects.length, 21, json.stdout);
    for (const o of objects.slice(0, 20)) {
      assert.equal(typeof o.op, "string");
      assert.equal(typeof o.ms, "number");
      assert.equal(o.ok, true);
      assert.equal(o.by, by);
    }
    assert.deepEqual(objects[20], { summary: { ok: 20, errors: 0, by: { [by]: 20 } } });
    assert.equal(json.code, 0, json.stderr);
  });
});

Deno.test({
  name: "randomOperation() never makes a division by zero",
  // About 1 draw in 201 of b is 0; a division by zero would make `dist
  // client --random 20` fail against a healthy server.
  fn() {
    // Picks "div" (index 3 of 5), then a = 0, then b = 0.
    const draws = [3.5 / 5, 100 / 201, 100 / 201];
    const op = randomOperation(() => draws.shift() ?? 0.9);
    assert.equal(op.method, "div");
    assert.notEqual((op.params as { b: number }).b, 0);
  },
});

Deno.test("client --bench reports throughput, latency quantiles and who served", async () => {
  await withServer(async (server) => {
    const by = `server-${server.port}`;
    const c = ["client", "--connect", server.address, "--bench"];
    const [text, json, rate] = await Promise.all([
      runDist([...c, "--requests", "2000", "--concurrency", "8"]),
      runDist([...c, "--requests", "2000", "--concurrency", "8", "--json"]),
      runDist([...c, "--rate", "2000", "--requests", "500", "--json"]),
    ]);

    assert.equal(text.code, 0, text.stderr);
    const report = text.stdout;
    assert.match(
      report,
      /^2000 requests in [\d.]+ s, 2000 ok: \d+ req\/s \(concurrency 8 over 1 connection\)$/m,
    );
    assert.match(
      report,
      /^latency ms: p50 [\d.]+ +p90 [\d.]+ +p99 [\d.]+ +p99\.9 [\d.]+ +max [\d.]+/m,
    );
    assert.match(report, /^errors: none$/m);
    assert.match(report, new RegExp(`^by: ${by} ×2000$`, "m"));

    assert.equal(json.code, 0, json.stderr);
    assert.equal(lines(json.stdout).length, 1, json.stdout);
    const summary = JSON.parse(json.stdout);
    assert.equal(summary.requests, 2000);
    assert.equal(summary.ok, 2000);
    assert.deepEqual(summary.errors, {});
    assert.deepEqual(summary.by, { [by]: 2000 });
    assert.equal(summary.concurrency, 8);
    const l = summary.latency_ms;
    assert.ok(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max, l);

    assert.equal(rate.code, 0, rate.stderr);
    const open = JSON.parse(rate.stdout);
    assert.equal(open.requests, 500);
    assert.equal(open.ok, 500);
    assert.equal(open.rate, 2000);
    assert.equal(typeof open.achieved_rate, "number");
    assert.equal(typeof open.start_lag_ms.p99, "number");
    assert.deepEqual(open.by, { [by]: 500 });
    // 500 requests at 2000/s take at least 0.25 s of schedule.
    assert.ok(open.duration_s >= 0.24, `duration ${open.duration_s}`);
  });
});

Deno.test("bad usage exits 2 with one `dist:` line", async () => {
  const cases: [string[], RegExp][] = [
    [["server", "--bogus"], /--bogus/],
    [["server", "--port"], /--port needs a value/],
    [["server", "--port", "70000"], /--port.*70000/],
    [["client", "--random", "abc"], /--random.*abc/],
    [["frobnicate"], /Unknown role "frobnicate"/],
    [["client", "--connect", "127.0.0.1:1", "add", "3"], /add takes 2 numbers/],
    [["client", "--connect", "127.0.0.1:1", "frobnicate", "{"], /JSON/],
    [["--port", "0"], /--port/],
    [[], /Usage/],
  ];
  const results = await Promise.all(cases.map(([args]) => runDist(args)));
  results.forEach((r, i) => {
    const what = `dist ${cases[i][0].join(" ")}`;
    if (cases[i][0].length === 0) {
      // No role at all: the help goes to stderr, exit 2.
      assert.equal(r.code, 2, what);
      assert.match(r.stderr, cases[i][1], what);
      return;
    }
    assert.match(assertUserError(r, 2, what), cases[i][1], what);
    assert.equal(r.stdout, "", what);
  });
});

Deno.test("client to a port where nothing listens exits 1 with UNAVAILABLE", async () => {
  const port = freePort();
  const r = await runDist(["client", "--connect", `127.0.0.1:${port}`, "add", "1", "2"]);
  assert.match(assertUserError(r, 1, "connect refused"), /^dist: UNAVAILABLE/);
  assert.equal(r.stdout, "");
});

Deno.test("--version, --help and --role work like the documented forms", async () => {
  const [version, help, serverHelp, clientHelp] = await Promise.all([
    runDist(["--version"]),
    runDist(["--help"]),
    runDist(["server", "--help"]),
    runDist(["--role", "client", "-h"]),
  ]);
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout, /^dist \d+\.\d+\.\d+/);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /Usage:/);
  assert.match(help.stdout, /server/);
  assert.match(help.stdout, /client/);
  assert.equal(serverHelp.code, 0, serverHelp.stderr);
  assert.match(serverHelp.stdout, /--port/);
  assert.equal(clientHelp.code, 0, clientHelp.stderr);
  assert.match(clientHelp.stdout, /--connect/);

  const server = await startDist(["--role", "server", "--port", "0"]);
  try {
    const r = await runDist(["--role", "client", "--connect", server.address, "mul", "3", "4"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "12\n");
  } finally {
    await server.stop();
  }
});

Deno.test("--config FILE --name INSTANCE takes options from a topology file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist_scenario_" });
  try {
    const file = `${dir}/cluster.toml`;
    await Deno.writeTextFile(
      file,
      [
        "[defaults]",
        'host = "127.0.0.1"',
        "",
        "[[server]]",
        'name = "s1"',
        "port = 0",
        "",
        "[[server]]",
        'name = "s2"',
        "port = 0",
        'log_level = "error"',
        "",
      ].join("\n"),
    );
    const started = await Promise.allSettled([
      startDist(["server", "--config", file, "--name", "s1"]),
      // The role is found from the instance when not given.
      startDist(["--config", file, "--name", "s1"]),
      // The file says log_level "error" (no "Listening" line); the flag wins.
      startDist(["server", "--config", file, "--name", "s2", "--log-level", "info"]),
    ]);
    try {
      const [s1, s1NoRole, s2] = started.map((s) => {
        if (s.status === "rejected") throw s.reason;
        return s.value;
      });
      const [a, b, c] = await Promise.all([
        runDist(["client", "--connect", s1.address, "--json", "add", "1", "1"]),
        runDist(["client", "--connect", s1NoRole.address, "--json", "add", "1", "1"]),
        runDist(["client", "--connect", s2.address, "--json", "add", "1", "1"]),
      ]);
      for (const r of [a, b, c]) assert.equal(r.code, 0, r.stderr);
      // `by` is the instance name from the file.
      assert.equal(JSON.parse(a.stdout).by, "s1");
      assert.equal(JSON.parse(b.stdout).by, "s1");
      assert.equal(JSON.parse(c.stdout).by, "s2");
      assert.match(s1.stderr(), /\bs1: Listening on/);
    } finally {
      await Promise.all(started.map((s) => s.status === "fulfilled" ? s.value.stop() : null));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a broken topology file exits 2 with one line naming the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist_scenario_" });
  try {
    const badKey = `${dir}/bad_key.toml`;
    const badToml = `${dir}/bad_toml.toml`;
    const good = `${dir}/good.toml`;
    await Deno.writeTextFile(badKey, '[[server]]\nname = "s1"\nprot = 0\n');
    await Deno.writeTextFile(badToml, '[[server]\nname = "s1"\n');
    await Deno.writeTextFile(good, '[[server]]\nname = "s1"\nport = 0\n');
    const cases: [string[], RegExp][] = [
      [["server", "--config", badKey, "--name", "s1"], /bad_key\.toml.*line 3.*prot/],
      [["server", "--config", badToml, "--name", "s1"], /bad_toml\.toml.*line 1/],
      [["server", "--config", `${dir}/missing.toml`, "--name", "s1"], /missing\.toml/],
      [["server", "--config", good, "--name", "s9"], /No instance "s9".*good\.toml/],
      [["client", "--config", good, "--name", "s1"], /s1.*server/],
      [["server", "--config", good], /--name/],
    ];
    const results = await Promise.all(cases.map(([args]) => runDist(args, { timeoutMs: 10_000 })));
    results.forEach((r, i) => {
      const what = `dist ${cases[i][0].join(" ")}`;
      assert.equal(r.timedOut, false, `${what} did not exit`);
      assert.match(assertUserError(r, 2, what), cases[i][1], what);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Reads everything a connection sends until the peer closes it (or `ms` pass). */
async function readUntilClosed(conn: Deno.Conn, ms: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), ms));
  try {
    const buf = new Uint8Array(4096);
    while (true) {
      const n = await Promise.race([conn.read(buf), timeout]);
      if (n === "timeout") throw new Error(`Connection still open after ${ms} ms`);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
  } finally {
    clearTimeout(timer);
  }
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let off = 0;
  for (const c of chunks) out.set(c, (off += c.length) - c.length);
  return out;
}

/** The payloads of length-prefixed frames in `bytes`, parsed as JSON. */
function parseFrames(bytes: Uint8Array): unknown[] {
  const frames: unknown[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let off = 0; off + 4 <= bytes.length;) {
    const n = view.getUint32(off);
    frames.push(JSON.parse(new TextDecoder().decode(bytes.subarray(off + 4, off + 4 + n))));
    off += 4 + n;
  }
  return frames;
}

Deno.test("the server survives peers that send garbage", async () => {
  await withServer(async (server) => {
    const connect = () => Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const [huge, notJson, notHello, silent] = await Promise.all([
      connect(),
      connect(),
      connect(),
      connect(),
    ]);
    try {
      // "GARB" as a length is ~1.2 GB: refused before anything is allocated.
      await huge.write(new TextEncoder().encode("GARBAGE!\r\n\0\xff"));
      await notJson.write(frame("this is not json"));
      await notHello.write(frame('{"id":1,"method":"add","params":{"a":1,"b":2}}'));
      // `silent` sends half a header and then nothing: it must not block others.
      await silent.write(new Uint8Array([0, 0]));

      const [a, b, c] = await Promise.all([
        readUntilClosed(huge, 5000),
        readUntilClosed(notJson, 5000),
        readUntilClosed(notHello, 5000),
      ]);
      const codeOf = (bytes: Uint8Array) =>
        (parseFrames(bytes)[0] as { op: string; error: { code: string } }).error.code;
      assert.equal(codeOf(a), "FRAME_TOO_LARGE");
      assert.equal(codeOf(b), "BAD_REQUEST");
      assert.equal(codeOf(c), "BAD_REQUEST");

      const r = await runDist(["client", "--connect", server.address, "add", "3", "4"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "7\n");
    } finally {
      for (const conn of [huge, notJson, notHello, silent]) {
        try {
          conn.close();
        } catch {
          // Already closed by the server.
        }
      }
    }
    const { code, stderr } = await server.stop();
    assert.equal(code, 0, stderr);
  });
});

Deno.test("SIGTERM and SIGINT stop the server cleanly with exit 0", async () => {
  const [term, int] = await Promise.all([
    startDist(["server", "--port", "0"]),
    startDist(["server", "--port", "0"]),
  ]);
  try {
    const r = await runDist(["client", "--connect", term.address, "echo", "before"]);
    assert.equal(r.stdout, "before\n", r.stderr);
    const [t, i] = await Promise.all([term.stop("SIGTERM"), int.stop("SIGINT")]);
    for (const s of [t, i]) {
      assert.equal(s.killed, false, `needed SIGKILL; stderr:\n${s.stderr}`);
      assert.equal(s.code, 0, s.stderr);
      assert.match(s.stderr, /Stopped/);
    }
    assert.match(t.stderr, /Stopped after \d+ requests?/);
    // The port is free again.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: term.port });
    listener.close();
  } finally {
    await Promise.all([term.stop(), int.stop()]);
  }
});

Deno.test("SIGTERM stops a client bench and a piped client: report, exit 0", async () => {
  await withServer(async (server) => {
    const spawn = (args: string[], stdin: "piped" | "null") => {
      const { exe, args: argv } = distCommand(["client", "--connect", server.address, ...args]);
      return new Deno.Command(exe, { args: argv, stdin, stdout: "piped", stderr: "piped" })
        .spawn();
    };
    // A client reading a pipe that stays open, and a bench meant to run 30 s:
    // each signalled once the server has answered it (its handlers are in place).
    const piped = spawn([], "piped");
    const writer = piped.stdin.getWriter();
    await writer.write(new TextEncoder().encode("add 1 2\n"));
    const served = await waitServed(server.address, 1);
    const bench = spawn(["--bench", "--duration", "30s", "--concurrency", "4"], "null");
    // Ten requests past those (the first wait's own sys.stats calls included, however many).
    await waitServed(server.address, served + 10);
    const t0 = performance.now();
    bench.kill("SIGTERM");
    piped.kill("SIGTERM");
    const [b, p] = await Promise.all([bench.output(), piped.output()]);
    await writer.close().catch(() => {});
    assert.ok(performance.now() - t0 < 5000, "took too long to stop");
    const text = (o: Deno.CommandOutput) => new TextDecoder().decode(o.stdout);
    assert.equal(b.code, 0, new TextDecoder().decode(b.stderr));
    assert.match(text(b), /^\d+ requests in [\d.]+ s/m);
    assert.match(text(b), /errors: none/);
    assert.match(text(b), /^stopped: interrupted$/m);
    assert.equal(p.code, 0, new TextDecoder().decode(p.stderr));
    assert.equal(text(p), "3\n");
  });
});

Deno.test("failures are one line: busy port, bad log file, too long a timeout", async () => {
  await withServer(async (server) => {
    const [busy, logFile, tooLong] = await Promise.all([
      runDist(["server", "--port", String(server.port)]),
      runDist(["server", "--port", "0", "--log-file", "/nonexistent-dir/dist.log"]),
      runDist(["client", "--connect", server.address, "--timeout", "600h", "add", "1", "2"]),
    ]);
    assert.match(assertUserError(busy, 1, "busy port"), /UNAVAILABLE: Cannot listen on .*:\d+/);
    assert.match(assertUserError(logFile, 2, "bad log file"), /Cannot open log file/);
    assert.match(assertUserError(tooLong, 2, "600h timeout"), /--timeout.*too long/);
  });
});
