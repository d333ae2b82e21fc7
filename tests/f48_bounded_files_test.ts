/**
 * h48 P1 beside h48_unbounded_files_test.ts: there `/dev/zero` as a secrets
 * file is refused by its mode (666) before any read; here the bound itself,
 * on files that pass the owner check (0600): a token file past 64 KiB and
 * a users file past 8 MiB are refused naming the bound, one at the bound
 * is read; a pipe's text serves the second reader (the token is read by a
 * role's dialer and listener settings alike).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  readUserFile,
  readUserFileSync,
  SECRET_RULE,
  UsageError,
  USERS_RULE,
} from "../config/mod.ts";
import { distCommand, runDist } from "./helpers/dist.ts";

Deno.test("a token file past 64 KiB is refused by its bound, one of 64 KiB read (h48 P1)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "f48-bounded-" });
  try {
    const big = join(dir, "token");
    await Deno.writeTextFile(big, "a".repeat(64 * 1024 + 1), { mode: 0o600 });
    await Deno.chmod(big, 0o600);
    const run = await runDist(["server", "--port", "0", "--token-file", big], {
      timeoutMs: 15_000,
    });
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /^dist: --token-file \S+: more than 64 KiB/m);

    await Deno.writeTextFile(big, "a".repeat(64 * 1024));
    assert.equal(readUserFileSync("--token-file", big, SECRET_RULE).length, 64 * 1024);
    assert.equal((await readUserFile("--token-file", big, SECRET_RULE)).length, 64 * 1024);

    const users = join(dir, "users.toml");
    await Deno.writeTextFile(users, "#".repeat(8 * 1024 * 1024 + 1), { mode: 0o600 });
    await Deno.chmod(users, 0o600);
    assert.throws(
      () => readUserFileSync("Users file", users, USERS_RULE),
      (err: Error) => err instanceof UsageError && /more than 8 MiB/.test(err.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a pipe named as a token file is read once and serves every reader (h48 P1)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "f48-fifo-" });
  const fifo = join(dir, "token");
  try {
    await new Deno.Command("mkfifo", { args: ["-m", "600", fifo] }).output();
    const writer = (async () => {
      const file = await Deno.open(fifo, { write: true });
      await file.write(new TextEncoder().encode("tok-1\n"));
      file.close();
    })();
    const first = await readUserFile("--token-file", fifo, SECRET_RULE);
    await writer;
    // No writer any more: a second open would wait for ever; the text read is kept.
    assert.equal(first, "tok-1\n");
    assert.equal(readUserFileSync("--token-file", fifo, SECRET_RULE), "tok-1\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Whether process `pid` catches SIGTERM (its SigCgt mask: Deno's listener is installed). */
async function catchesTerm(pid: number): Promise<boolean> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
  const mask = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return mask !== undefined && (BigInt(`0x${mask}`) & (1n << 14n)) !== 0n;
}

Deno.test("SIGTERM stops a role waiting for a FIFO's writer (h48 P1: a synchronous read ignored it)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "f48-fifo-term-" });
  const fifo = join(dir, "token");
  await new Deno.Command("mkfifo", { args: ["-m", "600", fifo] }).output();
  const { exe, args } = distCommand(["server", "--port", "0", "--token-file", fifo]);
  const child = new Deno.Command(exe, { args, stdout: "null", stderr: "null" }).spawn();
  const kill = setTimeout(() => child.kill("SIGKILL"), 30_000);
  try {
    // The listener is installed before the files are read: wait for it, bounded.
    for (let i = 0; i < 200 && !await catchesTerm(child.pid); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(await catchesTerm(child.pid), "dist never listened for SIGTERM");
    await new Promise((r) => setTimeout(r, 300)); // Now in the FIFO's open.
    child.kill("SIGTERM");
    const { code, signal } = await child.status;
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, "not stopped by its SIGTERM");
  } finally {
    clearTimeout(kill);
    await Deno.remove(dir, { recursive: true });
  }
});
