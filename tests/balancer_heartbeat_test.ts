/**
 * The heartbeat a client's hello asks for, at a balancer: the agreed one is
 * the shorter of the two sides' (DESIGN.md's handshake), so a client asking
 * 60 s gets the balancer's `--heartbeat` (1 s by default): the balancer must
 * find a dead client within its own heartbeat × liveness, since its slots,
 * queue and shares are held for it meanwhile. A balancer given a longer
 * `--heartbeat` agrees to a longer one.
 */
import assert from "node:assert/strict";
import { startBalancer } from "./helpers/balancer.ts";
import { HELLO, jsonFrame, RawReader, sleep, writeAll } from "./helpers/raw.ts";

/** Dials `address`, says hello asking `heartbeat` ms, and returns the welcome's and the connection. */
async function hello(address: string, heartbeat: number) {
  const [hostname, port] = address.split(":");
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const reader = new RawReader(conn);
  await writeAll(conn, jsonFrame({ ...HELLO, heartbeat }));
  const welcome = await reader.json();
  return { conn, reader, heartbeat: welcome?.heartbeat };
}

Deno.test("a balancer agrees the shorter heartbeat: its own 1 s to a hello asking 60 s, 60 s with --heartbeat 60s", async () => {
  const lb = await startBalancer([]);
  const long = await startBalancer([], ["--heartbeat", "60s"]);
  const conns: Deno.Conn[] = [];
  try {
    const asked60 = await hello(lb.address, 60_000);
    conns.push(asked60.conn);
    assert.equal(asked60.heartbeat, 1000);
    const asked200 = await hello(lb.address, 200);
    conns.push(asked200.conn);
    assert.equal(asked200.heartbeat, 200);
    const agreed60 = await hello(long.address, 60_000);
    conns.push(agreed60.conn);
    assert.equal(agreed60.heartbeat, 60_000);
    // Silent past 3 × 1 s: still served there (the default would have closed it).
    await sleep(3500);
    await writeAll(agreed60.conn, jsonFrame({ id: 1, method: "sys.ping" }));
    const answer = await agreed60.reader.json();
    assert.equal(answer?.id, 1);
    assert.ok(answer?.result !== undefined, JSON.stringify(answer));
  } finally {
    for (const c of conns) c.close();
    await lb.stop();
    await long.stop();
  }
});
