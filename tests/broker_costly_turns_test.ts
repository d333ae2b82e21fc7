/**
 * CostlyTurns (roles/broker/costly_turns.ts): costly requests share a few
 * ms of each turn of the event loop, their connections in rotation, each
 * held while its request waits. Driven with fake owners and a fake clock.
 */
import assert from "node:assert/strict";
import {
  COSTLY_METHODS,
  CostlyTurns,
  REQUEST_MS,
  type TurnOwner,
} from "../roles/broker/costly_turns.ts";
import { DistError } from "../wire/mod.ts";

class Owner implements TurnOwner {
  held = 0;
  readonly conn = { isClosed: false };
  /** Called when its input is taken again (what it sent meanwhile). */
  onResume: (() => void) | undefined;
  holdInput(hold = true): void {
    this.held += hold ? 1 : -1;
    assert.ok(this.held >= 0, "held no more times than released");
    if (!hold && this.held === 0) this.onResume?.();
  }
}

/** A clock each job moves on by `cost` ms. */
function clocked(msPerTurn = 4) {
  let now = 0;
  const turns = new CostlyTurns({ msPerTurn, now: () => now });
  const job = (cost: number, f: () => unknown = () => {}) => () => {
    now += cost;
    return f();
  };
  return { turns, job };
}

const settled = (p: unknown) => Promise.resolve(p);
/** Lets the last turns' timers go off (a turn that spent time sets one more). */
const quiet = () => new Promise((r) => setTimeout(r, 20));

Deno.test("CostlyTurns runs requests at once while the turn has time, then one a turn's time in later turns", async () => {
  const { turns, job } = clocked(4);
  const a = new Owner();
  const order: string[] = [];
  // 3 ms: at once; the turn has 1 ms left, so the next runs at once too (5 ms spent).
  assert.equal(turns.run(a, job(3, () => order.push("a0"))), 1);
  assert.equal(turns.run(a, job(2, () => order.push("a1"))), 2);
  // Spent: the rest wait, their owner held until they have run.
  const later = [2, 3, 4].map((i) => turns.run(a, job(3, () => order.push(`a${i}`))));
  assert.ok(later.every((p) => p instanceof Promise));
  assert.deepEqual(order, ["a0", "a1"]);
  assert.equal(a.held, 1);
  assert.equal(turns.waiting, 3);
  await settled(later[1]);
  // Two a turn (3 ms, then 3 more past the 4): a2 and a3 in the first.
  assert.deepEqual(order, ["a0", "a1", "a2", "a3"]);
  assert.equal(a.held, 1);
  await settled(later[2]);
  assert.deepEqual(order.length, 5);
  // Held while its answer is written (the reactions set on its promise
  // before it ran), so nothing it sent after is handled ahead of that answer.
  assert.equal(a.held, 1, "held until its last answer is out");
  await Promise.resolve();
  assert.equal(a.held, 0, "released once nothing of it waits");
  assert.equal(turns.deferred, 3);
  await quiet();
});

Deno.test("CostlyTurns takes waiting owners in rotation, one request each", async () => {
  const { turns, job } = clocked(4);
  const owners = [new Owner(), new Owner(), new Owner()];
  const order: string[] = [];
  turns.run(owners[0], job(10)); // spends the turn
  const all: unknown[] = [];
  for (const [k, o] of owners.entries()) {
    for (let i = 0; i < 3; i++) all.push(turns.run(o, job(5, () => order.push(`${k}.${i}`))));
  }
  assert.deepEqual(owners.map((o) => o.held), [1, 1, 1]);
  await Promise.all(all);
  // One a turn (5 ms > 4), owners in turn: none waits behind all of another's.
  assert.deepEqual(order, ["0.0", "1.0", "2.0", "0.1", "1.1", "2.1", "0.2", "1.2", "2.2"]);
  assert.deepEqual(owners.map((o) => o.held), [0, 0, 0]);
  await quiet();
});

Deno.test("CostlyTurns rotates over sources first: one source's many connections take one turn a round", async () => {
  const { turns, job } = clocked(4);
  const attackers = [new Owner(), new Owner(), new Owner(), new Owner()];
  const legit = new Owner();
  const order: string[] = [];
  turns.run(legit, job(10), "legit"); // spends the turn
  const all: unknown[] = [];
  for (const [k, o] of attackers.entries()) {
    all.push(turns.run(o, job(5, () => order.push(`x${k}`)), "attacker"));
  }
  for (let i = 0; i < 2; i++) {
    all.push(turns.run(legit, job(5, () => order.push(`legit${i}`)), "legit"));
  }
  await Promise.all(all);
  // Each legit request waits behind one of the attacker's, not behind all four connections'.
  assert.deepEqual(order, ["x0", "legit0", "x1", "legit1", "x2", "x3"]);
  assert.deepEqual([...attackers, legit].map((o) => o.held), [0, 0, 0, 0, 0]);
  await quiet();
});

Deno.test("CostlyTurns: what an owner sent while held runs after its waiting request, in order", async () => {
  const { turns, job } = clocked(4);
  const a = new Owner();
  const b = new Owner();
  const order: string[] = [];
  turns.run(b, job(10)); // spends the turn
  const first = turns.run(a, job(1, () => order.push("a0")));
  const other = turns.run(b, job(5, () => order.push("b0")));
  // a's next request was read only once a0 had run: it goes behind b's.
  let second: unknown;
  a.onResume = () => {
    a.onResume = undefined;
    second = turns.run(a, job(1, () => order.push("a1")));
  };
  await Promise.all([first, other]);
  await settled(second);
  assert.deepEqual(order, ["a0", "b0", "a1"]);
  await Promise.resolve(); // released once its answer is out
  assert.equal(a.held, 0);
  await quiet();
});

Deno.test("CostlyTurns: a waiting request rejects with what it throws; a closed connection's is not run", async () => {
  const { turns, job } = clocked(4);
  const a = new Owner();
  turns.run(a, job(10));
  const refused = turns.run(
    a,
    job(1, () => {
      throw new DistError("BAD_REQUEST", "Refused");
    }),
  );
  let ran = false;
  const b = new Owner();
  const gone = turns.run(b, job(1, () => ran = true));
  b.conn.isClosed = true;
  await assert.rejects(settled(refused), /Refused/);
  await assert.rejects(settled(gone), (err: DistError) => err.code === "UNAVAILABLE");
  assert.equal(ran, false);
  assert.equal(a.held + b.held, 0);
  // At once, it throws.
  const { turns: fresh } = clocked(4);
  assert.throws(() =>
    fresh.run(a, () => {
      throw new DistError("BAD_REQUEST", "Now");
    }), /Now/);
  await quiet();
});

Deno.test("CostlyTurns.later runs after the answer of a waiting request (a subscribe's retained values follow it)", async () => {
  const { turns, job } = clocked(4);
  const a = new Owner();
  const order: string[] = [];
  // At once: the answer is sent when the handler returns, then what `later` queued.
  const now = turns.run(
    a,
    job(10, () => {
      turns.later(() => order.push("values 1"));
      return "answer 1";
    }),
  );
  order.push(now as string);
  // Waiting: as the peer does, the answer is sent in a reaction to the promise it was given.
  const waiting = turns.run(
    a,
    job(1, () => {
      turns.later(() => order.push("values 2"));
      return "answer 2";
    }),
  ) as Promise<string>;
  const answered = waiting.then((answer) => void order.push(answer));
  await answered;
  await quiet();
  assert.deepEqual(order, ["answer 1", "values 1", "answer 2", "values 2"]);
});

Deno.test("COSTLY_METHODS are the broker's listings, subscribes, unsubscribes and stats", () => {
  assert.deepEqual([...COSTLY_METHODS].sort(), [
    "broker.subscribe",
    "broker.topics",
    "broker.unsubscribe",
    "sys.stats",
  ]);
});

Deno.test("CostlyTurns counts each request at least REQUEST_MS: a turn takes a bounded number of cheap ones", async () => {
  const { turns, job } = clocked(4);
  const a = new Owner();
  let ran = 0;
  // Handlers of no measurable time (an unsubscribe's): before, all 1,000 ran at once.
  const all = Array.from({ length: 1000 }, () => turns.run(a, job(0, () => ran++)));
  const perTurn = Math.ceil(4 / REQUEST_MS);
  assert.equal(ran, perTurn);
  assert.equal(all.filter((r) => r instanceof Promise).length, 1000 - perTurn);
  await settled(all[2 * perTurn - 1]);
  assert.equal(ran, 2 * perTurn, "the next turn takes as many");
  await Promise.all(all);
  assert.equal(a.held, 0);
  await quiet();
});

Deno.test("CostlyTurns: an owner's input is taken again only once its waiting request's answer is out", async () => {
  const { turns, job } = clocked(4);
  const a = new Owner();
  const order: string[] = [];
  a.onResume = () => order.push("resumed");
  turns.run(a, job(10)); // spends the turn
  const answer = (p: unknown, what: string) =>
    (p as Promise<unknown>).then(() => order.push(what), () => order.push(what));
  // As a Peer does: the reaction that writes the answer is set when the handler returns.
  const done = Promise.all([
    answer(turns.run(a, job(1, () => order.push("ran ok"))), "answered ok"),
    answer(
      turns.run(
        a,
        job(1, () => {
          order.push("ran failing");
          throw new DistError("NOT_FOUND", "None");
        }),
      ),
      "answered failing",
    ),
  ]);
  await done;
  await quiet();
  // Both in one turn; what it sent after them is read only once both answers are written.
  assert.deepEqual(order, ["ran ok", "ran failing", "answered ok", "answered failing", "resumed"]);
});
