import { within } from "./raw.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** A fixture script under tests/helpers/ running in its own Deno process. */
export interface ChildServer {
  port: number;
  child: Deno.ChildProcess;
  /** Kills the child (SIGKILL unless told otherwise) and waits for it. */
  stop(signal?: Deno.Signal): Promise<void>;
}

/**
 * Starts `tests/helpers/<script>`, which prints the port it listens on as its
 * first line of stdout, and waits (at most `timeoutMs`) for that line.
 */
export async function startChild(script: string, timeoutMs = 10_000): Promise<ChildServer> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `tests/helpers/${script}`],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let stopped: Promise<void> | undefined;
  const stop = (signal: Deno.Signal = "SIGKILL") =>
    stopped ??= (async () => {
      try {
        child.kill(signal);
      } catch {
        // Already exited.
      }
      await child.status;
    })();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await within(reader.read(), timeoutMs, `${script} start`);
      if (done) throw new Error(`${script} exited before printing its port`);
      text += value;
    }
    const port = Number(text.split("\n")[0].trim());
    if (!Number.isInteger(port) || port <= 0) throw new Error(`${script} printed ${text}`);
    return { port, child, stop };
  } catch (err) {
    await stop();
    throw err;
  } finally {
    // Nothing more is read from stdout: release the pipe.
    await reader.cancel().catch(() => {});
  }
}
