/**
 * `dist export systemd`: per host, one unit per instance placed there
 * (`dist-NAME.service`), a `dist.target` that wants them all, and the
 * topology file they read (`/etc/dist/topology.toml`). Each unit:
 * - runs `dist --config /etc/dist/topology.toml --name NAME`: the file
 *   already gives every address, as for `dist up --on HOST`;
 * - is ordered after what `dist up` waits for on its host (`After=`,
 *   `Wants=`), and started only once it answers `sys.ping` itself
 *   (`ExecStartPost=` probes it), so what waits for it waits for that;
 *   what it waits for on another host is probed before it starts
 *   (`ExecStartPre=`);
 * - restarts as the file says (`Restart=always|on-failure|no`);
 * - runs under a dynamic user with the filesystem read-only, no devices,
 *   no capabilities (but binding a port below 1024) and the usual
 *   hardening;
 * - is given its security material (secrets.ts) as systemd credentials:
 *   `LoadCredential=ID:/etc/dist/credentials/ID` (root's files, which
 *   systemd copies where only the unit's user reads them, `%d`), passed by
 *   path (`--token-file=%d/token`, `--tls-cert=%d/NAME.crt`…); the
 *   topology file has its secret values taken out.
 * Without `--on HOST`, a file placing instances on several hosts is
 * exported into one folder per host.
 */
import {
  dialHost,
  formatAddress,
  type Instance,
  optionsToArgv,
  roleSpec,
  toSnake,
} from "../config/mod.ts";
import { makePlan, type PlannedInstance, sameHost } from "../launch/mod.ts";
import {
  CONFIG_DIR,
  CONFIG_FILE,
  CONFIG_PATH,
  type ExportContext,
  type ExportFile,
  type ExportInput,
  Findings,
  listeningPorts,
  pingPort,
  portKeys,
} from "./model.ts";
import { header, readyLineNote } from "./notes.ts";

/** Where a host keeps the credentials (root's only). */
export const CREDENTIALS_DIR = `${CONFIG_DIR}/credentials`;

/** The target unit that starts every unit of a host. */
export const TARGET_UNIT = "dist.target";

/** How many times, and how often, a probe asks for `sys.ping` before giving up. */
const PROBE_TRIES = 60;
const PROBE_PAUSE = "0.5";

/** The unit of an instance. */
export function unitName(name: string): string {
  return `dist-${name}.service`;
}

/** A word of a command line as systemd reads it: `%` and `$` doubled, quoted when it must be. */
function word(text: string): string {
  const escaped = text.replaceAll("%", "%%").replaceAll("$", "$$$$");
  return /^[\w@+=:,./-]+$/.test(escaped) ? escaped : `"${escaped.replace(/["\\]/g, "\\$&")}"`;
}

/**
 * A shell loop that waits until `address` answers `sys.ping`, for
 * `ExecStartPre=`/`ExecStartPost=`, dialing with `dial` (flags whose paths
 * start with the `%d` of the unit's credentials).
 */
function probe(bin: string, address: string, dial: string[]): string {
  const flags = dial.map((f) =>
    f.startsWith("--user=") ? `--user=${unitText(shellQuote(f.slice(7)))}` : f
  );
  // `$$` is one `$` for the shell once systemd has read the line; `%%` one `%` (hostile47 Q21:
  // a `%h` in --bin was expanded by systemd in the probe, not in ExecStart).
  const ping = [
    `${unitText(shellQuote(bin))} client --connect ${unitText(address)} --timeout 1s`,
    ...flags,
    "sys.ping",
  ].join(" ");
  return `/bin/sh -c 'i=0; until ${ping} >/dev/null 2>&1; do i=$$((i+1)); ` +
    `[ $$i -lt ${PROBE_TRIES} ] || exit 1; sleep ${PROBE_PAUSE}; done'`;
}

/**
 * A comment's text (h48 P3): each control character, line separator or
 * bidirectional control written `\xNN`/`\uXXXX`, and `\` doubled: a line
 * break in the topology's path wrote unit lines of the file name's choosing.
 */
function commentText(text: string): string {
  return text.replace(
    // deno-lint-ignore no-control-regex
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\\]/g,
    (c) => {
      const code = c.charCodeAt(0);
      if (c === "\\") return "\\\\";
      return code < 0x100
        ? `\\x${code.toString(16).padStart(2, "0")}`
        : `\\u${code.toString(16).padStart(4, "0")}`;
    },
  );
}

/**
 * Text of a value that is no command (`Description=`): as a comment's, and
 * `%` doubled (a specifier otherwise: `%h` is the home directory; h48 P3).
 */
function plainText(text: string): string {
  return commentText(text).replaceAll("%", "%%");
}

/** Text of a shell line as systemd must be given it: its own `%` and `$` doubled. */
function unitText(text: string): string {
  return text.replaceAll("%", "%%").replaceAll("$", "$$$$");
}

function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `"${text.replace(/["\\$`]/g, "\\$&")}"`;
}

/**
 * The export's files, per host.
 *
 * @returns the files, or nothing when `input.context.findings` has problems
 */
export function exportSystemd(input: ExportInput & { bin: string }): ExportFile[] {
  const { context } = input;
  const { topology, roles } = context;
  checkPortZero(context);
  checkDataDirs(context);
  if (context.findings.problems.length > 0) return [];
  if (input.on !== undefined) {
    return hostFiles(input, { planned: input.planned, host: input.on, folder: "" });
  }
  // One folder per host when there are several.
  const hosts: string[] = [];
  for (const instance of topology.instances) {
    if (!hosts.some((h) => sameHost(h, instance.host))) hosts.push(instance.host);
  }
  return hosts.flatMap((host) => {
    const plan = makePlan(topology, { roles, on: host });
    const folder = hosts.length > 1 ? `${host}/` : "";
    return hostFiles(input, { planned: plan.instances, host, folder });
  });
}

/**
 * A unit runs as a dynamic user, which can own nothing made before it runs: its data lives in a
 * StateDirectory under /var/lib, or nowhere it can write (review r47 R6).
 */
function checkDataDirs(context: ExportContext): void {
  for (const instance of context.topology.instances) {
    const dir = instance.options.dataDir;
    if (typeof dir !== "string" || !dir.startsWith("/") || dir.startsWith("/var/lib/")) continue;
    context.findings.problem(
      `${instance.role}.data_dir: ${dir}: a systemd unit runs as a dynamic user, which keeps ` +
        `data under /var/lib only (a StateDirectory); use "auto" or a path under /var/lib`,
    );
  }
}

/** Port 0 works only where nobody needs to know the port: no reference, no probe. */
function checkPortZero(context: ExportContext): void {
  const byName = new Map(context.topology.instances.map((i) => [i.name, i]));
  for (const instance of context.topology.instances) {
    for (const [key, targets] of Object.entries(instance.refs)) {
      for (const target of targets) {
        const other = byName.get(target);
        if (
          other === undefined ||
          !portKeys(context.roles[other.role]).some((k) => other.options[k] === 0)
        ) continue;
        context.findings.problem(
          `${instance.role}.${toSnake(key)}: ${instance.name} dials ${target}, which listens on ` +
            `port 0: systemd cannot tell it the port ${target} picks; give ${target} a port`,
        );
      }
    }
  }
}

function hostFiles(
  input: ExportInput & { bin: string },
  { planned, host, folder }: { planned: PlannedInstance[]; host: string; folder: string },
): ExportFile[] {
  // Notes are per host: each host's dist.target lists the file's and its own.
  const findings = new Findings();
  for (const note of input.context.findings.notes) findings.note(note);
  const readyNote = readyLineNote(planned, "systemd waits only until such an instance has started");
  if (readyNote !== undefined) findings.note(readyNote);
  const units = planned.map((p) => ({
    path: folder + unitName(p.instance.name),
    text: unit(p, input),
  }));
  const credentials = input.secrets.ids(planned.map((p) => p.instance.name));
  const target = [
    ...header({ ...input, context: { ...input.context, findings } }, "systemd", [
      `Install on ${host}: copy ${CONFIG_FILE} to ${CONFIG_PATH} and the units to`,
      ...(credentials.length === 0 ? [`/etc/systemd/system, put dist at ${input.bin}, then`] : [
        `/etc/systemd/system, put dist at ${input.bin}, credentials/ (keys, tokens or`,
        `certificates: each unit reads its own as a systemd credential) where root only reads it:`,
        `  install -d -m 700 ${CREDENTIALS_DIR} && install -m 600 credentials/* ${CREDENTIALS_DIR}`,
        `then`,
      ]),
      `  systemctl daemon-reload && systemctl enable --now ${TARGET_UNIT}`,
      `Each unit runs \`dist --config ${CONFIG_PATH} --name NAME\`; logs go to the journal`,
      `(journalctl -u 'dist-*').`,
    ]).map((l) => l === "" ? "#" : `# ${commentText(l)}`),
    "",
    "[Unit]",
    `Description=dist: ${plainText(input.context.topology.file)} on ${plainText(host)}`,
    `Wants=${planned.map((p) => unitName(p.instance.name)).join(" ")}`,
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
  return [
    { path: folder + TARGET_UNIT, text: target },
    ...units,
    { path: folder + CONFIG_FILE, text: input.text },
    ...credentials.map((id) => ({
      path: `${folder}credentials/${id}`,
      text: input.secrets.text(id),
      mode: 0o600,
    })),
  ];
}

/** The hardening every unit gets; what dist needs is said where it departs. */
const HARDENING = [
  "DynamicUser=yes",
  "ProtectSystem=strict",
  "ProtectHome=yes",
  "PrivateTmp=yes",
  "PrivateDevices=yes",
  "NoNewPrivileges=yes",
  "ProtectKernelTunables=yes",
  "ProtectKernelModules=yes",
  "ProtectKernelLogs=yes",
  "ProtectControlGroups=yes",
  "ProtectClock=yes",
  "ProtectHostname=yes",
  "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
  "RestrictNamespaces=yes",
  "RestrictRealtime=yes",
  "RestrictSUIDSGID=yes",
  "LockPersonality=yes",
  "SystemCallArchitectures=native",
  "UMask=0077",
  "# MemoryDenyWriteExecute= is left off: V8 compiles JavaScript to machine code.",
];

function unit(p: PlannedInstance, input: ExportInput & { bin: string }): string {
  const { instance } = p;
  const { topology, roles } = input.context;
  const byName = new Map(topology.instances.map((i) => [i.name, i]));
  const ports = listeningPorts(instance, roles);
  const deps = p.after.map(unitName);
  const ids = input.secrets.ids([instance.name]);
  const dial = input.secrets.dialFlags(instance, "%d");
  const waitDial = input.secrets.dialFlags(instance, "%d", undefined, "dependency");
  const lines = [
    `# dist ${instance.role} ${instance.name} of ${
      commentText(topology.file)
    } (restart ${instance.restart}):`,
    `# part of ${TARGET_UNIT}; edit the topology file and export again rather than this.`,
    "[Unit]",
    `Description=dist ${instance.role} ${instance.name}`,
    `PartOf=${TARGET_UNIT}`,
    `After=${["network-online.target", ...deps].join(" ")}`,
    `Wants=${["network-online.target", ...deps].join(" ")}`,
    "",
    "[Service]",
    "Type=exec",
    ...(ids.length === 0 ? [] : [
      `# Its secrets: root's files in ${CREDENTIALS_DIR}, read by this unit only (%d).`,
      ...ids.map((id) => `LoadCredential=${id}:${CREDENTIALS_DIR}/${id}`),
    ]),
  ];
  for (const name of p.remote) {
    const dep = byName.get(name)!;
    if (pingPort(dep, roles) === undefined) {
      lines.push(`# ${name} runs on ${dep.host} and answers no sys.ping: start that host first.`);
      continue;
    }
    const address = formatAddress({ host: dialHost(dep.host), port: dep.options.port as number });
    lines.push(`# ${name} runs on ${dep.host}: wait until it answers.`);
    lines.push(`ExecStartPre=${probe(input.bin, address, waitDial)}`);
  }
  // Credential paths are safe words (ids are instance names and fixed names), and
  // `%d` must reach systemd as it is.
  const secretArgs = optionsToArgv(
    input.secrets.options(instance.name, "%d"),
    roleSpec(roles[instance.role]),
  );
  lines.push(
    `ExecStart=${
      [
        ...[input.bin, "--config", CONFIG_PATH, "--name", instance.name].map(word),
        ...secretArgs,
      ].join(" ")
    }`,
  );
  const main = ports.get("port");
  if (main !== undefined && main !== 0 && pingPort(instance, roles) === undefined) {
    lines.push(`# Passes every byte to a backend (--mode tcp): nothing to ask sys.ping.`);
  } else if (main !== undefined && main !== 0) {
    lines.push(`# Started once it answers sys.ping, so what waits for it waits for that.`);
    lines.push(
      `ExecStartPost=${
        probe(input.bin, formatAddress({ host: dialHost(instance.host), port: main }), dial)
      }`,
    );
  } else if (main === 0) {
    lines.push(`# Port 0: the port is picked at start, so nothing probes it.`);
  }
  lines.push(
    `Restart=${instance.restart}`,
    "RestartSec=1s",
    "TimeoutStartSec=90s",
    `TimeoutStopSec=${Math.ceil(Number(instance.options.grace ?? 2000) / 1000) + 10}s`,
    "LogsDirectory=dist",
    "# A relative --log-file lands in /var/log/dist.",
    "WorkingDirectory=/var/log/dist",
    `ReadOnlyPaths=${CONFIG_DIR}`,
    ...logFilePaths(instance),
    ...dataDirPaths(instance),
    ...HARDENING,
  );
  if ([...ports.values()].some((port) => port > 0 && port < 1024)) {
    lines.push("# A port below 1024 needs this one capability.");
    lines.push(
      "AmbientCapabilities=CAP_NET_BIND_SERVICE",
      "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    );
  } else lines.push("CapabilityBoundingSet=");
  return lines.join("\n") + "\n";
}

/**
 * A `data_dir` must be writable under ProtectSystem=strict and outlive the unit (hostile47 Q7):
 * `"auto"` is the unit's own StateDirectory (dist reads `$STATE_DIRECTORY`), one under /var/lib
 * is made a StateDirectory too, a relative one lands in the logs directory.
 */
function dataDirPaths(instance: Instance): string[] {
  const dir = instance.options.dataDir;
  if (typeof dir !== "string") return [];
  if (dir === "auto") {
    return [
      `# data_dir = "auto": /var/lib/dist/${instance.name}/${instance.name}`,
      `StateDirectory=dist/${instance.name}`,
    ];
  }
  const path = dir.replace(/(?<=.)\/+$/, "");
  if (path.startsWith("/var/lib/") && path.length > "/var/lib/".length) {
    return [`StateDirectory=${path.slice("/var/lib/".length)}`];
  }
  // Relative (an absolute one elsewhere is refused: checkDataDirs).
  return [`# data_dir ${dir} is in /var/log/dist (kept across restarts).`];
}

/** An absolute `--log-file` outside /var/log/dist must be writable. */
function logFilePaths(instance: Instance): string[] {
  const file = instance.options.logFile;
  if (typeof file !== "string" || !file.startsWith("/") || file.startsWith("/var/log/dist/")) {
    return [];
  }
  const dir = file.slice(0, file.lastIndexOf("/")) || "/";
  return [`# ${instance.name} logs to ${file} as well.`, `ReadWritePaths=-${dir}`];
}
