import {
  configure,
  dispose,
  getTextFormatter,
  type LogLevel,
  reset,
  type Sink,
} from "@logtape/logtape";
import { getFileSink } from "@logtape/file";

export interface LoggingOptions {
  /** The instance name every line carries. */
  instance: string;
  level: LogLevel;
  /** Also append to this file. */
  file?: string;
}

const encoder = new TextEncoder();
let instance = "dist";

/** Changes the name on log lines (a server learns its port only once bound). */
export function setLogInstance(name: string): void {
  instance = name;
}

/**
 * Sends every log line to stderr (and to `file` when given), each line
 * carrying the instance name:
 * `2026-11-22T07:33:34.123Z [INF] server-5557: Listening on 127.0.0.1:5557`.
 * Stderr is written synchronously, so lines are never lost at exit and keep
 * their order with the process's other output.
 */
export async function setupLogging(options: LoggingOptions): Promise<void> {
  instance = options.instance;
  const formatter = getTextFormatter({
    timestamp: "rfc3339",
    category: () => instance,
    value: "bare",
  });
  const stderr: Sink = (record) => {
    try {
      const line = formatter(record);
      Deno.stderr.writeSync(encoder.encode(line.endsWith("\n") ? line : line + "\n"));
    } catch {
      // stderr is gone (closed pipe): nowhere left to report it.
    }
  };
  const sinks: Record<string, Sink> = { stderr };
  if (options.file) sinks.file = getFileSink(options.file, { formatter });
  await configure({
    reset: true,
    sinks,
    loggers: [
      { category: ["dist"], lowestLevel: options.level, sinks: Object.keys(sinks) },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** Flushes file sinks; call before exit. */
export async function closeLogging(): Promise<void> {
  await dispose();
}

export { reset as resetLogging };
