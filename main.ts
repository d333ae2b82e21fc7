/**
 * The `dist` executable: parses argv, picks the role and runs it.
 *
 *   dist <role> [flags]          dist --role <role> [flags]
 *   dist --config FILE --name INSTANCE [<role>] [flags]
 */
import {
  findInstance,
  formatMainHelp,
  formatRoleHelp,
  loadTopology,
  mergeOptions,
  type Options,
  parseArgv,
  type ParsedCommand,
  resolveReferences,
  roleSpec,
  UsageError,
} from "./config/mod.ts";
import { closeLogging, ROLES, setupLogging } from "./roles/mod.ts";
import { DistError } from "./wire/mod.ts";
import denoJson from "./deno.json" with { type: "json" };

export const VERSION: string = denoJson.version;

/** Runs `dist` with `argv` and resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  let parsed: ParsedCommand;
  let options: Options;
  try {
    if (argv[0] === "up") {
      throw new UsageError(
        "dist up (the launcher) is not built yet: run each instance with dist <role> or " +
          "dist --config FILE --name INSTANCE",
      );
    }
    parsed = parseArgv(await withRoleFromConfig(argv), ROLES);
    if (parsed.version) {
      console.log(`dist ${VERSION} (deno ${Deno.version.deno})`);
      return 0;
    }
    if (parsed.help || parsed.role === undefined) {
      const text = parsed.role === undefined
        ? formatMainHelp(ROLES, VERSION)
        : formatRoleHelp(parsed.role, ROLES[parsed.role]);
      if (parsed.help) {
        console.log(text);
        return 0;
      }
      console.error(text);
      return 2;
    }
    options = await resolveOptions(parsed);
  } catch (err) {
    return fail(err);
  }
  const role = ROLES[parsed.role];
  const name = (options.name as string | undefined) ??
    (options.port !== undefined ? `${parsed.role}-${options.port}` : `${parsed.role}-${Deno.pid}`);
  try {
    await setupLogging({
      instance: name,
      level: options.logLevel as "info",
      file: options.logFile as string | undefined,
    });
  } catch (err) {
    return fail(
      new UsageError(`Cannot open log file ${options.logFile}: ${(err as Error).message}`),
    );
  }
  const abort = new AbortController();
  const stop = () => abort.abort();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, stop);
  try {
    return await role.run(options, { signal: abort.signal, positionals: parsed.positionals });
  } catch (err) {
    return fail(err);
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, stop);
    await closeLogging();
  }
}

/**
 * `dist --config FILE --name X` without a role: the role is the instance's.
 * Returns argv with the role put first when it had to be found this way.
 */
async function withRoleFromConfig(argv: string[]): Promise<string[]> {
  const at = argv.findIndex((a) => a === "--config" || a.startsWith("--config="));
  if (at < 0 || argv.some((a) => a === "--role" || a.startsWith("--role="))) return argv;
  if (argv.some((a) => Object.hasOwn(ROLES, a)) || argv.includes("--help")) return argv;
  const file = argv[at].includes("=") ? argv[at].slice("--config=".length) : argv[at + 1];
  const n = argv.findIndex((a) => a === "--name" || a.startsWith("--name="));
  if (!file || n < 0) return argv;
  const name = argv[n].includes("=") ? argv[n].slice("--name=".length) : argv[n + 1];
  if (!name) return argv;
  const topology = await loadTopology(file, ROLES);
  return [findInstance(topology, name).role, ...argv];
}

async function resolveOptions(parsed: ParsedCommand): Promise<Options> {
  const role = ROLES[parsed.role!];
  const spec = roleSpec(role);
  if (parsed.config === undefined) return mergeOptions(spec, parsed.options);
  const name = parsed.options.name as string | undefined;
  if (name === undefined) throw new UsageError("--config needs --name INSTANCE");
  const topology = await loadTopology(parsed.config, ROLES);
  const instance = findInstance(topology, name);
  if (instance.role !== parsed.role) {
    throw new UsageError(
      `Instance ${name} in ${parsed.config} is a ${instance.role}, not a ${parsed.role}`,
    );
  }
  const cli = resolveReferences(parsed.options, { topology, spec });
  return mergeOptions(spec, instance.options, cli);
}

/** Prints a failure the way users see it and picks the exit code. */
function fail(err: unknown): number {
  if (err instanceof UsageError) {
    console.error(`dist: ${err.message}`);
    return 2;
  }
  if (err instanceof DistError) {
    console.error(`dist: ${err.code}: ${err.message}`);
    return 1;
  }
  // The runtime's own errors (a busy port, a bad address) are the user's to
  // fix, not bugs: one line. Anything else is a bug and keeps its stack.
  const runtime = err instanceof Error && Object.values(Deno.errors).some((e) => err instanceof e);
  console.error(
    `dist: ${err instanceof Error ? (runtime ? err.message : err.stack) : String(err)}`,
  );
  return 1;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
