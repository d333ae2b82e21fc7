/**
 * How one process of an instance becomes ready, watched from two sides
 * (the supervisor starts and stops processes; this decides when one is
 * ready):
 *
 * - {@link pumpOutput}: its lines go to the launcher's output, and on the
 *   way its ready line (a worker registered, a consumer subscribed) and its
 *   `Listening on` line (the port a `port = 0` instance got) are noticed;
 * - {@link watchReady}: it is asked for `sys.ping` under its own name until
 *   it answers (an impostor on its port is reported), within the ready time.
 *
 * Either side calls `onReady` once the other side is satisfied too; the
 * supervisor then marks it ready (`#markReady`).
 */
import { LineSplitter, type Output } from "./output.ts";
import { waitReady } from "./probe.ts";
import { launcherCredentials } from "./secrets.ts";
import { launcherTls } from "./tls.ts";
import type { Unit } from "./unit.ts";

const LISTENING = /Listening on (\S+):(\d+)/;

/** What watching a process needs of the supervisor. */
export interface ReadinessHooks {
  output: Output;
  /** How long an instance may take to become ready (ms). */
  readyTimeoutMs: number;
  /** Aborted when `dist up` stops: no more waiting. */
  halt: AbortSignal;
  /** Both sides are satisfied: the process is ready. */
  onReady(unit: Unit): void;
  /** A `port = 0` instance said the port it got. */
  onPort(unit: Unit, port: number): void;
}

/** Copies a child's lines to the output, watching for its ready and `Listening on` lines. */
export async function pumpOutput(
  unit: Unit,
  stream: ReadableStream<Uint8Array>,
  hooks: ReadinessHooks,
): Promise<void> {
  const splitter = new LineSplitter();
  const show = (lines: string[]) => {
    for (const line of lines) {
      hooks.output.line(unit.name, line);
      if (unit.state === "starting" && !unit.lineSeen && unit.plan.readyLine?.test(line)) {
        unit.lineSeen = true;
        if (unit.pinged) hooks.onReady(unit);
      }
      const match = unit.port === undefined && unit.plan.listens ? LISTENING.exec(line) : null;
      if (match) {
        unit.port = Number(match[2]);
        if (unit.plan.instance.options.port === 0) hooks.onPort(unit, unit.port);
        for (const wake of unit.wakers) wake();
      }
    }
  };
  try {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      show(splitter.push(chunk));
    }
  } catch {
    // The pipe broke as the child died: what was read is all there is.
  }
  show(splitter.end());
}

/**
 * Asks the process for `sys.ping` until it answers as itself, it ends
 * (`life`), `dist up` stops, or the ready time is over.
 */
export async function watchReady(
  unit: Unit,
  life: AbortSignal,
  hooks: ReadinessHooks,
): Promise<void> {
  const { output, readyTimeoutMs } = hooks;
  const signal = AbortSignal.any([life, hooks.halt]);
  const ready = await waitReady(() => unit.address, {
    name: unit.name,
    credentials: launcherCredentials(unit.plan.instance),
    tls: launcherTls(unit.plan.instance),
    deadline: unit.since + readyTimeoutMs,
    signal,
    // A `Listening on` line wakes the wait at once (the port of a port-0 instance).
    wake: (ms) =>
      new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          unit.wakers.delete(done);
          resolve();
        };
        const timer = setTimeout(done, ms);
        unit.wakers.add(done);
      }),
    onImpostor: (other) =>
      output.say(
        `${unit.address} answers as ${other}, not ${unit.name}: is something else on that port?`,
      ),
  });
  if (signal.aborted) return;
  if (!ready) {
    // Before its first readiness the ready timer reports it; after a restart, say so here.
    if (unit.everReady) {
      output.say(`${unit.name} is not answering at ${unit.address} since its restart`);
    }
    return;
  }
  unit.pinged = true;
  if (unit.lineSeen) hooks.onReady(unit);
}
