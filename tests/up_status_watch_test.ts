/**
 * `dist status --watch` against a real `dist up`: tables one after another
 * with a RATE column into a pipe, a rate that rises while a client sends
 * load and falls back after, JSON lines with --json, the table redrawn in
 * place on a terminal, and Ctrl-C ending it with exit code 0.
 */
import assert from "node:assert/strict";
import { distCommand, runDist } from "./helpers/dist.ts";
import { ptyUnavailable, startPty } from "./helpers/pty.ts";
import { startUp, stopCleanly, topologyFile } from "./helpers/up.ts";

const TOPOLOGY = `
[[server]]
name = "server"
port = 0

[[consumer]]
name = "consumer"
broker = "broker"

[[broker]]
name = "broker"
port = 0
`;

/** `dist status … --watch` with its stdout read as it comes. */
function startWatch(args: string[]) {
  const { exe, args: argv } = distCommand(["status", ...args, "--watch"]);
  const child = new Deno.Command(exe, {
    args: argv,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let out = "";
  const reading = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) out += chunk;
  })();
  const errText = new Response(child.stderr).text();
  let stopped: Promise<{ code: number; stderr: string }> | undefined;
  return {
    out: () => out,
    async waitFor(test: (text: string) => boolean, ms: number, what: string) {
      const end = performance.now() + ms;
      while (!test(out)) {
        if (performance.now() > end) throw new Error(`No ${what} within ${ms} ms:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stop(): Promise<{ code: number; stderr: string }> {
      return stopped ??= (async () => {
        child.kill("SIGINT");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        const { code } = await child.status;
        clearTimeout(timer);
        await reading;
        return { code, stderr: await errText };
      })();
    },
  };
}

/** The server's rate in each table printed so far (requests/s; NaN for "-"). */
function serverRates(text: string): number[] {
  return [...text.matchAll(/^server +server +\S+ +up +(\S+)/gm)].map((m) => Number(m[1]));
}

Deno.test("dist status --watch prints tables with rates that follow the load", async () => {
  const file = await topologyFile(TOPOLOGY);
  const up = startUp([file, "--no-dashboard"]);
  try {
    const [, address] = await up.waitFor(/server ready at (\S+) /);
    await up.waitFor(/All 3 ready/);
    const watch = startWatch([file, "--interval", "300ms"]);
    try {
      await watch.waitFor(
        (t) => serverRates(t).some((r) => !Number.isNaN(r)),
        15_000,
        "a table with the server's rate",
      );
      const text = watch.out();
      assert.match(text, /^INSTANCE +ROLE +ADDRESS +STATE +RATE +PID/m);
      assert.match(text, /^broker +broker +\S+ +up +[\d.]+ messages\/s/m);
      assert.match(text, /^consumer +consumer +- +ready +- +\d+/m, "no rate, but its pid");
      const idle = serverRates(text).filter((r) => !Number.isNaN(r)).at(-1)!;
      const bench = await runDist(
        ["client", "--connect", address, "--bench", "--duration", "3s", "--rate", "300"],
        { timeoutMs: 20_000 },
      );
      assert.equal(bench.code, 0, bench.stderr);
      await watch.waitFor(
        (t) => serverRates(t).some((r) => r >= 150),
        10_000,
        "a rate near 300 requests/s",
      );
      assert.ok(idle < 50, `idle rate ${idle}`);
      // The load is over: the rate falls back.
      const seen = serverRates(watch.out()).length;
      await watch.waitFor(
        (t) => serverRates(t).slice(seen).some((r) => r < 50),
        10_000,
        "the rate back near idle",
      );
      const tables = watch.out().split(/^\S+ at \d\d:\d\d:\d\d /m).length - 1;
      assert.ok(tables >= 3, `${tables} tables`);
      const { code } = await watch.stop();
      assert.equal(code, 0);
    } finally {
      await watch.stop();
    }
  } finally {
    await stopCleanly(up);
    await Deno.remove(file);
  }
});

Deno.test("dist status --watch --json prints one object per instance a round", async () => {
  const file = await topologyFile(TOPOLOGY);
  const up = startUp([file, "--no-dashboard"]);
  try {
    await up.waitFor(/All 3 ready/);
    const watch = startWatch([file, "--json", "--interval", "200ms"]);
    try {
      await watch.waitFor(
        (t) => t.split("\n").filter((l) => l.includes('"rate":')).length >= 9,
        15_000,
        "three rounds",
      );
      const rows = watch.out().trim().split("\n").map((l) => JSON.parse(l));
      const server = rows.filter((r) => r.name === "server");
      assert.ok(server.length >= 3);
      assert.equal(server.at(-1).health, "up");
      assert.equal(server.at(-1).rate_unit, "requests/s");
      assert.equal(typeof server.at(-1).rate, "number");
      assert.equal(rows.find((r) => r.name === "consumer").rate, null);
    } finally {
      await watch.stop();
    }
  } finally {
    await stopCleanly(up);
    await Deno.remove(file);
  }
});

const noPty = await ptyUnavailable();

Deno.test({
  name: noPty
    ? `dist status --watch on a terminal (skipped: ${noPty})`
    : "dist status --watch redraws the table in place on a terminal; Ctrl-C ends it",
  ignore: noPty !== undefined,
  async fn() {
    const file = await topologyFile(TOPOLOGY);
    const up = startUp([file, "--no-dashboard"]);
    try {
      await up.waitFor(/All 3 ready/);
      const term = startPty(["status", file, "--watch", "--interval", "200ms"]);
      try {
        await term.waitFor(/requests\/s/, { ms: 15_000 });
        const from = term.screen().length;
        await term.waitFor(/requests\/s/, { from, ms: 5000 });
        const screen = term.screen();
        // Cleared once, then each table from the top left, each line cleared: no scrolling.
        assert.equal(screen.split("\x1b[2J").length - 1, 1);
        assert.ok(screen.split("\x1b[H").length - 1 >= 2, "at least two tables, in place");
        assert.ok(screen.includes("\x1b[K"), "each line cleared");
        await term.type("\x03");
        assert.equal(await term.status, 0, term.screen());
      } finally {
        await term.kill();
      }
    } finally {
      await stopCleanly(up);
      await Deno.remove(file);
    }
  },
});

Deno.test("dist status --interval below 100ms is refused", async () => {
  const res = await runDist(["status", "--watch", "--interval", "10ms"]);
  assert.equal(res.code, 2);
  assert.match(res.stderr, /^dist: --interval must be at least 100ms$/m);
});
