/**
 * The `dist` executable: parses argv, picks the role and runs it.
 *
 *   dist <role> [flags]          dist --role <role> [flags]
 *   dist --config FILE --name INSTANCE [<role>] [flags]
 */
import {
  type Command,
  formatMainHelp,
  formatRoleHelp,
  parseAddress,
  parseCommand,
  prefetchUserFiles,
  UsageError,
  userFilesOf,
} from "./config/mod.ts";
// Not roles/mod.ts: a process loads the one role it plays (roles/load.ts).
import {
  closeLogging,
  onStdoutClosed,
  type Role,
  rolesFor,
  setupLogging,
  stdoutFailure,
  Stopper,
  writeStdout,
} from "./roles/load.ts";
import { getLogger } from "@logtape/logtape";
import { DistError } from "./wire/mod.ts";
import { printableText } from "./roles/_printable.ts";
import { loadCpuUsage, MetricsBindError, ProcessMetrics } from "./obs/mod.ts";
// The watch of a parent `dist up` alone: the launcher loads with `up` and `status`.
import { LAUNCHER_ENV, watchLauncher } from "./launch/self.ts";
import { blockStderr, unblockStderr } from "./roles/_stderr.ts";
import { startHeapTrim } from "./obs/heap_trim.ts";
import denoJson from "./deno.json" with { type: "json" };

export const VERSION: string = denoJson.version;

/** Runs `dist` with `argv` and resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  let parsed: Command;
  let roles: Readonly<Record<string, Role>>;
  try {
    // `dist up` and `dist status` run a whole topology (launch/).
    if (argv[0] === "up" || argv[0] === "status") {
      // Loaded only here: the launcher (the dashboard's files with it) is no part of a role's start.
      const launch = await import("./launch/mod.ts");
      return await launch[argv[0]](argv.slice(1), await allRoles());
    }
    if (argv[0] === "passwd") {
      const { passwd } = await import("./auth/passwd.ts");
      return await passwd(argv.slice(1));
    }
    if (argv[0] === "export") {
      // Loaded only here: the exports' YAML writer is no part of a role's start.
      const { exportCommand } = await import("./export/mod.ts");
      return await exportCommand(argv.slice(1), await allRoles());
    }
    if (argv[0] === "cert") {
      // Loaded only here: the certificate library takes half a second to load.
      const { certCommand } = await import("./cert/command.ts");
      return await certCommand(argv.slice(1));
    }
    roles = await rolesFor(argv);
    parsed = await parseCommand(argv, roles);
    if (parsed.instance !== undefined && parsed.resolved.dataDir === "auto") {
      const { autoDataDir } = await import("./launch/state.ts");
      parsed.resolved.dataDir = await autoDataDir(parsed.topology!.file, parsed.instance.name);
    }
    if (parsed.version) {
      writeStdout(`dist ${VERSION} (deno ${Deno.version.deno})`);
      return 0;
    }
    if (parsed.help || parsed.role === undefined) {
      const text = parsed.role === undefined
        ? formatMainHelp(roles, VERSION)
        : formatRoleHelp(parsed.role, roles[parsed.role]);
      if (parsed.help) {
        writeStdout(text);
        return 0;
      }
      console.error(text);
      return 2;
    }
  } catch (err) {
    return fail(err);
  }
  const role = roles[parsed.role];
  const options = parsed.resolved;
  const name = (options.name as string | undefined) ??
    (options.port !== undefined ? `${parsed.role}-${options.port}` : `${parsed.role}-${Deno.pid}`);
  // Under dist up, a paused launcher must not freeze this process on its log lines.
  unblockStderr(LAUNCHER_ENV);
  try {
    await setupLogging({
      instance: name,
      level: options.logLevel as "info",
      file: options.logFile as string | undefined,
      json: options.json as boolean,
    });
  } catch (err) {
    return fail(
      new UsageError(`Cannot open log file ${options.logFile}: ${(err as Error).message}`),
    );
  }
  // SIGINT/SIGTERM stop gracefully, a second one at once; a closed stdout
  // (`| head`) stops quietly.
  let metrics: ProcessMetrics | undefined;
  if (typeof options.metrics === "string") {
    await loadCpuUsage();
    metrics = new ProcessMetrics(parsed.role, name);
    try {
      const { hostname, port } = metrics.serve(parseAddress(options.metrics)).addr; // checked by the loader
      const host = hostname.includes(":") ? `[${hostname}]` : hostname;
      getLogger(["dist", parsed.role]).info("Metrics at http://{host}:{port}/metrics", {
        host,
        port,
      });
    } catch (err) {
      await metrics.close();
      await closeLogging();
      return fail(err instanceof MetricsBindError ? new UsageError(err.message) : err);
    }
  }
  const stopper = new Stopper();
  onStdoutClosed(() => stopper.stop());
  const unlisten = stopper.listen();
  // The files the role's settings read (synchronously) are read here first,
  // bounded and asynchronously: SIGTERM stops a read that blocks (h48 P1),
  // a stop before the role started, exit 0.
  if (!await prefetchUserFiles(userFilesOf(options), stopper.signal)) {
    unlisten();
    await metrics?.close();
    await closeLogging();
    return 0;
  }
  const unwatch = watchLauncher(() => stopper.stop()); // Started by dist up: stop when it is gone.
  const untrim = startHeapTrim();
  try {
    return await role.run(options, {
      signal: stopper.signal,
      positionals: parsed.positionals,
      onForcedExit: (describe) => stopper.describeAbandoned(describe),
      metrics,
    });
  } catch (err) {
    return fail(err);
  } finally {
    unlisten();
    unwatch();
    untrim();
    await metrics?.close();
    await closeLogging();
  }
}

/** Every role's module: for the commands that work with the whole table. */
async function allRoles(): Promise<Readonly<Record<string, Role>>> {
  return (await import("./roles/mod.ts")).ROLES;
}

/** Prints a failure the way users see it and picks the exit code. */
function fail(err: unknown): number {
  blockStderr(); // The process ends: its last lines wait for a paused launcher.
  if (err instanceof UsageError) {
    // Several problems (a topology file's) are several lines, each `dist: …`.
    for (const line of err.message.split("\n")) console.error(`dist: ${line}`);
    return 2;
  }
  if (err instanceof DistError) {
    // A peer's message (an error a worker made up, say): printed with its controls escaped.
    console.error(`dist: ${err.code}: ${printableText(err.message)}`);
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
  const code = await main(Deno.args);
  // Output lost to a failing stdout (a full disk, h48 P5): one line, exit 1.
  const lost = stdoutFailure();
  if (lost !== undefined) {
    blockStderr();
    console.error(`dist: ${lost}`);
  }
  Deno.exit(lost === undefined ? code : Math.max(code, 1));
}
