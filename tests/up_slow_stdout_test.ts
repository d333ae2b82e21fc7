/**
 * A reader of `dist up`'s stdout that stops reading slows only the output
 * (launch/output_queue.ts), never the launcher (hostile34 Z9: synchronous
 * writes to a slow reader held the dashboard's answers for seconds): while
 * nobody reads, a consumer's flood of lines is queued up to a bound and
 * the rest dropped, the dashboard answers, and once the reader is back a
 * line says how many of the consumer's lines were dropped, its lines whole.
 */
import assert from "node:assert/strict";
import { connect } from "../clients/mod.ts";
import { distCommand } from "./helpers/dist.ts";
import { assertGone, topologyFile } from "./helpers/up.ts";

const TOPOLOGY = `
[[broker]]
name = "broker"
port = 0

[[consumer]]
name = "consumer"
broker = "broker"
topic = "/"
`;

const COUNT = 20_000;

Deno.test("dist up: a stdout nobody reads does not block the launcher; the lines past its bound are dropped and counted (hostile34 Z9)", async () => {
  const file = await topologyFile(TOPOLOGY);
  const { exe, args } = distCommand(["up", file, "--dashboard", "127.0.0.1:0"]);
  const child = new Deno.Command(exe, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
    env: { NO_COLOR: "1" },
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const readUntil = async (pattern: RegExp, ms: number): Promise<RegExpMatchArray> => {
    const end = Date.now() + ms;
    for (;;) {
      const m = out.match(pattern);
      if (m !== null) return m;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const r = await Promise.race([
        reader.read(),
        new Promise<never>((_, reject) =>
          timer = setTimeout(() => reject(new Error(`no ${pattern} in:\n${out}`)), end - Date.now())
        ),
      ]).finally(() => clearTimeout(timer));
      if (r.done) throw new Error(`dist up ended without ${pattern}:\n${out}`);
      out += r.value;
    }
  };
  const pids = () => [...out.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
  const pub = { conn: undefined as Awaited<ReturnType<typeof connect>> | undefined };
  try {
    const [, url] = await readUntil(/All 2 ready in [\d.]+ s; dashboard at (\S+)/, 30_000);
    const [, broker] = out.match(/broker +\| .*Listening on (\S+:\d+)/)!;
    // From here on nobody reads the launcher's stdout: its pipe fills.
    pub.conn = await connect(broker);
    const line = "v".repeat(200);
    for (let i = 0; i < COUNT; i++) {
      await pub.conn.publish(`/flood/${i % 10}`, line, { retain: false });
    }
    await pub.conn.publish("/flood/end", "end", { retain: false, confirm: true });
    await new Promise((r) => setTimeout(r, 1000)); // the consumer's lines reach the launcher
    for (let i = 0; i < 4; i++) {
      const t0 = performance.now();
      const res = await fetch(new URL("/api/cluster", url), { signal: AbortSignal.timeout(3000) });
      assert.equal(res.status, 200);
      const cluster = await res.json();
      assert.ok(Array.isArray(cluster.instances), JSON.stringify(cluster).slice(0, 200));
      assert.ok(performance.now() - t0 < 3000);
      await new Promise((r) => setTimeout(r, 250));
    }
    // Reading again: what was queued comes, then the count of what was not.
    const [, dropped] = await readUntil(
      /dist up: (\d+) lines? of consumer dropped: stdout is read slower than they come/,
      30_000,
    );
    assert.ok(Number(dropped) > 0 && Number(dropped) < COUNT, dropped);
    const lines = out.split("\n").slice(0, -1);
    const flood = lines.filter((l) => /\/flood\/\d /.test(l));
    assert.ok(flood.length > 100, `${flood.length} lines of the flood shown`);
    // Whole lines, never two run together.
    for (const l of flood) assert.match(l, /^consumer \| .*\/flood\/\d .*v{200}$/, l);
  } finally {
    pub.conn?.close();
    try {
      child.kill("SIGTERM");
    } catch {
      // Exited.
    }
    const drain = (async () => {
      try {
        for (;;) {
          const r = await reader.read();
          if (r.done) break;
          out += r.value;
        }
      } catch {
        // Closed.
      }
    })();
    const status = await Promise.race([
      child.status,
      new Promise<null>((r) => setTimeout(() => r(null), 15_000)),
    ]);
    if (status === null) child.kill("SIGKILL");
    await child.status;
    await drain;
    for (const pid of pids()) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Gone.
      }
    }
    await assertGone(pids());
    await Deno.remove(file).catch(() => {});
  }
});
