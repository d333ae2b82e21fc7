/**
 * Helpers for tests of MQTT persistent sessions on disk: a broker on a
 * data directory with its MQTT port, and filters that all match one topic.
 */
import assert from "node:assert/strict";
import { type DistProcess, startDist } from "./dist.ts";

/** A 14-level topic, and distinct filters that all match it (each level itself or `+`). */
const LEVELS = ["k", ..."abcdefghijklm"];
export const DEEP_TOPIC = LEVELS.join("/");
export const deepFilter = (i: number): string =>
  LEVELS.map((l, j) => ((i >> j) & 1) === 1 ? "+" : l).join("/");

/** A broker on `dir` under `--fsync fsync` (and `extra`), with its MQTT port. */
export async function durableBroker(
  dir: string,
  fsync: string,
  ...extra: string[]
): Promise<{ b: DistProcess; port: number }> {
  const b = await startDist([
    "broker",
    ...["--port", "0", "--mqtt-port", "0", "--data-dir", dir, "--fsync", fsync, ...extra],
  ], { timeoutMs: 30_000 });
  const m = b.stderr().match(/MQTT on 127\.0\.0\.1:(\d+)/);
  assert.ok(m, b.stderr());
  return { b, port: Number(m[1]) };
}
