/**
 * The command lines of `dist up [FILE] [flags]` and `dist status [FILE]
 * [flags]`: one optional topology file and a few flags of their own (not a
 * role's), converted and checked like every other flag (config/).
 */
import {
  convertValue,
  DEFAULT_MAX_INSTANCES,
  didYouMean,
  formatDuration,
  type Options,
  type OptionSpec,
  toCamel,
  toKebab,
  UsageError,
} from "../config/mod.ts";

/** A launcher command: its flags and its help. */
export interface CommandInfo {
  name: string;
  summary: string;
  usage: string;
  flags: OptionSpec;
}

/** A topology file making more instances than this is refused before any is made. */
const MAX_INSTANCES: OptionSpec[string] = {
  type: "integer",
  description: "Refuse a topology file that makes more instances than this",
  default: DEFAULT_MAX_INSTANCES,
  min: 1,
  metavar: "N",
};

export const UP: CommandInfo = {
  name: "up",
  summary: "Launch and supervise a whole topology (the embedded default without FILE)",
  usage:
    "dist up [FILE] [--only A,B] [--on HOST] [--dry-run] [--duration D] [--grace D] [--max-instances N] [--dashboard HOST:PORT | --no-dashboard] [--metrics HOST:PORT]",
  flags: {
    only: {
      type: "list",
      description: "Start only these instances or entries, and what they depend on",
      metavar: "A,B",
    },
    on: {
      type: "string",
      description: "Start only the instances placed on this host (host = … in the file)",
      metavar: "HOST",
    },
    dryRun: {
      type: "boolean",
      description: "Print the plan (start order, address, command line) and exit",
    },
    json: { type: "boolean", description: "With --dry-run: one JSON object per instance" },
    duration: { type: "duration", description: "Stop everything after this long" },
    grace: {
      type: "duration",
      description: "On shutdown, time between SIGTERM and SIGKILL",
      default: 5000,
    },
    readyTimeout: {
      type: "duration",
      description:
        "How long an instance may take to be ready (answer sys.ping, log its ready line)",
      default: 15_000,
      min: 1, // 0 could only fail (hostile47 Q11)
    },
    maxInstances: MAX_INSTANCES,
    dashboard: {
      type: "address",
      description:
        "Serve the live dashboard here (default: 127.0.0.1:8090, a free port when that is taken)",
      metavar: "HOST:PORT",
    },
    noDashboard: { type: "boolean", description: "Serve no dashboard" },
    metrics: {
      type: "address",
      description:
        "Serve the launcher's Prometheus metrics here too (they are at the dashboard's /metrics)",
      metavar: "HOST:PORT",
    },
  },
};

export const STATUS: CommandInfo = {
  name: "status",
  summary: "Ask every instance of a topology for sys.stats and print one table",
  usage: "dist status [FILE] [--json] [--timeout D] [--watch [--interval D]]",
  flags: {
    json: { type: "boolean", description: "One JSON object per instance" },
    timeout: {
      type: "duration",
      description: "How long to wait for each answer",
      default: 2000,
      min: 1, // 0 showed every live instance down (hostile47 Q11)
    },
    watch: {
      type: "boolean",
      description: "Refresh the table in place, with rates, until Ctrl-C",
    },
    interval: {
      type: "duration",
      description: "With --watch: time between two refreshes",
      default: 1000,
    },
    maxInstances: MAX_INSTANCES,
  },
};

/** What a launcher command line asked for. */
export interface LauncherArgs {
  /** The topology file; undefined means the embedded default. */
  file?: string;
  help: boolean;
  options: Options;
}

/**
 * Parses the arguments after `dist up` / `dist status`.
 *
 * @throws {UsageError} for an unknown flag, a bad value or a second file
 */
export function parseLauncherArgs(argv: string[], info: CommandInfo): LauncherArgs {
  const options: Options = {};
  for (const [key, def] of Object.entries(info.flags)) {
    if (def.default !== undefined) options[key] = def.default;
  }
  const args: LauncherArgs = { help: false, options };
  let flagsEnded = false;
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i];
    if (flagsEnded || !token.startsWith("-") || token === "-") {
      if (args.file !== undefined) {
        throw new UsageError(
          `Unexpected argument ${JSON.stringify(token)}: dist ${info.name} takes one topology file`,
        );
      }
      args.file = token;
      continue;
    }
    if (token === "--") {
      flagsEnded = true;
      continue;
    }
    if (token === "-h" || token === "--help") {
      args.help = true;
      continue;
    }
    const eq = token.indexOf("=");
    const name = token.slice(2, eq < 0 ? undefined : eq);
    let key = token.startsWith("--") ? toCamel(name) : undefined;
    let value: unknown = eq < 0 ? undefined : token.slice(eq + 1);
    if (key !== undefined && !Object.hasOwn(info.flags, key) && name.startsWith("no-")) {
      const positive = toCamel(name.slice(3));
      if (info.flags[positive]?.type === "boolean" && value === undefined) {
        key = positive;
        value = false;
      }
    }
    if (key === undefined || !Object.hasOwn(info.flags, key)) {
      const flags = Object.keys(info.flags).map(toKebab);
      const hint = didYouMean(name, [...flags, "help"], { format: (f) => `--${f}` });
      throw new UsageError(`Unknown flag ${token.split("=")[0]} for ${info.name}${hint}`);
    }
    const def = info.flags[key];
    if (value === undefined) {
      if (def.type === "boolean") value = true;
      else {
        const next = argv[i + 1];
        if (next === undefined || next.startsWith("-")) {
          throw new UsageError(`--${toKebab(key)} needs a value`);
        }
        value = next;
        i++;
      }
    }
    options[key] = convertValue(`--${toKebab(key)}`, def, value);
  }
  return args;
}

/** `dist up --help`, `dist status --help`. */
export function formatLauncherHelp(info: CommandInfo): string {
  const rows = Object.entries(info.flags).map(([key, def]) => {
    const flag = def.type === "boolean"
      ? `--${toKebab(key)}`
      : `--${toKebab(key)} ${def.metavar ?? (def.type === "duration" ? "DURATION" : "VALUE")}`;
    const shown = def.default === undefined
      ? ""
      : ` (default: ${
        def.type === "duration" ? formatDuration(def.default as number) : def.default
      })`;
    return [flag, def.description + shown];
  });
  rows.push(["-h, --help", "Show this help"]);
  const width = Math.max(...rows.map(([flag]) => flag.length)) + 3;
  return [
    `dist ${info.name}: ${info.summary}`,
    "",
    "Usage:",
    `  ${info.usage}`,
    "",
    "Flags:",
    ...rows.map(([flag, text]) => `  ${flag.padEnd(width)}${text}`),
    "",
  ].join("\n");
}
