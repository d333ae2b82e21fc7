/**
 * Stopping a plan's processes: dependents first, one start step at a time
 * (the reverse of the start order), each with SIGTERM and then SIGKILL
 * after the grace time; or every one at once (a second Ctrl-C).
 */
import { formatDuration } from "../config/mod.ts";
import type { Output } from "./output.ts";
import type { StateWriter } from "./state.ts";
import { seconds, type Unit } from "./unit.ts";

/** What stopping needs of the supervisor. */
export interface StopContext {
  output: Output;
  state?: StateWriter;
  /** Time between SIGTERM and SIGKILL (ms). */
  graceMs: number;
}

/**
 * Stops every running unit in reverse start order and waits for every exit
 * to be handled. Says `Stopping (reason)` and how long it took.
 */
export async function stopInOrder(
  units: readonly Unit[],
  reason: string,
  context: StopContext,
): Promise<void> {
  const { output } = context;
  const t0 = performance.now();
  for (const unit of units) {
    clearTimeout(unit.readyTimer);
    if (unit.backoff !== undefined) {
      clearTimeout(unit.backoff);
      unit.state = "stopped";
    }
  }
  const running = units.filter((u) => u.child !== undefined);
  if (running.length > 0) output.say(`Stopping (${reason})`);
  else if (reason !== "every instance has exited") output.say(`Stopping (${reason})`);
  const steps = [...new Set(units.map((u) => u.plan.step))].sort((a, b) => b - a);
  for (const step of steps) {
    await Promise.all(units.filter((u) => u.plan.step === step).map((u) => stopUnit(u, context)));
  }
  await Promise.all(units.map((u) => u.exited));
  if (running.length > 0) {
    output.say(`Stopped ${running.length} in ${seconds(performance.now() - t0)}`);
  }
}

/** SIGTERM, then SIGKILL after the grace time. */
async function stopUnit(unit: Unit, context: StopContext): Promise<void> {
  const child = unit.child;
  if (child === undefined) return;
  unit.state = "stopping";
  context.state?.update(unit.name, { state: "stopping" });
  signal(child, "SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const inTime = await Promise.race([
    unit.exited!.then(() => true),
    new Promise<boolean>((r) => timer = setTimeout(() => r(false), context.graceMs)),
  ]);
  clearTimeout(timer);
  if (!inTime) {
    const grace = formatDuration(context.graceMs);
    context.output.say(`${unit.name} did not stop within ${grace}: killing it`);
    signal(child, "SIGKILL");
  }
  await unit.exited;
}

/** Kills every unit's process now. */
export function killAll(units: readonly Unit[], output: Output): void {
  output.say("Killing every instance");
  for (const unit of units) if (unit.child) signal(unit.child, "SIGKILL");
}

function signal(child: Deno.ChildProcess, name: Deno.Signal): void {
  try {
    child.kill(name);
  } catch {
    // It has exited already.
  }
}
