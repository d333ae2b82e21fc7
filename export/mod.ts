/**
 * @module
 * `dist export compose|systemd|k8s [FILE]`: the topology (the embedded
 * default without FILE) as the files an orchestrator already running
 * elsewhere takes, for clusters that outgrow `dist up`.
 *
 * - `model.ts`: what every target shares: listening ports, the addresses an
 *   instance is given rewritten for a target, each instance's command line
 *   (`dist --config /etc/dist/topology.toml --name NAME` plus overrides),
 *   and the checks of what a target cannot express ({@link Findings}:
 *   problems stop the export, notes become comments in it).
 * - `compose.ts`, `systemd.ts`, `k8s.ts`: one target each, pure functions
 *   from the plan (launch/'s `makePlan`: instances, references, start
 *   order) to files.
 * - `secrets.ts`: the security material (tokens, passwords, users files,
 *   TLS certificates and keys) each target carries as its secrets, out of
 *   the topology file and the command lines.
 * - `notes.ts`: the header comment every export opens with.
 * - `yaml.ts`: YAML with comments (compose, Kubernetes).
 * - `files.ts`: writing the files to `--out DIR`, or listing them on stdout.
 *
 * The container image the exports run is built by `Containerfile` at the
 * root of the repository (`container/install.sh` does its work).
 */
import {
  DEFAULT_MAX_INSTANCES,
  type Instance,
  type RoleInfo,
  throwProblems,
  type Topology,
  UsageError,
} from "../config/mod.ts";
import {
  type CommandInfo,
  formatLauncherHelp,
  makePlan,
  parseLauncherArgs,
  readTopology,
  tlsHostsOf,
  writeStdoutQuietly,
} from "../launch/mod.ts";
import { exportCompose } from "./compose.ts";
import { exportK8s, k8sDialNames } from "./k8s.ts";
import { gatherSecrets, redactTopology } from "./secrets.ts";
import { exportSystemd } from "./systemd.ts";
import { AUTO_DATA_ENV, type ExportFile, type ExportInput, Findings, isLoopback } from "./model.ts";
import { VERSION } from "./notes.ts";
import { writeFiles } from "./files.ts";
import { checkBin, checkImage } from "./flags.ts";

export { type ExportFile, type ExportInput, Findings } from "./model.ts";
export { COMPOSE_FILE } from "./compose.ts";
export { K8S_FILE } from "./k8s.ts";
export { VERSION } from "./notes.ts";

/** The image the exports run unless `--image` says otherwise (what README's build tags). */
export const DEFAULT_IMAGE = `dist:${VERSION}`;

/** Where the systemd units find `dist` unless `--bin` says otherwise. */
export const DEFAULT_BIN = "/usr/local/bin/dist";

/** The names each target's dialers reach an instance at (what its certificate must name). */
const DIAL_NAMES: ReadonlyMap<string, (topology: Topology) => (instance: Instance) => string[]> =
  new Map([
    // Compose's dialers use the service name; another host's, the file's host.
    ["compose", () => (i: Instance) => [i.name, ...(isLoopback(i.host) ? [] : [i.host])]],
    // As under dist up (the file's addresses); "localhost" is dist up's own.
    ["systemd", () => (i: Instance) => tlsHostsOf(i).filter((h) => h !== "localhost")],
    ["k8s", k8sDialNames],
  ]);

const TARGETS: ReadonlyMap<string, (input: ExportInput & { bin: string }) => ExportFile[]> =
  new Map([
    ["compose", exportCompose],
    ["systemd", exportSystemd],
    ["k8s", exportK8s],
  ]);

export const EXPORT: CommandInfo = {
  name: "export",
  summary: "Write the topology (the default without FILE) for compose, systemd or Kubernetes",
  usage: "dist export compose|systemd|k8s [FILE] [--out DIR] [--image IMAGE] [--on HOST]",
  flags: {
    out: {
      type: "string",
      description: "Write the files into this folder (made if missing) instead of stdout",
      metavar: "DIR",
    },
    image: {
      type: "string",
      description: "Container image that runs dist (compose, k8s); see Containerfile",
      default: DEFAULT_IMAGE,
      metavar: "IMAGE",
    },
    on: {
      type: "string",
      description: "Only the instances placed on this host (compose, systemd)",
      metavar: "HOST",
    },
    bin: {
      type: "string",
      description: "Path of dist on the hosts (systemd)",
      default: DEFAULT_BIN,
      metavar: "PATH",
    },
    maxInstances: {
      type: "integer",
      description: "Refuse a topology file that makes more instances than this",
      default: DEFAULT_MAX_INSTANCES,
      min: 1,
      metavar: "N",
    },
  },
};

/** Where each target says the file's secret values went (in the topology's comment). */
const SECRETS_WHERE: ReadonlyMap<string, string> = new Map([
  ["compose", "a file of secrets/, a Compose secret"],
  ["systemd", "a file of credentials/, a systemd credential"],
  ["k8s", "the Secret of each workload"],
]);

/**
 * Builds the files of one export of a loaded topology, with its security
 * material (read, or made for `tls = "auto"`: secrets.ts).
 *
 * @throws {UsageError} naming every problem: what the target cannot express
 */
export async function buildExport(
  target: string,
  input: { topology: ExportInput["context"]["topology"]; text: string } & {
    roles: Record<string, RoleInfo>;
    image?: string;
    on?: string;
    bin?: string;
  },
): Promise<ExportFile[]> {
  const make = TARGETS.get(target);
  if (make === undefined) {
    throw new UsageError(
      `Unknown export target ${JSON.stringify(target)}: one of ${[...TARGETS.keys()].join(", ")}`,
    );
  }
  checkBin(input.bin ?? DEFAULT_BIN);
  const findings = new Findings();
  const context = { topology: input.topology, roles: input.roles, findings, target };
  const kept = input.topology.instances.filter((i) => typeof i.options.dataDir === "string");
  if (target !== "systemd" && kept.length > 0) {
    const names = kept.map((i) => i.name);
    const shown = names.length > 4 ? `${names.slice(0, 4).join(", ")}, …` : names.join(", ");
    const where = target === "k8s"
      ? 'the pod\'s files (an emptyDir for "auto"), lost when the pod is deleted or moved; mount a PersistentVolumeClaim'
      : "the container's files, lost when it is recreated; mount a volume";
    findings.note(
      `data_dir (${shown}): "auto" is ${AUTO_DATA_ENV.STATE_DIRECTORY}/NAME, any other a path in the ` +
        `container; either is in ${where} there to keep it`,
    );
  }
  // systemd without --on exports every host, each into a folder of its own (systemd.ts).
  const plan = target === "systemd" && input.on === undefined
    ? undefined
    : makePlan(input.topology, { roles: input.roles, on: input.on });
  const secrets = await gatherSecrets({
    ...context,
    dialNames: DIAL_NAMES.get(target)!(input.topology),
  });
  const text = redactTopology(input.text, context, SECRETS_WHERE.get(target)!);
  const files = findings.problems.length > 0 ? [] : make({
    context,
    text,
    secrets,
    planned: plan?.instances ?? [],
    image: input.image ?? DEFAULT_IMAGE,
    bin: input.bin ?? DEFAULT_BIN,
    ...(input.on === undefined ? {} : { on: input.on }),
  });
  throwProblems(input.topology.file, findings.problems);
  return files;
}

/**
 * Runs `dist export` with the arguments after `export`; resolves with the exit code.
 *
 * @throws {UsageError} for bad flags, a bad topology, or what the target cannot express
 */
export async function exportCommand(
  argv: string[],
  roles: Record<string, RoleInfo>,
): Promise<number> {
  const [target, ...rest] = argv;
  if (target === undefined || target.startsWith("-")) {
    const help = formatLauncherHelp(EXPORT);
    if (target === "-h" || target === "--help") {
      writeStdoutQuietly(help);
      return 0;
    }
    throw new UsageError(
      "dist export needs a target: compose, systemd or k8s (see dist export --help)",
    );
  }
  const args = parseLauncherArgs(rest, EXPORT);
  if (args.help) {
    writeStdoutQuietly(formatLauncherHelp(EXPORT));
    return 0;
  }
  if (!TARGETS.has(target)) {
    throw new UsageError(
      `Unknown export target ${JSON.stringify(target)}: one of ${[...TARGETS.keys()].join(", ")}`,
    );
  }
  const o = args.options;
  if (target === "systemd") checkBin(o.bin as string);
  else checkImage(o.image as string);
  if (target === "k8s" && o.on !== undefined) {
    throw new UsageError(
      "--on is for compose and systemd: Kubernetes places pods on its nodes itself",
    );
  }
  const { topology, text } = await readTopology(args.file, roles, {
    maxInstances: o.maxInstances as number,
    applyTls: false,
    writtenPaths: false, // data_dir and log_file name places on the target
    exported: true,
  });
  const files = await buildExport(target, {
    topology,
    text,
    roles,
    image: o.image as string,
    bin: o.bin as string,
    ...(o.on === undefined ? {} : { on: o.on as string }),
  });
  await writeFiles(files, o.out as string | undefined);
  return 0;
}
