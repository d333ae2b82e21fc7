/**
 * README's server and client examples, run as they are written (only the
 * addresses change: the test's server listens on a port of its own), and
 * checked against what their comments promise (`# prints 7`, `exit 1`, …).
 * When an example changes, this test runs the new one.
 */
import assert from "node:assert/strict";
import { distCommand, lines, startDist } from "./helpers/dist.ts";
import { ptyUnavailable, startPty } from "./helpers/pty.ts";

const README = await Deno.readTextFile(new URL("../README.md", import.meta.url));

/** The lines of the first ```sh block after the heading `### name`. */
function examples(name: string): string[] {
  const at = README.indexOf(`\n### ${name}\n`);
  assert.ok(at >= 0, `README has no "### ${name}" section`);
  const block = /```sh\n([\s\S]*?)```/.exec(README.slice(at));
  assert.ok(block, `README's ${name} section has no sh block`);
  return block[1].split("\n").filter((l) => l.trim() !== "");
}

/** Splits `command   # comment`. */
function split(line: string): { command: string; comment: string } {
  const at = line.search(/\s+# /);
  if (at < 0) return { command: line.trim(), comment: "" };
  return { command: line.slice(0, at).trim(), comment: line.slice(at).replace(/^\s+# /, "") };
}

/** Runs a command line with bash (README's examples are shell lines: pipes, quotes). */
async function runLine(command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("bash", {
    args: ["-c", command],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

Deno.test("README's server and client examples do what their comments say", async () => {
  const [serverLine] = examples("server");
  // `[--flag value]` shows a default: given explicitly here, with a port of the test's own.
  const serverArgs = serverLine.replace(/[[\]]/g, "").replace("--port 5557", "--port 0").split(
    /\s+/,
  );
  assert.equal(serverArgs[0], "dist");
  const server = await startDist(serverArgs.slice(1));
  const noPty = await ptyUnavailable();
  try {
    const dist = distCommand([]);
    const distWords = [dist.exe, ...dist.args].map((a) => `'${a.replaceAll("'", "'\\''")}'`);
    for (const line of examples("client")) {
      const { command, comment } = split(line);
      const what = `README: ${line}`;
      const cmd = command
        .replace("[--connect 127.0.0.1:5556]", `--connect ${server.address}`)
        .replaceAll("127.0.0.1:5557", server.address)
        .replaceAll(" :5557", ` ${server.address}`)
        .replace(/\bdist /, `${distWords.join(" ")} `);
      assert.doesNotMatch(cmd, /5556|5557/, `${what}: an address the test cannot use`);
      if (comment.startsWith("interactive shell")) {
        if (noPty) continue;
        const words = command.split(/\s+/).slice(1);
        const shell = startPty(words.map((w) => w === "127.0.0.1:5557" ? server.address : w));
        try {
          await shell.waitFor(/dist> $/);
          await shell.type("add 3 4\r");
          await shell.waitFor(/\s7\r\n/);
          await shell.type("exit\r");
          assert.equal(await shell.status, 0, `${what}\n${shell.screen()}`);
        } finally {
          await shell.kill();
        }
        continue;
      }
      const r = await runLine(cmd);
      const exit = /\bexit (\d+)/.exec(comment);
      assert.equal(r.code, exit ? Number(exit[1]) : 0, `${what}\nstderr: ${r.stderr}`);
      const prints = /^prints (\S+)/.exec(comment);
      if (prints) assert.equal(r.stdout, `${prints[1]}\n`, what);
      if (comment.startsWith("{")) {
        const prefix = comment.slice(0, comment.indexOf("…"));
        assert.ok(r.stdout.startsWith(prefix), `${what}\nstdout: ${r.stdout}`);
        JSON.parse(r.stdout);
      }
      const perLine = /one result per line: (.*)$/.exec(comment);
      if (perLine) assert.deepEqual(lines(r.stdout), perLine[1].split(", "), what);
      const random = /^(\d+) random operations and a summary/.exec(comment);
      if (random) {
        const out = lines(r.stdout);
        assert.equal(out.length, Number(random[1]) + 1, what);
        assert.match(out.at(-1)!, new RegExp(`^${random[1]} requests: ${random[1]} ok, 0 errors`));
      }
      if (command.includes("--bench")) {
        assert.match(r.stdout, /^\d+ requests in [\d.]+ s, \d+ ok: \d+ req\/s/m, what);
        assert.match(r.stdout, /^errors: none$/m, what);
      }
      if (command.includes("--rate")) assert.match(r.stdout, /^rate: target 5,000\/s/m, what);
    }
  } finally {
    await server.stop();
  }
});
