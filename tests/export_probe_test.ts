/**
 * The commands an export runs to check an instance, run as the target
 * would run them against a real instance: compose's health check, the
 * systemd unit's `ExecStartPost=` probe (its `$$` read as systemd reads
 * it), and the Kubernetes readiness probe and init container (which waits
 * while nothing answers, and ends once the instance does). `dist` on the
 * PATH is this checkout's (or DIST_BIN).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { buildExport } from "../export/mod.ts";
import { ROLES } from "../roles/mod.ts";
import { distCommand, freePort, startDist } from "./helpers/dist.ts";
import { k8sObjects, load } from "./helpers/export.ts";

/** A folder with a `dist` that runs this checkout, for PATH. */
async function distOnPath(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "dist_probe_" });
  const { exe, args } = distCommand([]);
  const words = [exe, ...args].map((w) => `'${w.replaceAll("'", `'\\''`)}'`).join(" ");
  await Deno.writeTextFile(join(dir, "dist"), `#!/bin/sh\nexec ${words} "$@"\n`, { mode: 0o755 });
  return dir;
}

/** Runs `argv` with `dir` first on PATH; the exit code, or undefined if still running after `ms`. */
async function runFor(argv: string[], dir: string, ms: number): Promise<number | undefined> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: { PATH: `${dir}:${Deno.env.get("PATH")}`, NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  try {
    const [status, err] = await Promise.all([child.status, new Response(child.stderr).text()]);
    if (status.signal === "SIGKILL") return undefined;
    assert.equal(err.includes("not found"), false, err);
    return status.code;
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("each export's health checks and waits ask the instance for sys.ping, and wait while it is down", async () => {
  const dir = await distOnPath();
  const port = freePort();
  const text = `[[server]]\nname = "s"\nport = ${port}\n[[client]]\nname = "c"\nconnect = "s"\n`;
  const topology = load("t.toml", text);
  const build = (target: string) =>
    buildExport(target, { topology, text, roles: ROLES, bin: join(dir, "dist") });
  // deno-lint-ignore no-explicit-any
  const compose = parseYaml((await build("compose"))[0].text) as any;
  const health = compose.services.s.healthcheck.test as string[];
  assert.equal(health[0], "CMD");
  const unit = (await build("systemd")).find((f) => f.path === "dist-s.service")!.text;
  // systemd reads `$$` as `$` (and `%%` as `%`) before it runs the line.
  const post = /^ExecStartPost=(.*)$/m.exec(unit)![1].replaceAll("$$", "$").replaceAll("%%", "%");
  const postArgv = ["sh", "-c", /^\/bin\/sh -c '(.*)'$/.exec(post)![1]];
  // deno-lint-ignore no-explicit-any
  const objects = k8sObjects((await build("k8s"))[0].text) as any[];
  const pod = (name: string) =>
    objects.find((o) => o.kind !== "Service" && o.metadata.name === name).spec.template.spec;
  const readiness = pod("s").containers[0].readinessProbe.exec.command as string[];
  const wait = pod("c").initContainers[0].command as string[];
  // In Kubernetes the client dials the Service "s"; here the same loop dials the instance.
  const waitHere = [wait[0], wait[1], wait[2].replace(`s:${port}`, `127.0.0.1:${port}`)];
  assert.notEqual(waitHere[2], wait[2], wait[2]);

  // Nothing listens yet: the checks fail, the waits go on waiting.
  assert.equal(await runFor(health.slice(1), dir, 15_000), 1);
  assert.equal(await runFor(readiness, dir, 15_000), 1);
  assert.equal(await runFor(waitHere, dir, 2_000), undefined, "the init container still waits");

  const waiting = runFor(waitHere, dir, 30_000);
  const server = await startDist(["--config", await writeTopology(dir, text), "--name", "s"]);
  try {
    assert.equal(await waiting, 0, "the init container ends once s answers");
    assert.equal(await runFor(health.slice(1), dir, 15_000), 0);
    assert.equal(await runFor(readiness, dir, 15_000), 0);
    assert.equal(await runFor(postArgv, dir, 30_000), 0);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

async function writeTopology(dir: string, text: string): Promise<string> {
  const path = join(dir, "topology.toml");
  await Deno.writeTextFile(path, text);
  return path;
}
