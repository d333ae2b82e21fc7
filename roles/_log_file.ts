/**
 * `--log-file`: every log line appended to a file, a whole line per write
 * (several threads of a balancer append to one file). A write that fails
 * (a full disk, a quota, an I/O error) never stops the process and never
 * prints a stack (hostile47 Q18: logtape's file sink printed `[FTL]` and a
 * 16-line stack per failed flush): the first failure is said once on
 * stderr, the lines are dropped and counted, every later line tries again,
 * and the first that is written again is preceded on stderr by how many
 * were lost.
 */
import type { LogRecord, Sink } from "@logtape/logtape";

const encoder = new TextEncoder();

/**
 * A sink appending `format(record)` to `path` (opened now: a file that
 * cannot be opened throws), saying its failures through `say` (the
 * stderr sink), as records of category `dist.log`.
 */
export function logFileSink(
  path: string,
  format: (record: LogRecord) => string,
  say: Sink,
): Sink & Disposable {
  const file = Deno.openSync(path, { append: true, create: true });
  let dropped = 0;
  /** The first write failed part-way: the next line that is written starts on a line of its own. */
  let torn = false;
  const tell = (level: LogRecord["level"], text: string) =>
    say({
      category: ["dist", "log"],
      level,
      message: [text],
      rawMessage: text,
      timestamp: Date.now(),
      properties: {},
    });
  const sink = (record: LogRecord) => {
    const line = format(record);
    const bytes = encoder.encode(
      (torn ? "\n" : "") + (line.endsWith("\n") ? line : line + "\n"),
    );
    let done = 0;
    try {
      while (done < bytes.length) done += file.writeSync(bytes.subarray(done));
    } catch (err) {
      if (done > 0) torn = true;
      if (dropped++ === 0) {
        tell(
          "error",
          `Cannot write --log-file ${path}: ${(err as Error).message}; ` +
            `its lines are dropped (and counted) until it can`,
        );
      }
      return;
    }
    torn = false;
    if (dropped > 0) {
      tell("info", `--log-file ${path} written again: ${dropped} line(s) were dropped`);
      dropped = 0;
    }
  };
  return Object.assign(sink, {
    [Symbol.dispose]: () => {
      if (dropped > 0) tell("warning", `--log-file ${path}: ${dropped} line(s) were dropped`);
      file.close();
    },
  });
}
