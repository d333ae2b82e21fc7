/**
 * A client that pipelines deeply and reads its answers keeps the bulk
 * flows' allowance beside clients that pipeline and never read
 * (roles/balancer/allowance.ts; the balancer asks the kernel whether a
 * client's socket drains: wire/send_queue.ts). Before, the non-readers
 * took their turns of it: with four of them, the reader got about a third
 * of its one request for every eight of a busy light client's.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { startBalancer, startServers, stopAll } from "./helpers/balancer.ts";
import { deepBesideLight } from "./helpers/nonreaders.ts";
import { sleep } from "./helpers/raw.ts";

const ATTACKER = fileURLToPath(new URL("../bench/pipeline_client.ts", import.meta.url));

Deno.test("a deep pipeliner that reads its answers keeps the allowance beside four that never read", async () => {
  const servers = await startServers(2);
  const balancer = await startBalancer(servers);
  const attackers = Array.from({ length: 4 }, () =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ATTACKER, String(balancer.port), "100000"],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn());
  const readers = attackers.map((a) => a.stdout.pipeThrough(new TextDecoderStream()).getReader());
  try {
    for (const r of readers) assert.match((await r.read()).value ?? "", /ready/);
    // Alone a while, they are answered (and read nothing): their sockets fill.
    await sleep(1000);
    // A light client, one call at a time: 800 calls, beside a deep pipeliner that reads.
    const during = await deepBesideLight(balancer.address);
    // One for every eight of the light client's, all the reader's: 103-111 in three runs
    // (before: 36 in each of three, the non-readers taking their turns of it).
    assert.ok(during >= 70, `the deep pipeliner got ${during} answers beside 800 light calls`);
    // And no more: the light client goes first.
    assert.ok(during <= 200, `the deep pipeliner got ${during} answers beside 800 light calls`);
  } finally {
    for (const a of attackers) await a.stdin.close().catch(() => {});
    for (const r of readers) await r.cancel().catch(() => {});
    for (const a of attackers) await a.status;
    await stopAll([balancer, ...servers]);
  }
});
