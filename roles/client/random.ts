import { counted } from "../_role.ts";
import { formatOperation, randomOperation } from "../ops.ts";
import { printableJson, printableText } from "../_printable.ts";
import {
  ByCount,
  type Caller,
  formatBy,
  formatResult,
  type ModeOptions,
  outcomeJson,
  perform,
} from "./_common.ts";

/**
 * Sends `count` random arithmetic requests one after another, printing each
 * with its result, then a summary line (a partial one when `signal` stops
 * it early; `cancel` also gives up on the request in flight). The first
 * UNAVAILABLE answer ends the batch: with no backend behind a balancer (or
 * the connection gone) every later request would wait its turn to fail.
 * Resolves with the number of errors.
 */
export async function runRandom(
  peer: Caller,
  count: number,
  options: ModeOptions,
): Promise<number> {
  const by = new ByCount();
  let ok = 0;
  let errors = 0;
  let sent = 0;
  /** The first UNAVAILABLE: the next request would meet it too (no backend, no server). */
  let stopped: { code: string; message: string } | undefined;
  for (; sent < count && !options.signal?.aborted && stopped === undefined; sent++) {
    const op = randomOperation();
    const outcome = await perform(peer, op, options.timeout, options.cancel);
    if (options.cancel?.aborted) break;
    const shown = formatOperation(op);
    if (outcome.ok) {
      ok++;
      if (outcome.by) by.add(outcome.by);
    } else {
      errors++;
      if (outcome.error!.code === "UNAVAILABLE") stopped = outcome.error;
    }
    if (options.json) {
      options.out(outcomeJson(outcome, { op: shown }));
    } else if (outcome.ok) {
      options.out(
        `${shown} = ${formatResult(outcome.result)}  (${printableText(outcome.by ?? "?")})`,
      );
    } else {
      options.out(`${shown} -> ${outcome.error!.code}: ${outcome.error!.message}`);
    }
  }
  const interrupted = sent < count && stopped === undefined;
  if (options.json) {
    const summary = {
      ok,
      errors,
      ...by.toJson(),
      ...(interrupted ? { interrupted } : {}),
      ...(stopped
        ? { stopped: `${stopped.code}: ${stopped.message}`, not_sent: count - sent }
        : {}),
    };
    options.out(printableJson({ summary }));
  } else {
    const why = stopped !== undefined
      ? ` (stopped at the first UNAVAILABLE: ${count - sent} not sent)`
      : interrupted
      ? ` (interrupted: ${count - sent} not sent)`
      : "";
    options.out(
      `${counted(sent, "request")}: ${ok} ok, ${counted(errors, "error")}; by: ${
        formatBy(by.names, by.others)
      }${why}`,
    );
  }
  return errors;
}
