import { counted } from "../_role.ts";
import { formatOperation, randomOperation } from "../ops.ts";
import {
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
 * it early; `cancel` also gives up on the request in flight). Resolves with
 * the number of errors.
 */
export async function runRandom(
  peer: Caller,
  count: number,
  options: ModeOptions,
): Promise<number> {
  const by = new Map<string, number>();
  let ok = 0;
  let errors = 0;
  let sent = 0;
  for (; sent < count && !options.signal?.aborted; sent++) {
    const op = randomOperation();
    const outcome = await perform(peer, op, options.timeout as number, options.cancel);
    if (options.cancel?.aborted) break;
    const shown = formatOperation(op);
    if (outcome.ok) {
      ok++;
      if (outcome.by) by.set(outcome.by, (by.get(outcome.by) ?? 0) + 1);
    } else errors++;
    if (options.json) {
      options.out(outcomeJson(outcome, { op: shown }));
    } else if (outcome.ok) {
      options.out(`${shown} = ${formatResult(outcome.result)}  (${outcome.by ?? "?"})`);
    } else {
      options.out(`${shown} -> ${outcome.error!.code}: ${outcome.error!.message}`);
    }
  }
  const interrupted = sent < count;
  if (options.json) {
    const summary = {
      ok,
      errors,
      by: Object.fromEntries(by),
      ...(interrupted ? { interrupted } : {}),
    };
    options.out(JSON.stringify({ summary }));
  } else {
    options.out(
      `${counted(sent, "request")}: ${ok} ok, ${counted(errors, "error")}; by: ${formatBy(by)}` +
        (interrupted ? ` (interrupted: ${count - sent} not sent)` : ""),
    );
  }
  return errors;
}
