import { createInterface } from "node:readline";
import { DistError } from "../../wire/mod.ts";
import { OPERATION_HELP, parseOperation } from "../ops.ts";
import { type Caller, formatResult, type ModeOptions, outcomeJson, perform } from "./_common.ts";
import { runRandom } from "./random.ts";

const SHELL_HELP = [
  ...OPERATION_HELP,
  "random N         N random arithmetic requests",
  "METHOD {JSON}    any method with JSON parameters (e.g. sys.stats)",
  "help             this list",
  "exit             leave (also quit, or Ctrl-D)",
];

/**
 * Reads operations line by line: with a prompt when stdin is a terminal (the
 * original lab's client), silently when it is a pipe (one result per line).
 * Resolves with the number of failed lines.
 */
export async function runInteractive(
  peer: Caller,
  options: ModeOptions,
): Promise<number> {
  const tty = Deno.stdin.isTerminal();
  const rl = createInterface({
    input: process.stdin,
    output: tty ? process.stdout : undefined,
    terminal: tty,
    prompt: "dist> ",
  });
  let failures = 0;
  const fail = (message: string, code = "BAD_REQUEST") => {
    failures++;
    if (options.json) options.out(JSON.stringify({ ok: false, error: { code, message } }));
    else options.out(`error ${code}: ${message}`);
  };
  if (tty) {
    options.out(`Connected to ${peer.remote.name}. Type "help" for operations, "exit" to leave.`);
    rl.prompt();
  }
  // SIGINT/SIGTERM end the session like Ctrl-D (a pipe would otherwise wait on).
  const onAbort = () => rl.close();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  for await (const raw of rl) {
    const words = raw.trim().split(/\s+/).filter((w) => w !== "");
    if (words.length === 0) {
      if (tty) rl.prompt();
      continue;
    }
    const [cmd, ...rest] = words;
    if (cmd === "exit" || cmd === "quit") break;
    if (cmd === "help") {
      for (const line of SHELL_HELP) options.out(line);
    } else if (cmd === "random") {
      const n = Number(rest[0] ?? "10");
      if (!Number.isInteger(n) || n < 1) fail(`random takes a positive count, got ${rest[0]}`);
      else failures += await runRandom(peer, n, options);
    } else {
      let op;
      try {
        op = parseOperation(words);
      } catch (err) {
        fail((err as Error).message);
        if (tty) rl.prompt();
        continue;
      }
      const outcome = await perform(peer, op, options.timeout as number);
      if (!outcome.ok) failures++;
      if (options.json) options.out(outcomeJson(outcome));
      else if (outcome.ok) options.out(formatResult(outcome.result));
      else options.out(`error ${outcome.error!.code}: ${outcome.error!.message}`);
      if (peer.isClosed) {
        rl.close();
        throw new DistError("UNAVAILABLE", `Connection to ${peer.remote.name} lost`);
      }
    }
    if (tty) rl.prompt();
  }
  options.signal?.removeEventListener("abort", onAbort);
  rl.close();
  return failures;
}
