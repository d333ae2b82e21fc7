/**
 * Hostile review h47b N5 (stop 47's D5 fix, auth/records.ts hostDelay): a
 * refusal's delay grows with the host's recent failures whatever name they
 * claimed. On a shared host (every client of `dist up` on one machine is
 * 127.0.0.1; a NAT; a CI runner) an attacker's wrong hellos, ten cut short
 * by closing their connection so they cost it nothing, make a legit user's
 * one mistyped password wait maxDelayMs (10 s by default) before its
 * refusal, where its own record's first failure waited baseMs (250 ms)
 * before the change: the legit user pays for the attacker's failures.
 */
import assert from "node:assert/strict";
import { Gate, hashPassword, parseUsers } from "../auth/mod.ts";
import type { HelloClaim, Proof } from "../wire/mod.ts";

const COST = { ln: 10, r: 8, p: 1 };

function wrongProof(user: string): Proof {
  return { mech: "password", user, tokenId: undefined, matches: () => false };
}

function hello(user: string, closed: Promise<unknown>): HelloClaim {
  return {
    address: "127.0.0.1:40000",
    host: "127.0.0.1",
    role: "client",
    name: "c",
    credentials: {},
    proof: wrongProof(user),
    closed,
  };
}

Deno.test("h47b N5: an attacker's failures from the same host do not make a legit user's one typo wait the longest delay", async () => {
  const text = `[users.alice]\npassword = "${await hashPassword("pw-alice", COST)}"\n`;
  const baseMs = 100;
  const maxDelayMs = 3000;
  const gate = new Gate({ users: parseUsers(text, "users.toml"), delays: { baseMs, maxDelayMs } });
  // The attacker: 10 wrong hellos at made-up names, each connection closed at once (no wait).
  for (let i = 0; i < 10; i++) {
    await assert.rejects(gate.authenticate(hello(`ghost-${i}`, Promise.resolve())));
  }
  // alice mistypes once, from the same host (her first failure).
  const t0 = performance.now();
  await assert.rejects(gate.authenticate(hello("alice", new Promise(() => {}))));
  const waited = performance.now() - t0;
  // Her own record's first failure is baseMs (100 ms); the attacker's ten make it maxDelayMs
  // (3000). The bound, 10 baseMs, is 3x below what it is now and 10x above what it should be.
  assert.ok(
    waited < 10 * baseMs,
    `alice's first wrong password waited ${waited.toFixed(0)} ms (base ${baseMs} ms): ` +
      "the attacker's failures from her host were charged to her",
  );
});
