/**
 * hostile44a H-A8: c43's A10 fix refuses worker names with C0/C1 control
 * characters (clients/contracts/balancer.ts CONTROL_CHARS), but a name may
 * still hold what roles/_printable.ts says must never reach a terminal or
 * a line-based reader raw: the line and paragraph separators (U+2028,
 * U+2029: a log viewer or a JavaScript reader breaks the line there, and
 * the rest reads as a line of its own, "[ERR] …") and the bidirectional
 * controls (U+202E shows "w1\u202egnp.exe" as "w1exe.png"). The balancer
 * writes the name into its log raw ("Worker {name} registered from …",
 * "… left"), and lists it in `balancer.backends`.
 *
 * A user registers such names and reads the balancer's log.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { startBalancer, stopAll } from "./helpers/balancer.ts";
import { registerLiar } from "./helpers/hostile44.ts";
import { sleep } from "./helpers/raw.ts";

Deno.test("worker names never put separators or bidi controls into the balancer's log raw (hostile44a H-A8)", async () => {
  const balancer = await startBalancer([]);
  const sockets: net.Socket[] = [];
  try {
    const names = ["w1\u202egnp.exe", "w2\u2028[ERR] balancer: fake line", "w3\u2029x"];
    const answers: string[] = [];
    for (const name of names) {
      answers.push(await registerLiar(balancer.workerAddress, name, sockets));
    }
    await sleep(200);
    const log = balancer.stderr();
    const raw = ["\u202e", "\u2028", "\u2029"].filter((c) => log.includes(c));
    const summary = `registrations ${answers.join(", ")}; raw in the log: ${
      raw.map((c) => "U+" + c.charCodeAt(0).toString(16)).join(", ") || "none"
    }`;
    console.log(summary);
    // Main: all three registered, U+202E, U+2028 and U+2029 raw in the log.
    assert.equal(raw.length, 0, summary);
  } finally {
    for (const s of sockets) s.destroy();
    await stopAll([balancer]);
  }
});
