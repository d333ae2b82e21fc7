import {
  configure,
  dispose,
  getJsonLinesFormatter,
  getTextFormatter,
  type LogLevel,
  type LogRecord,
  reset,
  type Sink,
  type TextFormatter,
} from "@logtape/logtape";
import { logFileSink } from "./_log_file.ts";
import { printableLine } from "./_printable.ts";
import { writeStderrLine } from "./_stderr.ts";

export interface LoggingOptions {
  /** The instance name every line carries. */
  instance: string;
  level: LogLevel;
  /** Also append to this file. */
  file?: string;
  /** One JSON object per line (`--json`), for programs, instead of text. */
  json?: boolean;
}

let instance = "dist";

/** Changes the name on log lines (a server learns its port only once bound). */
export function setLogInstance(name: string): void {
  instance = name;
}

/**
 * Sends every log line to stderr (and to `file` when given), each line
 * carrying the instance name:
 * `2026-11-22T07:33:34.123Z [INF] server-5557: Listening on 127.0.0.1:5557`,
 * or with `json` one JSON object per line (see {@link jsonFormatter}). Stderr is written synchronously, so lines are never lost at exit and keep
 * their order with the process's other output.
 */
export async function setupLogging(options: LoggingOptions): Promise<void> {
  instance = options.instance;
  const format = options.json ? jsonFormatter() : getTextFormatter({
    timestamp: "rfc3339",
    category: () => instance,
    value: "bare",
  });
  const formatter: TextFormatter = (record) => printableLine(format(record));
  const stderr: Sink = (record) => {
    const line = formatter(record);
    writeStderrLine(line.endsWith("\n") ? line : line + "\n");
  };
  const sinks: Record<string, Sink> = { stderr };
  if (options.file) sinks.file = logFileSink(options.file, formatter, stderr);
  await configure({
    reset: true,
    sinks,
    loggers: [
      { category: ["dist"], lowestLevel: options.level, sinks: Object.keys(sinks) },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/**
 * logtape's JSON Lines, with the instance name among the properties:
 * `{"@timestamp":"…","level":"INFO","message":"Listening on 127.0.0.1:5557",
 * "logger":"dist.server","properties":{"instance":"server-5557",
 * "address":"127.0.0.1:5557","host":"127.0.0.1","port":5557}}`.
 */
function jsonFormatter(): TextFormatter {
  const format = getJsonLinesFormatter();
  return (record: LogRecord) => {
    // The message reads as the text line does: string values bare, not quoted.
    const message = record.message.map((part, i) => {
      if (i % 2 === 0 || typeof part === "string") return part;
      try {
        return JSON.stringify(part) ?? String(part);
      } catch {
        return String(part);
      }
    }).join("");
    return format({
      ...record,
      message: [message],
      properties: { instance, ...record.properties },
    });
  };
}

/** Flushes file sinks; call before exit. */
export async function closeLogging(): Promise<void> {
  await dispose();
}

export { reset as resetLogging };
