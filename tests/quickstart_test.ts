/**
 * README's quick start against a real run of the embedded default topology:
 * every line of the sample output is printed, each role shows what it does
 * once, and what the sample promises does not depend on timing (the
 * resolver and the client spread over every instance, the consumer sees
 * each value as it is published).
 *
 * The default topology listens on fixed ports (8000, 7000-7001,
 * 5556-5559, 8889), which a person's running cluster, or another test run
 * on this machine, may hold. So the test runs the same topology with its
 * ports moved: to 0 wherever the launcher learns the port from the
 * instance (broker, servers, balancer), and, for the two binders (peers
 * start together and must know each other's ports) and the balancer's
 * worker port (workers find it in the file only), to free ports below the
 * kernel's ephemeral range, where no port-0 listener of a concurrent test
 * lands. The sample is compared with numbers (ports, pids, times, values)
 * as wildcards, and the topology's name as the file's.
 */
import assert from "node:assert/strict";
import { DEFAULT_TOPOLOGY_FILE } from "../config/mod.ts";
import { linesOf, movedTopology, startUp, stopCleanly, topologyFile } from "./helpers/up.ts";

const README = await Deno.readTextFile(new URL("../README.md", import.meta.url));

/** The sample output under the `<!-- quick-start-sample -->` mark, without its `…` lines. */
function sample(): string[] {
  const at = README.indexOf("<!-- quick-start-sample -->");
  assert.ok(at >= 0, "README has no quick-start sample");
  const block = /```\n([\s\S]*?)```/.exec(README.slice(at));
  assert.ok(block, "the quick-start sample has no block");
  return block[1].split("\n").filter((l) => l !== "" && l !== "…");
}

const NUMBER = String.raw`-?\d+(?:\.\d+)?(?:e[+-]?\d+)?`;

/** A random operation and its answer, as the client prints it: `sum 5,-60 = -55  (worker-1)`. */
const OPERATION = String.raw`(?:add|sub|mul|div|sum) \S+(?: \S+)? = \S+  \([\w.-]+\)`;
const RANDOM_OP = new RegExp(String.raw`^(\S+ +\| )${OPERATION}$`);

/**
 * A sample line as a pattern: numbers are wildcards, and so is a random
 * operation (which one, and who answered it, is the luck of the draw),
 * except in a report's summary (`10 requests: … by: server-1 ×2, …`), which
 * must be exact.
 */
function pattern(line: string, file: string): RegExp {
  const text = line.replaceAll(DEFAULT_TOPOLOGY_FILE, file);
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  if (/\| \d+ requests: /.test(text)) return new RegExp(`^${escape(text)}$`);
  const op = RANDOM_OP.exec(text);
  if (op) return new RegExp(`^${escape(op[1])}${OPERATION}$`);
  const parts = text.split(new RegExp(NUMBER));
  return new RegExp(`^${parts.map(escape).join(NUMBER)}$`);
}

/** Whose line it is: an instance's name, or "dist up". */
function source(line: string): string {
  return line.startsWith("dist up: ") ? "dist up" : line.split(/ +\| /)[0];
}

Deno.test("README's quick-start sample is what the default topology prints, every time", async () => {
  const file = await topologyFile(movedTopology());
  const up = startUp([file]);
  try {
    await up.waitFor(/dist up: client exited/, 60_000);
    await up.waitFor(/dist up: resolver exited/, 60_000);
    const { stdout } = await stopCleanly(up, "SIGINT");
    const printed = stdout.split("\n");

    // Every line of the sample, each matched to a line of its own instance
    // (lines of different instances interleave as processes run).
    const unused = new Map<string, string[]>();
    for (const line of printed) unused.set(source(line), [...unused.get(source(line)) ?? [], line]);
    for (const line of sample()) {
      const want = pattern(line, file);
      const mine = unused.get(source(line)) ?? [];
      const at = mine.findIndex((l) => want.test(l));
      assert.ok(at >= 0, `README's line is not printed: ${line}\n(as ${want})\n\n${stdout}`);
      mine.splice(at, 1);
    }

    // Each behaviour once: one round of each producer, delivered live (not
    // as retained values), ten requests spread over the five backends and
    // six over the three servers of the service.
    const telephony = linesOf(stdout, "telephony");
    const currency = linesOf(stdout, "currency");
    assert.equal(telephony.length, 3, stdout);
    assert.equal(currency.length, 1, stdout);
    const delivered = linesOf(stdout, "consumer").filter((l) => l.startsWith("/"));
    assert.deepEqual(delivered.toSorted(), [...telephony, ...currency].toSorted());
    const client = linesOf(stdout, "client");
    assert.equal(client.length, 11, stdout);
    assert.equal(
      client[10],
      "10 requests: 10 ok, 0 errors; by: server-1 ×2, server-2 ×2, server-3 ×2, worker-1 ×2, worker-2 ×2",
    );
    const resolver = linesOf(stdout, "resolver");
    assert.equal(resolver.length, 7, stdout);
    assert.equal(
      resolver[6],
      "6 requests: 6 ok, 0 errors; by: server-1 ×2, server-2 ×2, server-3 ×2",
    );
    // No warning while it runs (but from binders starting together, which
    // may not reach each other at first).
    const running = stdout.slice(0, stdout.indexOf("dist up: Stopping ("));
    assert.doesNotMatch(running, /^(?!binder).*\[(WRN|ERR)\]/m);
  } finally {
    await up.stop();
    await Deno.remove(file);
  }
});
