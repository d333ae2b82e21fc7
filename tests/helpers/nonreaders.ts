/**
 * Clients that never read (bench/big_nonreader.ts), in their own process:
 * a Deno process that floods sockets is slow to read its other sockets, and
 * would slow a legitimate client beside it.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { DistError } from "../../wire/mod.ts";
import { connectTo } from "./balancer.ts";

const NONREADER = fileURLToPath(new URL("../../bench/big_nonreader.ts", import.meta.url));

/**
 * Starts `conns` connections to `port` that each send `count` echo requests
 * of `size` characters (`batch` to a write) and never read; resolves once
 * they send. The stop ends them and returns the bytes their sockets took.
 * `nice`: run at nice 19, so the attackers take what CPU is left over.
 */
export async function nonreaders(
  port: number,
  conns: number,
  count: number,
  size: number,
  { batch = 1, nice = false } = {},
): Promise<() => Promise<number>> {
  const args = ["run", "-A", NONREADER, ...[port, conns, count, size, batch].map(String)];
  const child = new Deno.Command(nice ? "nice" : Deno.execPath(), {
    args: nice ? ["-n", "19", Deno.execPath(), ...args] : args,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  assert.match((await lines.read()).value ?? "", /ready/);
  return async () => {
    await child.stdin.close();
    let out = "";
    for (let r = await lines.read(); !r.done; r = await lines.read()) out += r.value;
    await child.status;
    return Number(out.match(/sent (\d+)/)?.[1] ?? 0);
  };
}

/**
 * A deep pipeliner that reads its answers (1,000 `add` at once) beside a
 * light client calling `address` in turn 800 times: how many of the deep
 * one's answers came during the light one's calls (one for every eight of
 * them when it keeps the bulk allowance: roles/balancer/allowance.ts).
 */
export async function deepBesideLight(address: string): Promise<number> {
  const deep = await connectTo(address);
  const light = await connectTo(address);
  try {
    const answeredAt: number[] = [];
    const pipeline = Promise.all(
      Array.from(
        { length: 1000 },
        (_, i) =>
          deep.call("add", { a: i, b: 1 }, { timeout: 20_000 }).then(
            () => answeredAt.push(performance.now()),
            (e) => assert.equal((e as DistError).code, "OVERLOADED"),
          ),
      ),
    );
    const start = performance.now();
    for (let i = 0; i < 800; i++) {
      assert.equal(await light.call("add", { a: i, b: 1 }, { timeout: 5000 }), i + 1);
    }
    const end = performance.now();
    light.close();
    await pipeline;
    return answeredAt.filter((t) => t >= start && t <= end).length;
  } finally {
    light.close();
    deep.close();
  }
}
