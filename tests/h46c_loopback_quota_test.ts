/**
 * hostile46c F1: `--max-per-source` counted each loopback address as a source
 * of its own, so one local process dialing from 127.0.0.2, 127.0.0.3, …
 * (every 127/8 address is this machine's on Linux, and any process may bind
 * one) registered a hundred times its share: 100 addresses filled a default
 * binder (100,000 instances, 1-hour leases) in 7 s, and a real server's
 * registration was then `OVERLOADED` ("Registry full") for the hour. The
 * gate (hostile45c K-C3) and the broker's shares already count every
 * loopback address as one host; the binder's quota and `registrant` tags
 * must too.
 */
import assert from "node:assert/strict";
import { helloFrom } from "./helpers/from.ts";
import { jsonFrame, waitFor } from "./helpers/raw.ts";
import { startBinder } from "./helpers/binder.ts";

/** Registers `count` instances over a connection from `from`; the answers' error codes ("" for a lease). */
async function registerFrom(port: number, from: string, first: number, count: number) {
  const c = helloFrom(port, from);
  try {
    const welcome = await c.first();
    assert.equal(welcome.op, "welcome", JSON.stringify(welcome));
    for (let i = 0; i < count; i++) {
      c.socket.write(jsonFrame({
        id: i + 1,
        method: "binder.register",
        params: { service: "compute", host: "10.9.9.9", port: first + i, ttl_ms: 3_600_000 },
      }));
    }
    await waitFor(() => c.frames.length > count || c.closed, 10_000, "the answers");
    return c.frames.slice(1).map((f) => f.error?.code ?? "");
  } finally {
    c.socket.destroy();
  }
}

Deno.test("hostile46c F1: loopback addresses are one source for --max-per-source", async () => {
  const b = await startBinder({ maxPerSource: 5, maxInstances: 1000 });
  try {
    // Five from one loopback address: its whole share.
    assert.deepEqual(await registerFrom(b.port, "127.0.0.2", 1000, 5), ["", "", "", "", ""]);
    // Five more from other loopback addresses: the same machine, the same source.
    const more: string[] = [];
    for (let a = 3; a <= 7; a++) {
      more.push(...await registerFrom(b.port, `127.0.0.${a}`, a * 100, 1));
    }
    const taken = more.filter((code) => code === "").length;
    assert.equal(
      taken,
      0,
      `a local process took ${5 + taken} places, past --max-per-source 5, by dialing from ` +
        `other loopback addresses (${JSON.stringify(more)})`,
    );
    assert.ok(more.every((code) => code === "OVERLOADED"), JSON.stringify(more));
  } finally {
    await b.stop();
  }
});
