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
