/**
 * hostile h48 P3: `dist export systemd` writes the topology file's path as
 * it was typed into every unit: in `dist.target`'s `Description=` and in
 * the comment that opens each `dist-NAME.service`. A path holding a line
 * break writes unit lines of its own choosing: a file named
 * `a\n[Service]\nExecStartPost=touch pwned\n#.toml` gives each service a
 * `[Service]` section with that `ExecStartPost=` above its `[Unit]`, and
 * systemd merges repeated sections (`systemd-analyze verify` took the unit
 * without a word; dist.target only said `Unknown section 'Service'`). A
 * `%` in the path (a folder `50%h`) is a specifier systemd expands in
 * `Description=` (`%h`: the home directory). The compose and k8s exports
 * already write such a path as comment lines; `--bin` is escaped for `%`
 * and `$` (hostile47 Q21), the path is not.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runDist } from "./helpers/dist.ts";

const TOPOLOGY = `[[server]]
name = "server"
port = 5557
`;

/** The export of a topology at `name` in a folder `50%h`: its output, or "" when it is refused (a `dist:` line, exit 2). */
async function exportOf(dir: string, name: string): Promise<string> {
  await Deno.mkdir(join(dir, "50%h"), { recursive: true });
  const file = join(dir, "50%h", name);
  await Deno.writeTextFile(file, TOPOLOGY);
  const run = await runDist(["export", "systemd", file], { timeoutMs: 15_000 });
  if (run.code === 2 && /^dist: /m.test(run.stderr)) return ""; // refused: as good as escaped
  assert.equal(run.code, 0, run.stderr);
  return run.stdout;
}

Deno.test("systemd export: a line break in the topology's path writes no unit line (h48 P3)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "h48-systemd-" });
  try {
    const out = await exportOf(dir, "a\n[Service]\nExecStartPost=touch pwned\n#.toml");
    const injected = out.split("\n").filter((l) => l === "ExecStartPost=touch pwned");
    assert.deepEqual(injected, [], "lines of the file's name became unit lines");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("systemd export: a % in the topology's path is no specifier in Description= (h48 P3)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "h48-systemd-" });
  try {
    const out = await exportOf(dir, "cluster.toml");
    const descriptions = out.split("\n").filter((l) => l.startsWith("Description="));
    // `%%` is one `%` for systemd; any other `%` starts a specifier.
    const bare = descriptions.filter((l) => /%[^%]/.test(l.replaceAll("%%", "")));
    assert.deepEqual(bare, [], "systemd expands these (%h: the home directory)");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("systemd export: a line break in --bin writes no unit line, or is refused (h48 P3)", async () => {
  const bin = "/opt/dist\nExecStartPre=/bin/touch /tmp/pwned\n#";
  const run = await runDist(["export", "systemd", "--bin", bin], { timeoutMs: 15_000 });
  if (run.code === 2) {
    assert.match(run.stderr, /^dist: .*--bin/m);
    return;
  }
  assert.equal(run.code, 0, run.stderr);
  const injected = run.stdout.split("\n").filter((l) => l.startsWith("ExecStartPre=/bin/touch"));
  assert.deepEqual(injected, [], "lines of --bin became unit lines");
});
