/** Help text generated from the role table and the option specs. */
import { COMMON_OPTIONS, type OptionDef, type OptionSpec, type RoleInfo } from "./spec.ts";
import { formatDuration, toKebab } from "./values.ts";

/** The left column is at most this wide; longer flags put their description on the next line. */
const MAX_LEFT = 30;

const METAVARS: Record<string, string> = {
  string: "VALUE",
  integer: "N",
  number: "N",
  duration: "DURATION",
  port: "PORT",
  address: "HOST:PORT",
  addresses: "HOST:PORT,...",
  list: "A,B,...",
};

/** Two columns, indented by two spaces, aligned over `align` (default: these rows). */
function columns(rows: [string, string][], align: [string, string][] = rows): string[] {
  const fitting = align.map(([left]) => left.length).filter((n) => n <= MAX_LEFT);
  const width = Math.max(0, ...fitting) + 3;
  return rows.map(([left, right]) => {
    if (right === "") return `  ${left}`;
    if (left.length > MAX_LEFT) return `  ${left}\n  ${" ".repeat(width)}${right}`;
    return `  ${left.padEnd(width)}${right}`;
  });
}

function metavar(def: OptionDef): string {
  if (def.metavar) return def.metavar;
  if (def.type === "choice") return (def.choices ?? []).join("|");
  return METAVARS[def.type] ?? "VALUE";
}

/** A default as a user would write it, or undefined when there is nothing worth showing. */
function formatDefault(def: OptionDef): string | undefined {
  const value = def.default;
  if (value === undefined || (def.type === "boolean" && value === false)) return undefined;
  if (def.type === "duration" && typeof value === "number") return formatDuration(value);
  if (Array.isArray(value)) return value.length > 0 ? value.join(",") : undefined;
  return String(value);
}

function flagRows(spec: OptionSpec): [string, string][] {
  return Object.entries(spec).map(([key, def]) => {
    const long = `--${toKebab(key)}`;
    const flag = def.type === "boolean"
      ? (def.default === true ? `--[no-]${toKebab(key)}` : long)
      : `${long} ${metavar(def)}`;
    const left = def.short ? `-${def.short}, ${flag}` : flag;
    const shown = formatDefault(def);
    const text = def.env === undefined ? def.description : `${def.description} (or $${def.env})`;
    return [left, shown === undefined ? text : `${text} (default: ${shown})`];
  });
}

const GLOBAL_ROWS: [string, string][] = [
  ["-h, --help", "Show help (for a role: dist <role> --help)"],
  ["-V, --version", "Print the version"],
  ["--role ROLE", "The role to run (same as dist <role>)"],
  ["--config FILE", "Take this instance's options from a topology file"],
];

/** `dist --help`: usage, the roles with their summaries, and the global flags. */
export function formatMainHelp(roles: Record<string, RoleInfo>, version: string): string {
  return [
    `dist ${version}: one executable that plays every part of a small distributed system`,
    "",
    "Usage:",
    "  dist <role> [flags]",
    "  dist --role <role> [flags]",
    "  dist <role> --help      Flags of one role",
    "  dist up [FILE]          Launch and supervise a topology (dist up --help)",
    "  dist status [FILE]      Every instance of a topology in one table",
    "  dist export TARGET      The topology for compose, systemd or k8s (dist export --help)",
    "  dist passwd FILE USER   Set a user's password (or --token) in a users file",
    "  dist cert ca|issue      Make a TLS CA and certificates (dist cert --help)",
    "",
    "Roles:",
    ...columns(Object.entries(roles).map(([name, info]) => [name, info.summary])),
    "",
    "Global flags:",
    ...columns(GLOBAL_ROWS),
    "",
  ].join("\n");
}

/**
 * `dist <role> --help`: the role's usage lines, then every flag with its
 * description and default (durations as `1s`), its own flags before the
 * common ones.
 */
export function formatRoleHelp(roleName: string, info: RoleInfo): string {
  const common: OptionSpec = Object.fromEntries(
    Object.entries(COMMON_OPTIONS).filter(([key]) => !Object.hasOwn(info.options, key)),
  );
  const usage = info.usage.length > 0 ? info.usage : [`dist ${roleName} [flags]`];
  const own = flagRows(info.options);
  const shared = flagRows(common);
  const all = [...own, ...shared, ...GLOBAL_ROWS];
  const lines = [`dist ${roleName}: ${info.summary}`, "", "Usage:"];
  lines.push(...usage.map((line) => `  ${line}`));
  if (own.length > 0) lines.push("", "Flags:", ...columns(own, all));
  lines.push("", "Common flags:", ...columns(shared, all));
  lines.push("", "Global flags:", ...columns(GLOBAL_ROWS, all), "");
  return lines.join("\n");
}
