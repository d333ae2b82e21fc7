/**
 * Through a real balancer, one client's request does not change how
 * another's parses (V8 in Deno 2.9.6 read an escaped key as an earlier key
 * holding a backslash: docs/v8_json_keys.md): a worker of the library
 * echoes its params; client A sends values with a key `\`, client B then
 * values of the same shape with keys written with an escape, in JSON and
 * in MessagePack, through the pass-through and the decoded path; each
 * answer is the value sent.
 */
import assert from "node:assert/strict";
import { connect, type Contract, method, serve, type Serving } from "../clients/mod.ts";
import { startBalancer } from "./helpers/balancer.ts";

/** Echoes any value: params and result taken as they are. */
const mirror = {
  service: "mirror",
  prefix: "mirror.",
  methods: {
    echo: method("mirror.echo", { params: (p: unknown) => p, result: (r: unknown) => r }),
  },
  events: {},
} as const satisfies Contract;

/** [A's value, B's value]: the same keys before, then `\` for A and an escaped key for B. */
const PAIRS: [unknown, unknown][] = [
  [{ x: 1, "\\": 0 }, { x: 1, "\n": 0 }],
  [{ x: 2, "\\": 0 }, { x: 2, "\u001f": 0 }],
  [{ q: [1], "ab\\": { z: 0 } }, { q: [2], "ab\t": { z: 1 } }],
  [[{ id: "a", "\\": true }], [{ id: "b", '"': false }]],
];

for (const passthrough of [true, false]) {
  Deno.test(`balancer${passthrough ? "" : " --no-passthrough"}: echoed values with escaped keys come back as sent after another client's \`\\\` keys`, async () => {
    const lb = await startBalancer([], passthrough ? [] : ["--no-passthrough"]);
    let worker: Serving | undefined;
    const clients = await Promise.all([
      connect(lb.address),
      connect(lb.address),
      connect(lb.address, { codec: "msgpack" }),
    ]);
    try {
      worker = serve(lb.workerAddress, {
        contracts: [mirror],
        handlers: { "mirror.echo": (p) => p },
      }, { capacity: 4, name: "mirror" });
      assert.equal(await worker.registered(5000), true);
      const [a, b, bMp] = clients;
      for (let round = 0; round < 3; round++) {
        for (const [poison, victim] of PAIRS) {
          assert.deepEqual(await a.request(mirror.methods.echo, poison), poison);
          for (const c of [b, bMp]) {
            const got = await c.request(mirror.methods.echo, victim);
            assert.deepEqual(got, victim);
            assert.equal(JSON.stringify(got), JSON.stringify(victim));
          }
        }
      }
    } finally {
      for (const c of clients) c.close();
      await worker?.stop();
      await lb.stop();
    }
  });
}
