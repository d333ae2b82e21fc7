/**
 * `dist export compose`: a Compose file with one service per instance
 * (replicas expanded: each has its own name and port, which the others
 * dial), `topology.toml` mounted into each, and:
 * - `command`: `--config /etc/dist/topology.toml --name NAME`, then
 *   `--host 0.0.0.0` (the container's interfaces) and the addresses of the
 *   others rewritten to their service names (`server-1:5557`);
 * - `ports`: published on the file's host as the file says (`127.0.0.1:5557:5557`),
 *   and `metrics` (bound to 0.0.0.0 inside) on the host its address says;
 * - `healthcheck`: `dist client --connect 127.0.0.1:PORT sys.ping` inside it;
 * - `depends_on`: what `dist up` waits for, `service_healthy` where the
 *   dependency listens, `service_started` where it does not;
 * - `restart`: the file's policy (`always`, `on-failure`, `no`);
 * - `secrets`: the security material (secrets.ts), each a file of
 *   `secrets/` (a folder only its owner may enter; Compose mounts each at
 *   /run/secrets/ID in the services that list it), given by path
 *   (`--token-file`, `--tls-cert`…); `topology.toml` has its secret values
 *   taken out.
 *
 * Compose runs on one Docker host: a file placing instances on several
 * hosts is exported one host at a time (`--on HOST`), and an address on
 * another host is kept as the file gives it (its port is published there).
 */
import { dialHost, formatAddress, type Instance, roleSpec } from "../config/mod.ts";
import { type PlannedInstance, sameHost } from "../launch/mod.ts";
import {
  advertised,
  AUTO_DATA_ENV,
  checkFixedPorts,
  checkNames,
  commandOf,
  CONFIG_FILE,
  CONFIG_PATH,
  type Endpoint,
  endpointTable,
  type ExportFile,
  type ExportInput,
  listeningPorts,
  metricsListen,
  pingPort,
  rewrittenAddresses,
} from "./model.ts";
import { yamlDocument, yamlText } from "./yaml.ts";
import { header, readyLineNote } from "./notes.ts";

/** The Compose file's name in `--out`. */
export const COMPOSE_FILE = "compose.yaml";

/** Where Compose mounts a service's secrets. */
const SECRETS_DIR = "/run/secrets";
/** Its files are taken whatever their owner and mode (config/owner.ts). */
const SECRETS_ENV = { DIST_SECRETS_DIR: SECRETS_DIR };

/** How often compose asks each instance for `sys.ping`, and how long it waits at start. */
const HEALTH = { interval: "5s", timeout: "5s", retries: 3, start_period: "15s" };

/** Compose interpolates `$`: a literal one is written `$$`. */
function escape(word: string): string {
  return word.replaceAll("$", "$$$$");
}

/** The host part of a published port: the file's host, or every interface for a wildcard. */
function publishHost(instance: Instance, at = instance.host): string {
  const host = at.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  if (["0.0.0.0", "::", "[::]", ""].includes(host)) return "";
  if (host === "localhost") return "127.0.0.1:";
  return host.includes(":") ? `[${host}]:` : `${host}:`;
}

/**
 * The export's files: `compose.yaml` and `topology.toml`.
 *
 * @returns the files, or nothing when `input.context.findings` has problems
 */
export function exportCompose(input: ExportInput): ExportFile[] {
  const { context, planned } = input;
  const { findings, roles } = context;
  const instances = planned.map((p) => p.instance);
  const hosts: string[] = [];
  for (const i of context.topology.instances) {
    if (!hosts.some((h) => sameHost(h, i.host))) hosts.push(i.host);
  }
  if (hosts.length > 1 && input.on === undefined) {
    findings.problem(
      `compose runs every service on one Docker host, and ${context.topology.file} places ` +
        `instances on ${hosts.length} (${hosts.join(", ")}): export one host at a time ` +
        `with --on HOST, or use dist export k8s or systemd`,
    );
  }
  checkNames(instances, { findings, target: "compose", lowercase: false, maxLength: 63 });
  checkFixedPorts(instances, context);
  if (findings.problems.length > 0) return [];

  const local = new Set(instances.map((i) => i.name));
  const endpoints = endpointTable(context.topology, roles);
  // An instance of this export is dialed by its service name; one on another
  // host where the file says, through the port published there.
  const addressOf = (endpoint: Endpoint) => {
    const port = endpoint.instance.options[endpoint.key] as number;
    return local.has(endpoint.instance.name)
      ? `${endpoint.instance.name}:${port}`
      : formatAddress({ host: dialHost(endpoint.instance.host), port });
  };
  const services: Record<string, unknown> = {};
  const comments = new Map<string, string[]>();
  for (const p of planned) {
    const metrics = metricsListen(p.instance, findings);
    const { service, comment } = composeService(p, {
      input,
      overrides: {
        ...(roleSpec(roles[p.instance.role]).host !== undefined ? { host: "0.0.0.0" } : {}),
        ...(metrics === undefined ? {} : { metrics: metrics.bind }),
        ...rewrittenAddresses(p.instance, {
          ...context,
          endpoints,
          addressOf,
          loopbackIsOwn: true,
        }),
        ...(listeningPorts(p.instance, roles).has("port")
          ? advertised(p.instance, roles, addressOf({ instance: p.instance, key: "port" }))
          : {}),
        ...input.secrets.options(p.instance.name, SECRETS_DIR),
      },
      byName: new Map(instances.map((i) => [i.name, i])),
    });
    services[p.instance.name] = service;
    comments.set(p.instance.name, comment);
  }
  if (findings.problems.length > 0) return [];
  const loopback = instances.filter((i) =>
    publishHost(i) === "127.0.0.1:" && listeningPorts(i, roles).size > 0
  );
  if (loopback.length > 0) {
    findings.note(
      `Ports are published on this machine's loopback (127.0.0.1), as the file's host says; ` +
        `host = "0.0.0.0" in the file publishes them on every interface`,
    );
  }
  const readyNote = readyLineNote(planned, "compose waits only until such an instance has started");
  if (readyNote !== undefined) findings.note(readyNote);
  const secretIds = input.secrets.ids(instances.map((i) => i.name));
  const secrets = Object.fromEntries(secretIds.map((id) => [id, { file: `./secrets/${id}` }]));
  const doc = yamlDocument({ services, ...(secretIds.length > 0 ? { secrets } : {}) }, {
    header: header(input, "compose", [
      `Each instance is a service running \`dist --config ${CONFIG_PATH} --name NAME\`, with`,
      `${CONFIG_FILE} (a copy of the file) mounted; the flags after it are what compose`,
      `changes: each listens on every interface of its container and dials the others by`,
      `service name. Start it with: docker compose up (or docker-compose up)`,
      ...(secretIds.length > 0
        ? [
          `secrets/ holds keys, tokens or certificates (the folder is its owner's only;`,
          `each file is mounted at ${SECRETS_DIR}/ in the services that list it).`,
        ]
        : []),
    ]),
    keyComments: { path: ["services"], comments },
  });
  return [
    { path: COMPOSE_FILE, text: yamlText([doc]) },
    { path: CONFIG_FILE, text: input.text },
    // Readable inside the containers (user 65532); the folder keeps other users out.
    ...secretIds.map((id) => ({
      path: `secrets/${id}`,
      text: input.secrets.text(id),
      mode: 0o644,
    })),
  ];
}

function composeService(
  p: PlannedInstance,
  context: {
    input: ExportInput;
    overrides: Record<string, unknown>;
    byName: Map<string, Instance>;
  },
): { service: Record<string, unknown>; comment: string[] } {
  const { instance } = p;
  const { roles } = context.input.context;
  const ports = listeningPorts(instance, roles);
  const comment = [`${instance.role} ${instance.name}`];
  const secrets = context.input.secrets;
  const service: Record<string, unknown> = {
    image: context.input.image,
    command: commandOf(instance, { roles, overrides: context.overrides }).map(escape),
    volumes: [`./${CONFIG_FILE}:${CONFIG_PATH}:ro`],
  };
  // Its topology.toml and secrets are mounted as the host's files, whose owner and mode compose
  // cannot change (README, Security): the topology's owner is checked too (review h48b V4).
  service.environment = {
    ...(instance.options.dataDir === "auto" ? AUTO_DATA_ENV : {}),
    ...SECRETS_ENV,
  };
  const ids = secrets.ids([instance.name]);
  if (ids.length > 0) service.secrets = ids;
  const published = [...ports.values()].map((port) => `${publishHost(instance)}${port}:${port}`);
  const metrics = metricsListen(instance, context.input.context.findings);
  if (metrics !== undefined && metrics.port !== 0) {
    published.push(`${publishHost(instance, metrics.host)}${metrics.port}:${metrics.port}`);
  }
  if (published.length > 0) service.ports = published;
  service.restart = instance.restart;
  const main = pingPort(instance, roles);
  if (main !== undefined) {
    service.healthcheck = {
      test: ["CMD", "dist", "client", "--connect", `127.0.0.1:${main}`, "--timeout", "2s"]
        .concat(secrets.dialFlags(instance, SECRETS_DIR).map(escape), "sys.ping"),
      ...HEALTH,
    };
  }
  if (p.after.length > 0) {
    service.depends_on = Object.fromEntries(p.after.map((name) => {
      const dep = context.byName.get(name)!;
      const healthy = pingPort(dep, roles) !== undefined;
      return [name, { condition: healthy ? "service_healthy" : "service_started" }];
    }));
  }
  for (const name of p.remote) {
    const dep = context.input.context.topology.instances.find((i) => i.name === name)!;
    comment.push(
      `waits for ${name} on ${dep.host}, which compose cannot wait for: start that host first` +
        (instance.restart === "no" ? ` (a client that finds nothing there ends)` : ""),
    );
  }
  return { service, comment };
}
