/**
 * Log lines of this process, captured for a test that runs a role or a
 * wire part in-process (logtape is configured for the whole process: one
 * capture at a time).
 */
import { configure, type LogRecord, reset } from "@logtape/logtape";

export interface CapturedLogs {
  /** Each record as `LEVEL message`, the message rendered. */
  lines(): string[];
  /** All lines joined. */
  text(): string;
  stop(): void;
}

export async function captureLogs(level: "debug" | "info" = "debug"): Promise<CapturedLogs> {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { capture: (r) => records.push(r) },
    loggers: [
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
      { category: ["dist"], lowestLevel: level, sinks: ["capture"] },
    ],
  });
  const render = (r: LogRecord) =>
    `${r.level} ${
      r.message.map((part) => typeof part === "string" ? part : String(part)).join("")
    }`;
  return {
    lines: () => records.map(render),
    text: () => records.map(render).join("\n"),
    stop: () => void reset(),
  };
}
