/**
 * What a publish's answer waits for (PublishResult.settled, hostile review
 * 39b Q1): its deliveries made (its match, the fan-out's backlog), then the
 * keeper's commit of what they wrote, so an acknowledged publish survives a
 * SIGKILL under `--fsync batch` and `always`.
 */
import type { Keeper } from "./core_types.ts";
import type { FanOut } from "./fanout.ts";

/**
 * The promise a publish's answer waits for; undefined: nothing (no keeper,
 * or nothing written and nothing left to make). `written` is the keeper's
 * count of writes before the publish was routed; `later` its deferred match.
 */
export function settledBy(
  fanOut: FanOut,
  later: Promise<number> | undefined,
  keeper: Keeper | undefined,
  written: number,
): Promise<void> | undefined {
  // Nothing is kept on disk: an answer says how many deliveries, not that they are kept.
  if (keeper === undefined) return undefined;
  if (later === undefined) {
    const made = fanOut.whenMade();
    if (made !== undefined) return made.then(() => keeper.commit());
    return keeper.written === written ? undefined : keeper.commit();
  }
  // Its deliveries are being made once `later` resolves: those waiting then are made after.
  const made = () => fanOut.whenMade(true);
  return later.then(made, made).then(() => keeper.commit());
}
