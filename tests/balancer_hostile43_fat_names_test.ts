/**
 * hostile43a A10: `balancer.backends` is one frame, and a worker's name may
 * be any 200 characters (clients/contracts/balancer.ts), control
 * characters included, each written as a 6-byte escape in JSON (its hello
 * name, in `peer`, too). 600 workers so named — no credential needed by
 * default, `--max-workers` is 1,000 — push the listing past `--max-frame`
 * (1 MiB): every `balancer.backends`, the operator's view of the pool,
 * then fails "Answer too large to send" (1,000 such: 2.2 MB).
 *
 * A15, A10 without control characters: c43's A10 fix (b197eca) refused
 * names with control characters, but the listing's size is bytes: a CJK
 * character is one UTF-16 unit of the 200 allowed and three bytes of UTF-8
 * (not escaped), in `name` and again in `peer` (the hello name). The
 * default `--max-workers 1000` of them, names of 200 such characters, made
 * `balancer.backends` 1,234,650 bytes: refused "Answer too large to send"
 * for everyone (c43 0ca013a and main alike). The listing now cuts its
 * texts to a budget of bytes (roles/balancer/listing.ts).
 *
 * A user checks that `balancer.backends` still answers.
 */
import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { connectTo, startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { sleep } from "./helpers/raw.ts";
import { fakeWorker } from "./helpers/source_workers.ts";

/**
 * `n` fake workers from 127.0.`net`.x named `char` × (200 − the id's length) + id; then
 * `balancer.backends` must list the server and every one registered.
 */
async function listedBeside(n: number, net: number, char: string) {
  const servers = await startServers(1);
  // The fakes live in this process and say nothing but their health checks' answers: a loaded
  // machine left them silent past 3 heartbeats while the rest registered, and the balancer rightly
  // dropped them (506 of 1,000 still listed, load 18). Liveness 120: what is tested is the listing.
  const lb = await startBalancer(servers, ["--check-interval", "1s", "--liveness", "120"]);
  const client = await connectTo(lb.address, 10_000);
  const fakes: Socket[] = [];
  let registered = 0;
  try {
    for (let i = 0; i < n; i += 50) {
      const answers = await Promise.all(Array.from({ length: 50 }, (_, k) => {
        const id = String(i + k);
        const name = char.repeat(200 - id.length) + id;
        return fakeWorker(lb.workerAddress, `127.0.${net}.${1 + (i + k) % 250}`, name, fakes, true);
      }));
      // Refused (such a name is no name) or registered: either way the listing must answer.
      assert.ok(answers.every((a) => a === "registered" || a === "BAD_REQUEST"), answers.join(","));
      registered += answers.filter((a) => a === "registered").length;
    }
    await sleep(500);
    const list = await client.call("balancer.backends").then(
      (l) => `${(l as unknown[]).length} backends`,
      (e) => `${e.code}: ${e.message}`,
    );
    console.log(`balancer.backends: ${list}`);
    assert.equal(list, `${1 + registered} backends`);
    return registered;
  } finally {
    client.close();
    for (const f of fakes) f.destroy();
    await sleep(10);
    await stopAll([lb, ...servers]);
  }
}

Deno.test("balancer.backends still answers beside 600 workers with 200-character names of control characters", async () => {
  await listedBeside(600, 8, "\u0001");
});

Deno.test("balancer.backends still answers beside 1,000 workers (the default --max-workers) with 200-character CJK names (hostile43a A15)", async () => {
  assert.equal(await listedBeside(1000, 9, "\u4e2d"), 1000);
});
