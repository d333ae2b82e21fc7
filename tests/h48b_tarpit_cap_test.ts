/**
 * h48b V-tarpit: the per-source cap of 16 paused connections (roles/balancer/tarpit.ts, N10)
 * closes "the one refused most, the newest among equals". Every local client shares one source
 * (127.0.0.1, a NAT's address), so an attacker decides whose connection is closed: with 15
 * fresh connections of its own paused (each refused once), a legit connection refused twice
 * (a client whose two large MessagePack requests grew past the frame as JSON) is closed the
 * moment the attacker has a 16th refused, and its other requests in flight are lost with it.
 * The attacker's own connections, each refused once, are never the ones closed. A pause was the
 * whole cost of a refusal for a legit client (N10's aim); the cap made it a close the attacker
 * chooses.
 */
import assert from "node:assert/strict";
import type { Peer } from "../wire/mod.ts";
import { HELD_PER_SOURCE, Tarpit } from "../roles/balancer/tarpit.ts";

function fakePeer(): Peer & { closedNow: boolean } {
  let gone = () => {};
  const fake = {
    closedNow: false,
    get isClosed() {
      return fake.closedNow;
    },
    conn: { pauseReading: () => {}, resumeReading: () => {} },
    close: () => {
      fake.closedNow = true;
      gone();
    },
    closed: new Promise<void>((resolve) => gone = resolve),
  };
  return fake as unknown as Peer & { closedNow: boolean };
}

const SOURCE = "127.0.0.1";

Deno.test("h48b: an attacker's fresh refusals do not close a legit paused connection of its source", () => {
  let now = 0;
  const tarpit = new Tarpit(() => now);
  tarpit.hold(fakePeer(), SOURCE); // the attacker's first
  now += 1;
  const legit = fakePeer();
  tarpit.hold(legit, SOURCE);
  now += 1;
  tarpit.hold(legit, SOURCE); // its next large request (or its pipelined second)
  for (let i = 1; i < HELD_PER_SOURCE; i++) {
    now += 1;
    tarpit.hold(fakePeer(), SOURCE);
  }
  assert.equal(tarpit.closed, 1, `one connection past the cap: ${tarpit.closed}`);
  assert.equal(
    legit.closedNow,
    false,
    "the legit client's connection was closed for the attacker's",
  );
});
