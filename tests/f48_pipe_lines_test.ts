/**
 * The client's line mode from a pipe (roles/client/pipe_lines.ts, h48 P7):
 * a line longer than the bound is dropped as it streams and given as one
 * `tooLong` with its number, the lines around it as they are; a character
 * split between two reads is whole. (`dist client < /dev/zero` grew one
 * line until V8 gave up.)
 */
import assert from "node:assert/strict";
import { type PipeLine, PipeLines } from "../roles/client/pipe_lines.ts";
import { runDist } from "./helpers/dist.ts";
import { startServerRole } from "./helpers/server_role.ts";

/** A reader giving `bytes` in reads of at most `step` bytes. */
function reader(bytes: Uint8Array, step: number) {
  let off = 0;
  return (buf: Uint8Array): Promise<number | null> => {
    if (off >= bytes.length) return Promise.resolve(null);
    const n = Math.min(step, buf.length, bytes.length - off);
    buf.set(bytes.subarray(off, off + n));
    off += n;
    return Promise.resolve(n);
  };
}

async function all(lines: PipeLines): Promise<PipeLine[]> {
  const out: PipeLine[] = [];
  for (let l = await lines.next(); l !== undefined; l = await lines.next()) out.push(l);
  return out;
}

Deno.test("PipeLines: a line past the bound is one tooLong, the others whole, a split character whole", async () => {
  const text = `add 1 2\r\n${"x".repeat(50)}\nécho é\r\rlast`;
  for (const step of [1, 3, 7, 1000]) {
    const lines = new PipeLines(reader(new TextEncoder().encode(text), step), 20);
    assert.deepEqual(await all(lines), [
      { text: "add 1 2" },
      { tooLong: 2 },
      { text: "écho é" },
      { text: "" },
      { text: "last" },
    ], `reads of ${step} bytes`);
  }
});

Deno.test("client line mode: a line past 1 MiB is refused as it streams, the next one runs (h48 P7)", async () => {
  // A 3 MiB line, then one to run: one refusal for the long line, then 3.
  const server = await startServerRole();
  try {
    const input = "a".repeat(3 << 20) + "\nadd 1 2\n";
    const run = await runDist(["client", "-c", `127.0.0.1:${server.port}`], {
      stdin: input,
      timeoutMs: 30_000,
    });
    assert.equal(run.timedOut, false);
    assert.equal(run.code, 1, run.stderr);
    const lines = run.stdout.split("\n").filter((l) => l !== "");
    assert.deepEqual(lines, ["error BAD_REQUEST: line 1: longer than 1 MiB, skipped", "3"]);
  } finally {
    await server.stop();
  }
});

Deno.test("PipeLines: end() while a read waits ends the lines (a stop while stdin sends nothing)", async () => {
  const lines = new PipeLines(() => new Promise<number | null>(() => {}));
  const next = lines.next();
  lines.end();
  assert.equal(await next, undefined);
});
