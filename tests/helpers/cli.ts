/** Assertions on what a user sees of a `dist` command. */
import assert from "node:assert/strict";
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
