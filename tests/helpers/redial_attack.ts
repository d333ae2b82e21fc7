/** Runs tests/helpers/redialers.ts in its own process (hostile41a W8's attacker). */
import { fileURLToPath } from "node:url";

const REDIALERS = fileURLToPath(new URL("./redialers.ts", import.meta.url));

/** The redialers' process: `stop()` ends them and gives what they printed ("made N"). */
export interface RedialAttack {
  stop(): Promise<string>;
}

/** Starts `conns` redialing non-readers from address `from` against `port`, once they are open. */
export async function startRedialers(
  port: number,
  conns: number,
  from: string,
): Promise<RedialAttack> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", REDIALERS, String(port), String(conns), from],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stopped: Promise<string> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      await child.stdin.close().catch(() => {});
      let out = "";
      for (let r = await lines.read(); !r.done; r = await lines.read()) out += r.value;
      await child.status;
      return out.trim();
    })();
  const first = (await lines.read()).value ?? "";
  if (!/ready/.test(first)) {
    await stop();
    throw new Error(`The redialers did not start: ${first}`);
  }
  return { stop };
}
