/**
 * The unread tallies of roles/balancer/unread.ts, kept oldest first in
 * arrays (not a Map): random sends and answers on three backends, send
 * times mostly in order and now and then not, answers in any order, against
 * a plain count of what is unanswered. A tally dropped, moved or compacted
 * wrongly shows as bytes still counted or missing.
 */
import assert from "node:assert/strict";
import { Unread } from "../roles/balancer/unread.ts";
import { AnswerTime } from "../roles/balancer/slots.ts";

const PACED = 4096;
const LARGE = 32768;

/** A small deterministic generator (mulberry32). */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Sent = { backend: object; at: number; bytes: number };

Deno.test("Unread: random sends and answers in any order leave counted exactly what is unanswered, and a settle after SIT_MS nothing", () => {
  for (let seed = 1; seed <= 30; seed++) {
    const rand = random(seed);
    const unread = new Unread(PACED, LARGE, new AnswerTime());
    const backends = [{}, {}, {}];
    const out: Sent[] = [];
    let now = 1000;
    let ops = 0;
    const check = () => {
      for (const b of backends) {
        const mine = out.filter((s) => s.backend === b);
        const bytes = mine.reduce((n, s) => n + s.bytes, 0);
        const paced = mine.reduce((n, s) => n + (s.bytes >= PACED ? s.bytes : 0), 0);
        assert.equal(unread.on(b), bytes, `seed ${seed}, op ${ops}: bytes on a backend`);
        assert.equal(unread.pacedOn(b), paced, `seed ${seed}, op ${ops}: paced bytes on a backend`);
      }
      assert.equal(unread.bytes, out.reduce((n, s) => n + s.bytes, 0), `seed ${seed}: bytes`);
      assert.equal(unread.large, out.filter((s) => s.bytes >= LARGE).length, `seed ${seed}: large`);
    };
    // Send times within SIT_MS of each other (0.01 ms apart): nothing settles before the end.
    for (ops = 0; ops < 2000; ops++) {
      if (out.length === 0 || rand() < 0.55) {
        // A run of 1 to 5 requests to one backend, now or (1 in 10) a little earlier.
        now += 0.01;
        const at = rand() < 0.1 ? now - 0.005 : now;
        const backend = backends[Math.floor(rand() * 3)];
        const n = 1 + Math.floor(rand() * 5);
        for (let i = 0; i < n; i++) {
          const bytes = rand() < 0.2
            ? PACED + Math.floor(rand() * 40_000)
            : 1 + Math.floor(rand() * 200);
          unread.took(bytes, backend, at);
          out.push({ backend, at, bytes });
        }
      } else {
        // An answer to any request still out (mostly an old one).
        const i = rand() < 0.7
          ? Math.floor(rand() * Math.min(3, out.length))
          : Math.floor(rand() * out.length);
        const [s] = out.splice(i, 1);
        unread.gave(s.bytes, s.backend, s.at, now);
      }
      check();
    }
    // A long line answered in order (its head moves, and what is left moves to the start).
    const b0 = backends[0];
    for (let r = 0; r < 200; r++) {
      now += 0.01;
      unread.took(100 + r, b0, now);
      out.push({ backend: b0, at: now, bytes: 100 + r });
    }
    while (out.length > 20) {
      const i = out.findIndex((s) => s.backend === b0);
      const j = i >= 0 && rand() < 0.9 ? i : Math.floor(rand() * out.length);
      const [s] = out.splice(j, 1);
      unread.gave(s.bytes, s.backend, s.at, now);
      check();
    }
    // Read long ago, answered fast: everything left settles.
    unread.settle(now + 200);
    assert.equal(unread.bytes, 0, `seed ${seed}: settled`);
    for (const b of backends) assert.equal(unread.on(b), 0, `seed ${seed}: settled on a backend`);
  }
});
