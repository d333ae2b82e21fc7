/**
 * Refusals made by the thousand under a flood (refused requests,
 * connections refused at accept): the same DistError again while its words
 * are the same, not one each. Making an Error costs 1.4–2 µs here (more
 * under load, with its stack), and a flood of refused requests made one
 * each: a third of the balancer's CPU (hostile review 41a W8).
 */
import { DistError, type ErrorCode } from "./errors.ts";

/** The last few errors made, by code: a caller alternating two messages keeps both. */
const last = new Map<ErrorCode, DistError[]>();
/** Messages kept per code. */
const KEPT = 4;

/**
 * A DistError of `code` saying `message`: one made before when its words
 * are the same (shared: never add to it), else a new one, kept.
 */
export function sharedError(code: ErrorCode, message: string): DistError {
  let kept = last.get(code);
  if (kept === undefined) last.set(code, kept = []);
  for (let i = 0; i < kept.length; i++) if (kept[i].message === message) return kept[i];
  const err = new DistError(code, message);
  if (kept.length >= KEPT) kept.shift();
  kept.push(err);
  return err;
}
