/**
 * What a server (or anything posing as a worker) answers reaches the user's
 * terminal through `dist client`: terminal escapes and line breaks in it are
 * printed escaped, never raw (found by a hostile-peer review: the consumer
 * already did this, the client printed a string result as it came).
 */
import assert from "node:assert/strict";
import { runDist, startDist } from "./helpers/dist.ts";

/** Whether `text` holds a control character other than a line's own end, or the RLO override. */
const hasControl = (text: string) =>
  [...text].some((c) => {
    const n = c.charCodeAt(0);
    return (n < 0x20 && n !== 0x0a) || n === 0x7f || n === 0x202e;
  });

const HOSTILE = "\u001b]0;owned\u0007\u001b[2Jok\nsecond line\u202eevil";

Deno.test("dist client prints a result's terminal escapes and line breaks escaped", async () => {
  const server = await startDist(["server", "--port", "0"]);
  try {
    const plain = await runDist(["client", "--connect", server.address, "echo", HOSTILE]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.ok(
      !hasControl(plain.stdout),
      JSON.stringify(plain.stdout),
    );
    assert.equal(plain.stdout.trim().split("\n").length, 1, "one line");
    // Escaped, it is still the same text: a JSON string of it.
    assert.equal(JSON.parse(plain.stdout.trim()), HOSTILE);

    const json = await runDist(["client", "--connect", server.address, "--json", "echo", HOSTILE]);
    assert.equal(json.code, 0, json.stderr);
    assert.ok(!hasControl(json.stdout));
    assert.equal(JSON.parse(json.stdout.trim()).result, HOSTILE);

    // A printable answer prints as before.
    const ok = await runDist(["client", "--connect", server.address, "echo", "héllo wörld"]);
    assert.equal(ok.stdout.trim(), "héllo wörld");
  } finally {
    await server.stop();
  }
});
