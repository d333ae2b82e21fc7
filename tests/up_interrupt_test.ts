/**
 * Ctrl-C under README's headline commands, typed on a terminal as a person
 * would: an interactive bash on a pseudo-terminal runs `deno task up FILE`
 * (and `npx --yes deno@2.9.6 task up FILE`) as a foreground job, so one
 * Ctrl-C reaches the task runner and the launcher together, and the task
 * runner forwards one more. One Ctrl-C must stop gracefully; a second one,
 * pressed a moment later, kills at once.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { type PtySession, ptyUnavailable, startPtyProgram } from "./helpers/pty.ts";
import { alive, assertGone, topologyFile } from "./helpers/up.ts";
import { sleep } from "./helpers/raw.ts";
import { parseAddress } from "../config/mod.ts";
import { dial, type Peer } from "../wire/mod.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const NO_PTY = await ptyUnavailable();

/** A binder, a server registered with it, and a client sending 20 requests a second. */
const TOPOLOGY = `
[[binder]]
port = 0

[[server]]
port = 0
service = "compute"
binders = ["binder"]

[[client]]
connect = "server"
bench = true
duration = "60s"
concurrency = 1
rate = 20
`;

/**
 * A server that lets requests in flight finish when stopped, for up to 40 s:
 * with one of 30 s in flight (the test's own), stopping it gracefully takes
 * that long.
 */
const SLOW_TOPOLOGY = `
[[server]]
port = 0
grace = "40s"
`;

function quote(word: string): string {
  return `'${word.replaceAll("'", "'\\''")}'`;
}

/** Pids of the children the launcher reported on the terminal. */
function pids(screen: string): number[] {
  return [...screen.matchAll(/started, pid (\d+)/g)].map((m) => Number(m[1]));
}

/** The address the launcher says the server is ready at. */
function serverAddress(term: PtySession): { host: string; port: number } {
  return parseAddress(term.screen().match(/server ready at (\S+) /)![1]);
}

/**
 * Waits until the client has sent requests of its own (so its Ctrl-C
 * handling is in place: the launcher counts a client ready once spawned),
 * asking the server over one connection of the test's.
 */
async function clientBusy(term: PtySession): Promise<void> {
  const peer = await dial(serverAddress(term), { role: "test", name: "test" });
  try {
    for (let asked = 1; asked <= 200; asked++) {
      const stats = await peer.call("sys.stats", {}) as { requests: number };
      if (stats.requests - asked >= 2) return;
      await sleep(50);
    }
    throw new Error(`The client sends nothing:\n${term.screen()}`);
  } finally {
    peer.close();
  }
}

/**
 * Runs `command` (a shell line) in an interactive bash on a pseudo-terminal,
 * followed by `echo "exit=$?"`, and hands the session to `body` once every
 * instance is ready. Whatever happens, the shell and every child are gone
 * afterwards.
 */
async function inTerminal(
  command: string,
  body: (term: PtySession) => Promise<void>,
  options: { busy?: (term: PtySession) => Promise<void> } = {},
): Promise<void> {
  const term = startPtyProgram("bash", ["--norc", "--noprofile", "-i"], { cwd: REPO });
  try {
    await term.waitFor(/[$#] $/);
    await term.type(`${command}; echo "exit=$?"\r`);
    await term.waitFor(/All \d+ ready/, { ms: 60_000 });
    await (options.busy ?? clientBusy)(term);
    await body(term);
  } finally {
    await term.kill();
    for (const pid of pids(term.screen()).filter(alive)) Deno.kill(pid, "SIGKILL");
  }
}

/** Types one Ctrl-C and checks a graceful stop: client, then server (deregistered), then binder. */
async function checkGracefulStop(term: PtySession, options: { exitShown: boolean }) {
  const from = term.screen().length;
  await term.type("\x03");
  await term.waitFor(/dist up: Stopped 3 in/, { from, ms: 20_000 });
  if (options.exitShown) await term.waitFor(/exit=\d+/, { from });
  // Whatever else the terminal shows comes within a moment (npx's prompt, say).
  await sleep(300);
  const after = term.screen().slice(from);
  assert.match(after, /dist up: Stopping \(SIGINT\)/);
  assert.doesNotMatch(after, /Killing|SIGKILL|dist: /, after);
  const order = ["client stopped", "server stopped", "binder stopped"].map((l) =>
    after.indexOf(`dist up: ${l}\r\n`)
  );
  assert.ok(order.every((at, i) => at > (order[i - 1] ?? 0)), `stop order:\n${after}`);
  assert.match(after, /server +\| .*Deregistered compute@127\.0\.0\.1:\d+/);
  // The client reported what it did before it went.
  assert.match(after, /client +\| \d+ requests? in/);
  if (options.exitShown) assert.match(after, /exit=0/);
  await assertGone(pids(term.screen()));
}

Deno.test({
  name: "one Ctrl-C under deno task up stops gracefully and exits 0",
  ignore: NO_PTY !== undefined,
  async fn() {
    const file = await topologyFile(TOPOLOGY);
    try {
      await inTerminal(`${quote(Deno.execPath())} task up ${quote(file)}`, async (term) => {
        await checkGracefulStop(term, { exitShown: true });
      });
    } finally {
      await Deno.remove(file);
    }
  },
});

/** Why `npx --yes deno@2.9.6` cannot run here, or undefined when it can. */
async function npxUnavailable(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("npx", {
      args: ["--yes", "deno@2.9.6", "--version"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return out.success ? undefined : "npx cannot fetch deno@2.9.6 from the npm registry";
  } catch {
    return "npx is not installed";
  }
}

Deno.test({
  name: "one Ctrl-C under npx --yes deno@2.9.6 task up stops gracefully",
  ignore: NO_PTY !== undefined,
  async fn(t) {
    const why = await npxUnavailable();
    if (why !== undefined) {
      console.warn(`Skipped: ${why}`);
      await t.step({ name: why, ignore: true, fn() {} });
      return;
    }
    const file = await topologyFile(TOPOLOGY);
    try {
      // npm itself dies of the Ctrl-C, so the shell shows no exit line; the
      // launcher, left running, stops everything in order all the same.
      await inTerminal(`npx --yes deno@2.9.6 task up ${quote(file)}`, async (term) => {
        await checkGracefulStop(term, { exitShown: false });
      });
    } finally {
      await Deno.remove(file);
    }
  },
});

Deno.test({
  name: "a second Ctrl-C half a second after the first kills every instance at once, exit 130",
  ignore: NO_PTY !== undefined,
  async fn() {
    const file = await topologyFile(SLOW_TOPOLOGY);
    try {
      const command = `${quote(Deno.execPath())} task up ${quote(file)} --grace 40s`;
      let slow: Peer | undefined;
      // A request of 30 s in flight, read by the server (it answered the call sent after it).
      const busy = async (term: PtySession) => {
        slow = await dial(serverAddress(term), { role: "test", name: "test" });
        slow.call("sleep", { ms: 30_000 }, { timeout: 60_000 }).catch(() => {});
        await slow.call("sys.ping", {});
      };
      try {
        await inTerminal(command, async (term) => {
          const from = term.screen().length;
          await term.type("\x03");
          await term.waitFor(/server: Shutting down: finishing 1 connection/, { from });
          // The server lets the 30 s request finish: the graceful stop goes on.
          await sleep(600);
          assert.doesNotMatch(term.screen().slice(from), /Killing|server stopped/);
          const t0 = performance.now();
          await term.type("\x03");
          await term.waitFor(/exit=\d+/, { from });
          const after = term.screen().slice(from);
          assert.match(after, /dist up: Killing every instance/);
          assert.match(after, /dist: Interrupted again: every instance was killed/);
          assert.match(after, /exit=130/);
          assert.ok(performance.now() - t0 < 5000, "killed at once");
          await assertGone(pids(term.screen()));
        }, { busy });
      } finally {
        slow?.close();
      }
    } finally {
      await Deno.remove(file);
    }
  },
});
