/**
 * What every export shares, with no target in it: the instances a plan
 * runs, the ports each listens on, the addresses an instance is given
 * rewritten for a target, and what a target cannot express, collected as
 * problems (errors) or notes (comments in the output).
 *
 * An instance of an export is run as `dist --config FILE --name NAME`, with
 * the topology file mounted or installed beside it, so the file stays the
 * one description of the cluster; flags after that override only what the
 * target changes (where it listens, the addresses of the others).
 */
import {
  formatAddress,
  type Instance,
  LISTEN_ADDRESSES,
  type OptionDef,
  type Options,
  optionsToArgv,
  parseAddress,
  portKeysOf,
  type RoleInfo,
  roleSpec,
  speaksDist,
  type Topology,
  type TopologyProblem,
  toSnake,
} from "../config/mod.ts";
import type { PlannedInstance } from "../launch/mod.ts";
import type { ExportSecrets } from "./secrets.ts";

/** Where the topology file is found inside a container or on a host. */
export const CONFIG_DIR = "/etc/dist";
export const CONFIG_FILE = "topology.toml";
export const CONFIG_PATH = `${CONFIG_DIR}/${CONFIG_FILE}`;

/**
 * What a container of an instance with `data_dir = "auto"` is given: dist places it in
^ * `$STATE_DIRECTORY/NAME` (launch/state.ts autoDataDir), here under the image's working directory.
 */
export const AUTO_DATA_ENV: Readonly<Record<string, string>> = {
  STATE_DIRECTORY: "/var/lib/dist/data",
};

/** Comments written at the top of an export, and problems that stop it. */
export class Findings {
  readonly notes: string[] = [];
  readonly problems: TopologyProblem[] = [];

  note(text: string): void {
    if (!this.notes.includes(text)) this.notes.push(text);
  }

  problem(text: string): void {
    if (!this.problems.some((p) => p.text === text)) this.problems.push({ text });
  }
}

/** What the rewriting of addresses needs. */
export interface ExportContext {
  topology: Topology;
  roles: Record<string, RoleInfo>;
  findings: Findings;
  /** The target, for messages: "compose", "systemd", "k8s". */
  target: string;
}

/** The option keys of a role that are ports it listens on (`port`, `workerPort`). */
export function portKeys(role: RoleInfo): string[] {
  return Object.entries(roleSpec(role)).filter(([, def]) => def.type === "port").map(([k]) => k);
}

/** The ports an instance listens on, by option key (none set to 0 are left out). */
export function listeningPorts(
  instance: Instance,
  roles: Record<string, RoleInfo>,
): Map<string, number> {
  const ports = new Map<string, number>();
  for (const key of portKeysOf(roles[instance.role], instance.options)) {
    const port = instance.options[key];
    if (typeof port === "number") ports.set(key, port);
  }
  return ports;
}

/**
 * The port where an instance answers `sys.ping` (its main port), if it
 * speaks dist there: a balancer in `--mode tcp` passes it on to a backend,
 * so it is probed by a TCP connect where a target can, and waited for by
 * nothing that asks `sys.ping`.
 */
export function pingPort(instance: Instance, roles: Record<string, RoleInfo>): number | undefined {
  if (!speaksDist(roles[instance.role], instance.options)) return undefined;
  return listeningPorts(instance, roles).get("port");
}

/** "localhost" and "127.0.0.1" are one host; case does not matter. */
function normHost(host: string): string {
  const h = host.toLowerCase();
  return h === "localhost" ? "127.0.0.1" : h;
}

/** Whether an address's host means the machine it is used on. */
export function isLoopback(host: string): boolean {
  const h = normHost(host);
  return h.startsWith("127.") || h === "::1" || h === "0.0.0.0" || h === "::";
}

/** One listening port of one instance. */
export interface Endpoint {
  instance: Instance;
  /** The option that sets the port: "port", "workerPort". */
  key: string;
}

/**
 * Every instance's listening addresses as the topology configures them
 * ("host:port", the host as others dial it), to what listens there.
 */
export function endpointTable(
  topology: Topology,
  roles: Record<string, RoleInfo>,
): Map<string, Endpoint> {
  const table = new Map<string, Endpoint>();
  for (const instance of topology.instances) {
    for (const [key, port] of listeningPorts(instance, roles)) {
      const host = isLoopback(instance.host) ? "127.0.0.1" : normHost(instance.host);
      table.set(`${host}:${port}`, { instance, key });
    }
  }
  return table;
}

/** The endpoint an address names, if it is one of the topology's. */
export function endpointOf(table: Map<string, Endpoint>, address: string): Endpoint | undefined {
  const { host, port } = parseAddress(address);
  return table.get(`${isLoopback(host) ? "127.0.0.1" : normHost(host)}:${port}`);
}

/** How a target names an endpoint for the instances that dial it. */
export type AddressOf = (endpoint: Endpoint, from: Instance) => string;

/** Whether an option holds addresses another instance may be reached at. */
function isAddressOption(def: OptionDef | undefined): boolean {
  return def?.type === "address" || def?.type === "addresses";
}

/**
 * The options of `instance` whose addresses the target changes, rewritten:
 * every address (a reference by name, a default, or one written out) that
 * is an instance of the topology becomes `addressOf` that instance. An
 * address that is none of the topology's is kept, with a note; one on the
 * loopback is a problem where `loopbackIsOwn` (inside a container it means
 * the container itself).
 *
 * @returns only the options that changed, keyed like `instance.options`
 */
export function rewrittenAddresses(
  instance: Instance,
  context: ExportContext & {
    endpoints: Map<string, Endpoint>;
    addressOf: AddressOf;
    loopbackIsOwn: boolean;
  },
): Options {
  const spec = roleSpec(context.roles[instance.role]);
  const changed: Options = {};
  for (const [key, value] of Object.entries(instance.options)) {
    // `metrics` is where the instance listens, not another instance (metricsListen).
    if (LISTEN_ADDRESSES.includes(key)) continue;
    if (!isAddressOption(spec[key]) || value === undefined) continue;
    const items = Array.isArray(value) ? value.map(String) : [String(value)];
    // A built-in default nobody listens at is left alone: most likely unused (a
    // client's --connect beside --service), and dist up would pass it as it is.
    const byDefault = JSON.stringify(value) === JSON.stringify(spec[key].default);
    const rewritten = items.map((item) => {
      const endpoint = endpointOf(context.endpoints, item);
      if (endpoint !== undefined) return context.addressOf(endpoint, instance);
      if (byDefault) return item;
      const label = `${instance.role}.${toSnake(key)}`;
      if (context.loopbackIsOwn && isLoopback(parseAddress(item).host)) {
        context.findings.problem(
          `${label}: ${instance.name} is given ${item}, which is no instance of ` +
            `${context.topology.file}: in ${context.target} the loopback is the instance's own ` +
            `container, so it would reach nothing; name an instance of the file instead`,
        );
      } else {
        context.findings.note(
          `${instance.name} (${label}) is given ${item}, which is no instance of this export: ` +
            `kept as it is`,
        );
      }
      return item;
    });
    if (rewritten.some((item, i) => item !== items[i])) {
      changed[key] = Array.isArray(value) ? rewritten : rewritten[0];
    }
  }
  return changed;
}

/**
 * Where an instance serves its metrics (`metrics = "HOST:PORT"`, a listen
 * address like its port; hostile47 Q15): in a container it binds every
 * interface (`bind`), on the same port, published where the file's host
 * says as the instance's own ports are. Undefined without `metrics`; a
 * note for port 0 (a free one, published nowhere).
 */
export function metricsListen(
  instance: Instance,
  findings: Findings,
): { host: string; port: number; bind: string } | undefined {
  const value = instance.options.metrics;
  if (typeof value !== "string") return undefined;
  const { host, port } = parseAddress(value);
  if (port === 0) {
    findings.note(
      `${instance.name} serves metrics on port 0 (a free one): nothing publishes it; ` +
        `give metrics a port to scrape it`,
    );
  }
  return { host, port, bind: formatAddress({ host: "0.0.0.0", port }) };
}

/**
 * `--advertise`, for a server that registers a service with binders while
 * listening on every interface: what the others dial it at. Undefined when
 * the role does not register, or the file says where it is advertised.
 */
export function advertised(
  instance: Instance,
  roles: Record<string, RoleInfo>,
  address: string,
): Options {
  const spec = roleSpec(roles[instance.role]);
  const o = instance.options;
  const registers = spec.advertise !== undefined && typeof o.service === "string" &&
    Array.isArray(o.binders) && o.binders.length > 0;
  return registers && o.advertise === undefined ? { advertise: address } : {};
}

/**
 * The command line of an instance, after `dist`: the file and the name,
 * then the flags that override the file.
 */
export function commandOf(
  instance: Instance,
  context: { roles: Record<string, RoleInfo>; name?: string; overrides: Options },
): string[] {
  const spec = roleSpec(context.roles[instance.role]);
  return [
    "--config",
    CONFIG_PATH,
    "--name",
    context.name ?? instance.name,
    ...optionsToArgv(context.overrides, spec),
  ];
}

/** The instances an export runs, in the plan's start order. */
export interface ExportInput {
  context: ExportContext;
  /** The topology's text, written out as `topology.toml` (its secret values taken out). */
  text: string;
  /** The security material the instances are given as the target carries secrets. */
  secrets: ExportSecrets;
  /** The plan's instances (one host's with `--on`), in start order. */
  planned: PlannedInstance[];
  /** `--image`. */
  image: string;
  /** `--on HOST`: only the instances placed there. */
  on?: string;
}

/** A file of an export: its name (relative to `--out`) and text. */
export interface ExportFile {
  path: string;
  text: string;
  /**
   * A secret: written with this mode; in a subfolder of `--out`, a folder
   * only its owner may enter.
   */
  mode?: number;
}

/** A DNS label: what compose and Kubernetes can name a service after. */
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/**
 * Checks that every instance's name can be a host name in the target:
 * compose takes any case, Kubernetes only lowercase, neither dots nor
 * underscores (a name is what the others dial).
 */
export function checkNames(
  instances: Instance[],
  context: { findings: Findings; target: string; lowercase: boolean; maxLength: number },
): void {
  for (const instance of instances) {
    for (const name of new Set([instance.name, instance.group])) {
      const label = context.lowercase ? name : name.toLowerCase();
      if (DNS_LABEL.test(label) && name.length <= context.maxLength) continue;
      context.findings.problem(
        `${instance.role}.name: ${JSON.stringify(name)} cannot name a ${context.target} service: ` +
          `use at most ${context.maxLength} ${
            context.lowercase ? "lowercase " : ""
          }letters, digits and "-", not at either end`,
      );
    }
  }
}

/**
 * Listening on port 0 works under `dist up`, which reads the port from the
 * log; a target that starts instances itself cannot pass it to the others
 * nor probe it.
 */
export function checkFixedPorts(instances: Instance[], context: ExportContext): void {
  for (const instance of instances) {
    for (const key of portKeysOf(context.roles[instance.role], instance.options)) {
      if (instance.options[key] !== 0) continue;
      context.findings.problem(
        `${instance.role}.${toSnake(key)}: ${instance.name} listens on port 0: ` +
          `${context.target} cannot tell the others (or a health check) the port it picks; ` +
          `give it a port`,
      );
    }
  }
}
