/**
 * The entry of a balancer's worker thread (`--threads N`, see threads.ts):
 * takes its options from thread 0, binds the same ports with SO_REUSEPORT,
 * runs the RPC balancer until thread 0 says stop, and tells its exit code.
 */
import { reusePorts } from "../../wire/transport.ts";
import { closeLogging, setupLogging } from "../_logging.ts";
import { runBalancerThread } from "./mod.ts";
import { ProcessMetrics } from "../../obs/mod.ts";
import type { FromThread, ToThread } from "./threads.ts";

/** This worker's side of the channel to thread 0. */
const port = self as unknown as {
  onmessage: ((e: MessageEvent<ToThread>) => void) | null;
  postMessage(message: FromThread): void;
};
const stop = new AbortController();

/** This thread's metrics (`--metrics`: thread 0 asks for their samples at each scrape). */
let metrics: ProcessMetrics | undefined;

port.onmessage = (e) => {
  const m = e.data;
  if (m.type === "stop") return stop.abort();
  if (m.type === "samples") {
    const samples = metrics?.registry.samples() ?? new Map();
    return port.postMessage({ type: "samples", id: m.id, samples });
  }
  run(m).then(
    (code) => port.postMessage({ type: "exit", code }),
    (err) => port.postMessage({ type: "failed", message: (err as Error)?.message ?? String(err) }),
  );
};

async function run(m: Extract<ToThread, { type: "start" }>): Promise<number> {
  // The options thread 0 parsed and checked, structured-cloned.
  const options = m.options as Parameters<typeof runBalancerThread>[0];
  // A worker has its own logtape: its backend lines go where thread 0's go
  // (stderr, and --log-file opened for appending, a whole line per write).
  await setupLogging({
    instance: options.name ?? `balancer-${options.port}`,
    level: options.logLevel,
    json: options.json,
    file: options.logFile,
  });
  reusePorts(true);
  const onListening = () => port.postMessage({ type: "listening" });
  if (m.metrics) metrics = new ProcessMetrics("balancer", options.name ?? "", false);
  const ctx = { signal: stop.signal, positionals: [], onListening, metrics };
  try {
    return await runBalancerThread(options, ctx, { index: m.index, count: m.count });
  } finally {
    await metrics?.close();
    await closeLogging();
  }
}
