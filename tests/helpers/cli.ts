/** Assertions on what a user sees of a `dist` command. */
import assert from "node:assert/strict";
import { parseAddress } from "../../config/mod.ts";
import { dial } from "../../wire/mod.ts";
import { type DistProcess, lines, startDist } from "./dist.ts";

/** Runs `body` with a fresh `dist server --port 0 ...args`, stopped afterwards. */
export async function withServer(
  body: (server: DistProcess) => Promise<void>,
  args: string[] = [],
): Promise<void> {
  const server = await startDist(["server", "--port", "0", ...args]);
  try {
    await body(server);
  } finally {
    await server.stop();
  }
}

/**
 * Waits until the server at `address` has answered `count` requests besides
 * this wait's own `sys.stats` calls (which a server counts too): a client
 * that has been answered is running, its signal handlers in place (a fixed
 * sleep is not enough on a loaded machine, where starting takes seconds).
 * Resolves with the server's count of requests, this wait's included: a
 * second wait for N more passes it plus N.
 */
export async function waitServed(address: string, count: number, ms = 20_000): Promise<number> {
  const peer = await dial(parseAddress(address), { role: "test", name: "served-watch" });
  try {
    const end = performance.now() + ms;
    for (let mine = 1;; mine++) {
      const stats = await peer.call("sys.stats", {}) as { requests: number };
      // What it returns counts this wait's calls: a later wait adds it to its count.
      if (stats.requests - mine >= count) return stats.requests;
      if (performance.now() > end) {
        throw new Error(
          `${address} answered ${stats.requests - mine} of ${count} requests in ${ms} ms`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    peer.close();
  }
}

/**
 * Asserts a user error: exit `code` and exactly `count` stderr lines (default
 * one), each starting `dist: `. Returns the first line.
 */
export function assertUserError(
  result: { code: number; stderr: string },
  code: number,
  what: string,
  count = 1,
): string {
  assert.equal(result.code, code, `${what}: exit code; stderr:\n${result.stderr}`);
  const errLines = lines(result.stderr);
  assert.equal(errLines.length, count, `${what}: ${count} stderr line(s), got:\n${result.stderr}`);
  for (const line of errLines) assert.match(line, /^dist: /, what);
  return errLines[0];
}

/** Writes `text` to a new temporary file and returns its path and a cleanup. */
export async function tempFile(
  name: string,
  text: string,
): Promise<{ path: string; dir: string; remove: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "dist_cli_" });
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, text);
  return { path, dir, remove: () => Deno.remove(dir, { recursive: true }) };
}
