/**
 * Review r48 R2 (m48's Registrar.onFailure): "A listener that throws is logged and kept", but an
 * async listener (the usual shape for an application that alerts or records: `async (f) => {
 * await alert(f) }`) that rejects is neither: its promise is dropped, and Deno ends the whole
 * application on the unhandled rejection at the first binder outage.
 *
 * Outcome asserted: the process whose async listener rejects at each failed try is still running
 * after two failures (prints `alive after 2`) and exits 0. Bounded: the child stops itself after
 * 10 s at most, and is killed at 30 s.
 */
import assert from "node:assert/strict";
import { freePort } from "./helpers/dist.ts";

const ROOT = new URL("../", import.meta.url).pathname;

Deno.test("r48: a Registrar's async onFailure listener that rejects does not end the application", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "tests/helpers/r48_async_listener.ts", `127.0.0.1:${freePort()}`],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  try {
    const out = await child.output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.match(stdout, /^alive after [2-9]/m, `stdout: ${stdout}\nstderr: ${stderr}`);
    assert.equal(out.code, 0, stderr);
  } finally {
    clearTimeout(timer);
  }
});
