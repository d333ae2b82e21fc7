/**
 * `dist cert ca` and `dist cert issue NAME --host …`: a CA and the
 * certificates it signs, as PEM files in a folder (no openssl needed).
 *
 * ```
 * dist cert ca --dir pki                      # pki/ca.crt, pki/ca.key
 * dist cert issue server-1 --host 10.0.0.5,node1.lan --dir pki
 * dist server --tls-cert pki/server-1.crt --tls-key pki/server-1.key
 * dist client --tls-ca pki/ca.crt --connect 10.0.0.5:5557 echo hi
 * ```
 */
import { join } from "node:path";
import {
  type FileRule,
  isReferenceName,
  KEY_RULE,
  PEM_RULE,
  quoted,
  readUserFile,
  UsageError,
} from "../config/mod.ts";
import { hostProblem } from "./hosts.ts";
import {
  type CommandInfo,
  formatLauncherHelp,
  parseLauncherArgs,
  writeStdoutQuietly,
} from "../launch/mod.ts";
import { issueCert, makeCa } from "./mod.ts";

const DIR = {
  type: "string",
  description: "Folder of the CA and the files made (created if missing)",
  default: ".",
  metavar: "DIR",
} as const;
const FORCE = { type: "boolean", description: "Replace files that exist" } as const;

const CA: CommandInfo = {
  name: "cert ca",
  summary: "Make a certificate authority: DIR/ca.crt (give it to dialers) and DIR/ca.key",
  usage: "dist cert ca [--dir DIR] [--name NAME] [--days N] [--force]",
  flags: {
    dir: DIR,
    name: { type: "string", description: "Its common name", default: "dist CA", metavar: "NAME" },
    days: { type: "integer", description: "Days it is valid", default: 3650, min: 1, max: 36500 },
    force: FORCE,
  },
};

const ISSUE: CommandInfo = {
  name: "cert issue",
  summary: "Make a certificate signed by the CA: DIR/NAME.crt and DIR/NAME.key",
  usage:
    "dist cert issue NAME --host HOST,... [--dir DIR] [--ca FILE --ca-key FILE] [--days N] [--force]",
  flags: {
    host: {
      type: "list",
      description: "Host names and IP addresses dialers reach it by (none: a client's certificate)",
      metavar: "HOST,...",
    },
    dir: DIR,
    ca: {
      type: "string",
      description: "The CA's certificate (default DIR/ca.crt)",
      metavar: "FILE",
    },
    caKey: { type: "string", description: "The CA's key (default DIR/ca.key)", metavar: "FILE" },
    days: { type: "integer", description: "Days it is valid", default: 825, min: 1, max: 36500 },
    force: FORCE,
  },
};

const USAGE = [
  "dist cert: make TLS certificates",
  "",
  "Usage:",
  `  ${CA.usage}`,
  `  ${ISSUE.usage}`,
  "",
  "dist cert ca --help and dist cert issue --help tell more.",
  "",
].join("\n");

/**
 * Runs `dist cert` with the arguments after `cert`; resolves with the exit code.
 * @throws {UsageError} for bad flags, a file that exists (without --force), an unusable CA
 */
export async function certCommand(argv: string[]): Promise<number> {
  const [what, ...rest] = argv;
  if (what === undefined || what === "-h" || what === "--help") {
    writeStdoutQuietly(USAGE);
    return what === undefined ? 2 : 0;
  }
  if (what === "ca") return await caCommand(rest);
  if (what === "issue") return await issueCommand(rest);
  throw new UsageError(`Unknown command dist cert ${what}: give ca or issue`);
}

async function caCommand(argv: string[]): Promise<number> {
  const args = parseLauncherArgs(argv, CA);
  if (args.help) return help(CA);
  if (args.file !== undefined) {
    throw new UsageError(`dist cert ca takes no argument (${args.file})`);
  }
  const o = args.options;
  const dir = o.dir as string;
  const files = { cert: join(dir, "ca.crt"), key: join(dir, "ca.key") };
  await refuseExisting(files, o.force === true);
  const ca = await makeCa({ name: o.name as string, days: o.days as number });
  await writeFiles(dir, files, ca);
  writeStdoutQuietly(
    `Wrote ${files.cert} (give it to dialers: --tls-ca ${files.cert}) and ${files.key} ` +
      `(keep it secret)\n`,
  );
  return 0;
}

async function issueCommand(argv: string[]): Promise<number> {
  const args = parseLauncherArgs(argv, ISSUE);
  if (args.help) return help(ISSUE);
  const name = args.file;
  if (name === undefined) throw new UsageError("dist cert issue needs a NAME (server-1, alice)");
  if (!isReferenceName(name)) {
    throw new UsageError(
      `Invalid name ${JSON.stringify(name)}: letters, digits, ".", "_", "-" (it names the files)`,
    );
  }
  const o = args.options;
  const hosts = (o.host as string[] | undefined) ?? [];
  for (const host of hosts) {
    const problem = hostProblem(host);
    if (problem !== undefined) throw new UsageError(`--host ${quoted(host)} ${problem}`);
  }
  const dir = o.dir as string;
  const caFiles = {
    cert: (o.ca as string | undefined) ?? join(dir, "ca.crt"),
    key: (o.caKey as string | undefined) ?? join(dir, "ca.key"),
  };
  const ca = {
    cert: await readFile("--ca", caFiles.cert, PEM_RULE),
    key: await readFile("--ca-key", caFiles.key, KEY_RULE), // Checked (N9).
  };
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  await refuseExisting(files, o.force === true);
  let issued;
  try {
    issued = await issueCert(ca, { name, hosts, days: o.days as number });
  } catch (err) {
    throw new UsageError(`Cannot sign with ${caFiles.cert}: ${(err as Error).message}`);
  }
  await writeFiles(dir, files, issued);
  const valid = hosts.length > 0 ? `valid for ${hosts.join(", ")}` : "a client's: no host";
  writeStdoutQuietly(
    `Wrote ${files.cert} (${valid}) and ${files.key}: give them as ` +
      `--tls-cert ${files.cert} --tls-key ${files.key}\n`,
  );
  return 0;
}

function help(info: CommandInfo): number {
  writeStdoutQuietly(formatLauncherHelp(info));
  return 0;
}

async function readFile(flag: string, path: string, rule: FileRule): Promise<string> {
  try {
    return await readUserFile(flag, path, rule); // Bounded (h48 P1).
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const hint = err instanceof Deno.errors.NotFound ? " (make one with dist cert ca)" : "";
    throw new UsageError(`${flag} ${path}: cannot read it: ${(err as Error).message}${hint}`);
  }
}

async function refuseExisting(files: { cert: string; key: string }, force: boolean) {
  if (force) return;
  for (const path of [files.cert, files.key]) {
    try {
      await Deno.lstat(path);
    } catch {
      continue;
    }
    throw new UsageError(`${path} exists: give --force to replace it`);
  }
}

/** Writes a certificate (readable by all) and its key (by its owner only). */
export async function writeFiles(
  dir: string,
  files: { cert: string; key: string },
  pair: { cert: string; key: string },
): Promise<void> {
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    await Deno.writeTextFile(files.key, pair.key, { mode: 0o600 });
    await Deno.chmod(files.key, 0o600); // mode applies only to a new file
    await Deno.writeTextFile(files.cert, pair.cert, { mode: 0o644 });
  } catch (err) {
    throw new UsageError(`Cannot write ${files.cert}: ${(err as Error).message}`);
  }
}
