/**
 * `dist up` with bad topology files and bad flags: one line `dist: …`
 * naming the file, the line and the key, exit 2, and nothing started.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { topologyFile } from "./helpers/up.ts";

const CASES: { what: string; text: string; args?: string[]; error: (file: string) => RegExp }[] = [
  {
    what: "an unknown key",
    text: '[[server]]\nport = 0\nbakends = ["x"]\n',
    error: (f) => new RegExp(`^dist: Cannot load ${f}: line 3: server\\.bakends: unknown key`),
  },
  {
    what: "a bad value",
    text: '[[server]]\nname = "s"\n\nport = "high"\n',
    error: (f) =>
      new RegExp(`^dist: Cannot load ${f}: line 4: server\\.port: "high" is not a port`),
  },
  {
    what: "a duplicate port",
    text: '[[server]]\nname = "a"\nport = 6001\n[[server]]\nname = "b"\nport = 6001\n',
    error: (f) =>
      new RegExp(
        `^dist: Cannot load ${f}: line 6: server\\.port: 127\\.0\\.0\\.1:6001 is used by both a and b`,
      ),
  },
  {
    what: "an unknown reference",
    text: '[[server]]\nport = 0\n[[client]]\nconnect = "sever"\n',
    error: (f) =>
      new RegExp(
        `^dist: Cannot load ${f}: line 4: client\\.connect: unknown instance "sever" \\(did you mean "server"\\?\\)`,
      ),
  },
  {
    what: "a reference cycle",
    text: [
      "[[balancer]]",
      "port = 6100",
      'backends = ["server"]',
      "[[server]]",
      "port = 6101",
      'service = "compute"',
      'binders = ["balancer"]',
    ].join("\n"),
    error: (f) =>
      new RegExp(
        `^dist: Cannot load ${f}: line 3: balancer\\.backends: reference cycle: ` +
          "balancer \\(backends\\) -> server \\(binders\\) -> balancer$",
      ),
  },
  {
    what: "an unknown --only name",
    text: "[[server]]\nport = 0\n",
    args: ["--only", "srv"],
    error: (f) => new RegExp(`^dist: --only: unknown instance "srv" in ${f}`),
  },
  {
    what: "no instance on the --on host",
    text: "[[server]]\nport = 0\n",
    args: ["--on", "10.9.9.9"],
    error: (f) =>
      new RegExp(
        `^dist: No instance of ${f} is placed on 10\\.9\\.9\\.9 \\(hosts: 127\\.0\\.0\\.1\\)`,
      ),
  },
];

Deno.test("dist up rejects bad topology files and flags with one line naming file, line and key", async () => {
  const files = await Promise.all(CASES.map((c) => topologyFile(c.text)));
  try {
    const results = await Promise.all(
      CASES.map((c, i) => runDist(["up", files[i], ...(c.args ?? [])])),
    );
    results.forEach((result, i) => {
      const { what, error } = CASES[i];
      assert.equal(result.code, 2, `${what}: exit code; stderr:\n${result.stderr}`);
      assert.equal(result.stdout, "", `${what}: nothing started`);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, `${what}: one line, got:\n${result.stderr}`);
      assert.match(lines[0], error(files[i].replaceAll(".", "\\.")), what);
    });
    const missing = await runDist(["up", "/nonexistent/cluster.toml"]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^dist: Cannot read topology file \/nonexistent\/cluster\.toml: /);
  } finally {
    await Promise.all(files.map((f) => Deno.remove(f)));
  }
});

Deno.test("dist up shows every problem of a file in one run: keys, port clashes, references, cycles", async () => {
  const text = [
    "[[server]]", // 1
    'name = "s"',
    "port = 6201",
    'bakends = ["x"]', // 4: unknown key
    "[[server]]", // 5
    'name = "t"',
    "port = 6201", // 7: clash with s
    "[[balancer]]", // 8
    'name = "lb-a"',
    "port = 6202",
    "[[balancer]]", // 11: worker_port 8889 by default, as lb-a's
    'name = "lb-b"',
    "port = 6203",
    "[[client]]", // 14
    'connect = "bak"', // 15: unknown reference
    "[[balancer]]", // 16
    'name = "loop"',
    "port = 6204",
    "worker_port = 6205",
    'backends = ["back"]',
    "[[server]]",
    'name = "back"',
    "port = 6206",
    'service = "compute"',
    'binders = ["loop"]', // 25: cycle
  ].join("\n");
  const file = await topologyFile(text);
  try {
    const result = await runDist(["up", file]);
    assert.equal(result.code, 2, result.stderr);
    assert.equal(result.stdout, "", "nothing started");
    const f = file;
    assert.deepEqual(result.stderr.trim().split("\n"), [
      `dist: Cannot load ${f}: line 4: server.bakends: unknown key`,
      `dist: Cannot load ${f}: line 7: server.port: 127.0.0.1:6201 is used by both s and t`,
      `dist: Cannot load ${f}: line 11: balancer.worker_port: 127.0.0.1:8889 is used by both ` +
      `lb-a and lb-b (worker_port 8889 is the built-in default: give lb-b another, or 0)`,
      `dist: Cannot load ${f}: line 15: client.connect: unknown instance "bak" ` +
      `(did you mean "back"?)`,
      `dist: Cannot load ${f}: line 25: server.binders: reference cycle: ` +
      `back (binders) -> loop (backends) -> back`,
    ]);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("dist up refuses a file of a million replicas at once, naming the line; --max-instances raises the cap", async () => {
  const huge = await topologyFile("[[server]]\nreplicas = 1000000\nport = 5557\n");
  const many = await topologyFile("[[server]]\nreplicas = 300\nport = 0\n");
  try {
    const t0 = performance.now();
    const [dry, status] = await Promise.all([
      runDist(["up", huge, "--dry-run"]),
      runDist(["status", huge]),
    ]);
    // It used to run for minutes; refused after reading two numbers, it ends
    // as soon as the process has started (a bound about the product, not the machine).
    assert.ok(performance.now() - t0 < 10_000, "refused at once");
    for (const result of [dry, status]) {
      assert.equal(result.code, 2, result.stderr);
      assert.deepEqual(result.stderr.trim().split("\n"), [
        `dist: Cannot load ${huge}: line 2: server.replicas: 1000000 more than a topology may ` +
        `have (256; dist up --max-instances N raises it)`,
        `dist: Cannot load ${huge}: line 3: server.port: 1000000 replicas from port 5557 go up ` +
        `to 1005556 (server-1000000), above 65535`,
      ]);
    }
    const refused = await runDist(["up", many, "--dry-run"]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /line 2: server\.replicas: 300 more than a topology may have/);
    const raised = await runDist(["up", many, "--dry-run", "--json", "--max-instances", "300"]);
    assert.equal(raised.code, 0, raised.stderr);
    assert.equal(raised.stdout.trim().split("\n").length, 300);
  } finally {
    await Promise.all([Deno.remove(huge), Deno.remove(many)]);
  }
});
