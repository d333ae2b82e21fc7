/**
 * For tests that run `dist` with HOME set elsewhere: a child `deno run` looks
 * for its module cache under $HOME/.cache/deno, finds none in a temp folder
 * and downloads every npm package of deno.json (a clean-clone CI run at load
 * ~15 hit its 60 s timeout, exit 137). {@link homeEnv} keeps the test's own
 * cache: DENO_DIR from its environment, or the folder `deno info --json`
 * names, asked once.
 */

let cached: Promise<string> | undefined;

/** The Deno module cache this test process uses. */
export function denoDir(): Promise<string> {
  cached ??= (async () => {
    const set = Deno.env.get("DENO_DIR");
    if (set) return set;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    const dir = (JSON.parse(new TextDecoder().decode(out.stdout)) as { denoDir?: unknown }).denoDir;
    if (!out.success || typeof dir !== "string") {
      throw new Error("deno info --json named no denoDir");
    }
    return dir;
  })();
  return cached;
}

/**
 * The env for a child whose HOME is `home`, with the test's module cache
 * (every test that changes HOME uses it).
 */
export async function homeEnv(home: string): Promise<{ HOME: string; DENO_DIR: string }> {
  return { HOME: home, DENO_DIR: await denoDir() };
}
