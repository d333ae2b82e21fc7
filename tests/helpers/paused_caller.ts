/**
 * A library caller for tests/library_paused_answer_test.ts: connects to the
 * server at Deno.args[0], sends `sleep` (Deno.args[1] ms) with a timeout of
 * Deno.args[2] ms, prints `sent` once it is written, then the outcome as
 * a JSON line: `{"ok":true}` or `{"code":"TIMEOUT","message":…}`.
 */
import { connect } from "../../clients/mod.ts";
import { DistError } from "../../wire/errors.ts";

const [address, sleepMs, timeoutMs] = Deno.args;
const conn = await connect(address, { redial: false });
const call = conn.request("sleep", { ms: Number(sleepMs) }, { timeout: Number(timeoutMs) });
// The request is written by now or at the next turn: let that turn come first.
await new Promise((r) => setTimeout(r, 0));
console.log("sent");
const outcome = await call.then(
  () => ({ ok: true }),
  (err) => ({
    code: err instanceof DistError ? err.code : String(err),
    message: String(err?.message),
  }),
);
console.log(JSON.stringify(outcome));
conn.close();
