/**
 * hostile46a (look-alike names): a fullwidth `ｗ1` or `w` + U+00A0 + `1`
 * registered beside the live `w1` / `w 1` as names of their own, and read
 * as it in `balancer.backends` and the log. A worker name is now taken only
 * in Unicode NFKC form (clients/contracts/balancer.ts): one that is not is
 * refused BAD_REQUEST naming the form to register as, at the worker port and
 * by `dist worker --name` at start (`dist: …`, exit 2).
 */
import assert from "node:assert/strict";
import { dial, DistError, type Peer } from "../wire/mod.ts";
import { worker as workerContract } from "../clients/contracts/balancer.ts";
import { runDist } from "./helpers/dist.ts";
import { startBalancer, stopAll } from "./helpers/balancer.ts";

/** Not NFKC-stable, with what they fold to. */
const LOOKALIKES: [string, string][] = [
  ["\uff571", "w1"], // fullwidth w
  ["w\u00a01", "w 1"], // no-break space
  ["\ufb01le", "file"], // ligature fi
  ["w\u00b2", "w2"], // superscript two
  ["cafe\u0301", "caf\u00e9"], // e + combining acute, composed by NFKC
];

Deno.test("worker.register's parser refuses names not in NFKC form, naming the form to use", () => {
  const parse = workerContract.methods.register.params;
  for (const [name, folded] of LOOKALIKES) {
    assert.throws(
      () => parse({ name, capacity: 1 }),
      (err: unknown) =>
        err instanceof DistError && err.code === "BAD_REQUEST" &&
        err.message.includes("NFKC") &&
        err.message.endsWith(`register as ${JSON.stringify(folded)}`),
      JSON.stringify(name),
    );
  }
  // NFKC-stable names, non-ASCII ones included, are taken as they are.
  for (
    const name of [
      "w1",
      "w 1",
      "caf\u00e9",
      "\u4e16\u754c-1",
      "\u0441\u0435\u0440\u0432\u0435\u0440",
    ]
  ) {
    assert.deepEqual(parse({ name, capacity: 2 }), { name, capacity: 2 });
  }
});

Deno.test("dist worker --name in a form that is not NFKC: dist: …, exit 2", async () => {
  const run = await runDist(["worker", "--balancer", "127.0.0.1:9", "--name", "\uff571"], {
    timeoutMs: 10_000,
  });
  assert.equal(run.code, 2, run.stderr);
  assert.match(
    run.stderr,
    /^dist: --name .*: worker\.register: name .* is not in Unicode NFKC form.*register as "w1"/m,
  );
});

Deno.test("a look-alike of a live worker's name is refused at the worker port, and only the worker is listed", async () => {
  const lb = await startBalancer([], []);
  const peers: Peer[] = [];
  try {
    const [host, port] = lb.workerAddress.split(":");
    const join = async (name: string) => {
      const peer = await dial({ host, port: Number(port) }, {
        role: "worker",
        name: "w",
        onRequest: (method) => method === "sys.ping" ? { pong: true } : name,
      });
      peers.push(peer);
      return peer.call("worker.register", { name, capacity: 1 });
    };
    await join("w1");
    await join("w 1");
    for (const [name] of LOOKALIKES.slice(0, 2)) {
      await assert.rejects(
        join(name),
        (err: unknown) =>
          err instanceof DistError && err.code === "BAD_REQUEST" && /NFKC/.test(err.message),
        JSON.stringify(name),
      );
    }
    const [chost, cport] = lb.address.split(":");
    const client = await dial({ host: chost, port: Number(cport) }, { role: "client", name: "c" });
    peers.push(client);
    const listed = (await client.call("balancer.backends") as { name: string }[]).map((b) => b.name)
      .sort();
    // Before: ｗ1 and w\u00a01 were listed beside w1 and w 1.
    assert.deepEqual(listed, ["w 1", "w1"]);
  } finally {
    for (const p of peers) p.close();
    await stopAll([lb]);
  }
});
