/**
 * The container image recipe: `container/install.sh`, which Containerfile's
 * build runs, installs a `dist` that serves and answers the exports' health
 * check, from its sources where `deno compile` cannot download its runtime
 * (as here), compiled where it can (DENORT_BIN); and Containerfile agrees
 * with what the exports expect of the image. No container engine runs on
 * these machines, so the image itself is not built here.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { DEFAULT_IMAGE } from "../export/mod.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DENORT = Deno.env.get("DENORT_BIN");
const decoder = new TextDecoder();

async function install(prefix: string, mode: "source" | "compiled"): Promise<string> {
  const out = await new Deno.Command("sh", {
    args: [join(ROOT, "container/install.sh"), ROOT, prefix],
    env: { DIST_BUILD: mode, DENO: Deno.execPath() },
    stdin: "null",
  }).output();
  const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
  assert.equal(out.code, 0, text);
  return text;
}

/** Whether this test may run a process as the image's user (root with setpriv). */
async function canDropToImageUser(): Promise<boolean> {
  if (Deno.uid() !== 0) return false;
  try {
    return (await new Deno.Command("setpriv", { args: ["--version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

/** `argv` as uid 65532 when possible, as the image runs it. */
function asImageUser(argv: string[], drop: boolean): { exe: string; args: string[] } {
  return drop
    ? { exe: "setpriv", args: ["--reuid=65532", "--regid=65532", "--clear-groups", ...argv] }
    : { exe: argv[0], args: argv.slice(1) };
}

/** Serves with the installed dist, then asks it for sys.ping as the exports' health check does. */
async function checkServes(bin: string): Promise<void> {
  const drop = await canDropToImageUser();
  const version = await new Deno.Command(bin, { args: ["--version"], stdin: "null" }).output();
  assert.match(decoder.decode(version.stdout), /^dist \d+\.\d+\.\d+/);
  const cmd = asImageUser([bin, "server", "--port", "0", "--name", "img"], drop);
  const server = new Deno.Command(cmd.exe, {
    args: cmd.args,
    cwd: "/",
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    let text = "";
    const reader = server.stderr.getReader();
    const deadline = Date.now() + 15_000;
    let m: RegExpMatchArray | null = null;
    while ((m = text.match(/Listening on ([\d.]+:\d+)/)) === null) {
      assert.ok(Date.now() < deadline, `no Listening line: ${text}`);
      const { value, done } = await reader.read();
      assert.ok(!done, `server ended: ${text}`);
      text += decoder.decode(value);
    }
    reader.releaseLock();
    server.stderr.cancel();
    const probe = asImageUser(
      [bin, "client", "--connect", m[1], "--timeout", "2s", "sys.ping"],
      drop,
    );
    const ping = await new Deno.Command(probe.exe, { args: probe.args, cwd: "/", stdin: "null" })
      .output();
    assert.equal(ping.code, 0, decoder.decode(ping.stderr));
  } finally {
    server.kill("SIGTERM");
    await server.status;
  }
}

Deno.test("container/install.sh installs Deno and the sources, which serve as a user of no account", async () => {
  const prefix = await Deno.makeTempDir();
  try {
    const said = await install(prefix, "source");
    assert.match(said, /installed Deno and the sources, run by .*\/bin\/dist/);
    // Nothing of the repository's own that dist does not run.
    for (const left of ["tests", "bench", ".git", "container"]) {
      await assert.rejects(Deno.stat(join(prefix, "app", left)), Deno.errors.NotFound, left);
    }
    // Readable by anyone, written by nobody at run time: the image's user is not its owner.
    await new Deno.Command("chmod", { args: ["-R", "a+rX,go-w", prefix] }).output();
    await checkServes(join(prefix, "bin", "dist"));
  } finally {
    await Deno.remove(prefix, { recursive: true });
  }
});

Deno.test({
  name: DENORT
    ? "container/install.sh installs the compiled binary where deno compile works"
    : "container/install.sh installs the compiled binary (skipped: DENORT_BIN not set, denort cannot be downloaded here)",
  ignore: !DENORT,
  async fn() {
    const prefix = await Deno.makeTempDir();
    try {
      assert.match(await install(prefix, "compiled"), /installed the compiled binary/);
      await assert.rejects(Deno.stat(join(prefix, "app")), Deno.errors.NotFound);
      await checkServes(join(prefix, "bin", "dist"));
    } finally {
      await Deno.remove(prefix, { recursive: true });
    }
  },
});

Deno.test("Containerfile builds what the exports run: dist as entry point, user 65532, /var/lib/dist", async () => {
  const file = await Deno.readTextFile(join(ROOT, "Containerfile"));
  assert.match(file, /RUN .*\/src\/container\/install\.sh \/src \/opt\/dist/);
  assert.match(file, /^ENV PATH=\/opt\/dist\/bin:/m);
  assert.match(file, /^ENTRYPOINT \["dist"\]$/m);
  assert.match(file, /^USER 65532:65532$/m);
  assert.match(file, /^WORKDIR \/var\/lib\/dist$/m);
  // The tag README's build gives is the exports' default --image.
  assert.ok(file.includes(`docker build -t ${DEFAULT_IMAGE} -f Containerfile .`), DEFAULT_IMAGE);
  const deno = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  assert.equal(DEFAULT_IMAGE, `dist:${deno.version}`);
  assert.match(
    file,
    new RegExp(`^ARG DENO_VERSION=${Deno.version.deno.replaceAll(".", "\\.")}$`, "m"),
  );
});
