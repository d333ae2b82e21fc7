/**
 * `dist export k8s`: Kubernetes objects in one multi-document YAML file.
 * - a ConfigMap `dist-topology` holds the topology file, mounted at
 *   /etc/dist in every pod, which runs `dist --config
 *   /etc/dist/topology.toml --name NAME` plus the flags Kubernetes changes
 *   (`--host 0.0.0.0`, the others' addresses as Service DNS names);
 * - an entry with replicas is a StatefulSet whose pods are named as the
 *   file names them (`ordinals.start: 1`: server-1, server-2, …), each
 *   reached through a headless Service as `server-2.server`; every
 *   replica listens on the entry's port (each pod has an address of its
 *   own, so the ports the file counts up on one host are not needed);
 * - a single instance is a Deployment (a binder a StatefulSet) with a
 *   Service of its name; an instance the file does not restart
 *   (`restart = "no"`, a client's batch) is a Job;
 * - readiness and liveness probes ask the instance for `sys.ping`; an init
 *   container waits until what `dist up` would wait for answers it;
 * - resource requests are the memory measured for an idle instance (the pod
 *   template is k8s_pod.ts);
 * - security material (secrets.ts) is a Secret per workload, `NAME-secrets`,
 *   mounted at /run/secrets/dist (files readable by the pod's group only),
 *   and given by path: `--token-file`, `--tls-cert`…; the ConfigMap's
 *   topology has its secret values taken out.
 */
import type { IConfigMap } from "kubernetes-models/v1/ConfigMap";
import type { ISecret } from "kubernetes-models/v1/Secret";
import type { IService } from "kubernetes-models/v1/Service";
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IStatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import type { IJob } from "kubernetes-models/batch/v1/Job";
import { formatAddress, type Instance, roleSpec, toKebab, type Topology } from "../config/mod.ts";
import type { PlannedInstance } from "../launch/mod.ts";
import {
  advertised,
  checkFixedPorts,
  checkNames,
  commandOf,
  CONFIG_DIR,
  CONFIG_FILE,
  type Endpoint,
  endpointTable,
  type ExportFile,
  type ExportInput,
  isLoopback,
  listeningPorts,
  metricsListen,
  rewrittenAddresses,
} from "./model.ts";
import { header, readyLineNote } from "./notes.ts";
import {
  IMAGE_USER,
  NAME_VARIABLE,
  podTemplate,
  SECRETS_DIR,
  TOPOLOGY_CONFIGMAP,
} from "./k8s_pod.ts";
import { commentBlock, yamlDocument, yamlText } from "./yaml.ts";

/** The file's name in `--out`. */
export const K8S_FILE = "dist.yaml";

/** How an instance runs: its own workload, or a pod of its entry's StatefulSet. */
type Placement = "set" | "single" | "job";

/** Whether the file asks that `instance` not be restarted once it ends well. */
function placementOf(instance: Instance, members: number): Placement {
  if (instance.restart === "no") return "job";
  if (instance.restart === "on-failure" && instance.role === "client") return "job";
  return members > 1 ? "set" : "single";
}

/**
 * The names the others dial each instance at: its Service, or its pod's
 * name under its StatefulSet's headless Service (`server-2.server`).
 */
export function k8sDialNames(topology: Topology): (instance: Instance) => string[] {
  const members = new Map<string, number>();
  for (const i of topology.instances) members.set(i.group, (members.get(i.group) ?? 0) + 1);
  return (i) => [
    placementOf(i, members.get(i.group)!) === "set" ? `${i.name}.${i.group}` : i.name,
  ];
}

/** Labels of an instance's pods; `instance` only where one workload runs one instance. */
function labelsOf(instance: Instance, single: boolean): Record<string, string> {
  return {
    "app.kubernetes.io/part-of": "dist",
    "app.kubernetes.io/component": instance.role,
    "app.kubernetes.io/name": instance.group,
    ...(single ? { "app.kubernetes.io/instance": instance.name } : {}),
  };
}

/**
 * The export's file.
 *
 * @returns the file, or nothing when `input.context.findings` has problems
 */
export function exportK8s(input: ExportInput): ExportFile[] {
  const { context, planned } = input;
  const { findings, roles, topology } = context;
  const instances = planned.map((p) => p.instance);
  // A StatefulSet's pods carry a 10-character revision hash label after their name.
  checkNames(instances, { findings, target: "Kubernetes", lowercase: true, maxLength: 52 });
  checkFixedPorts(instances, context);
  if (findings.problems.length > 0) return [];

  const groups = new Map<string, PlannedInstance[]>();
  for (const p of planned) groups.set(p.instance.group, [...groups.get(p.instance.group) ?? [], p]);
  const placement = new Map(
    instances.map((i) => [i.name, placementOf(i, groups.get(i.group)!.length)]),
  );
  const endpoints = endpointTable(topology, roles);
  const addressOf = (endpoint: Endpoint) => {
    const { instance, key } = endpoint;
    if (placement.get(instance.name) !== "set") {
      return `${instance.name}:${instance.options[key]}`;
    }
    return `${instance.name}.${instance.group}:${basePort(instance, key)}`;
  };
  const docs = [yamlDocument(configMap(input.text))];
  const onFailure: string[] = [];
  for (const [group, members] of groups) {
    const first = members[0].instance;
    const kind = placement.get(first.name)!;
    const units = kind === "job" ? members.map((m) => [m]) : [members];
    for (const unit of units) {
      for (
        const object of workload(unit, { input, kind, addressOf, endpoints, group, onFailure })
      ) {
        docs.push(yamlDocument(object));
      }
    }
  }
  if ([...placement.values()].includes("set")) {
    findings.note(
      `StatefulSets name their pods from 1, as the file names replicas (ordinals.start: ` +
        `Kubernetes 1.27 or later, where it is on by default)`,
    );
  }
  if (onFailure.length > 0) {
    findings.note(
      `restart = "on-failure" (${onFailure.join(", ")}): Kubernetes restarts these pods ` +
        `whatever their exit code; dist ends with 0 only when it is told to stop`,
    );
  }
  noteDifferences(input);
  if (findings.problems.length > 0) return [];
  docs[0].commentBefore = commentBlock(header(input, "k8s", [
    `Apply with: kubectl apply -f ${K8S_FILE} (in the namespace of your choice). Each pod`,
    `runs \`dist --config ${CONFIG_DIR}/${CONFIG_FILE} --name NAME\` with the ConfigMap`,
    `${TOPOLOGY_CONFIGMAP} mounted; the flags after it are what Kubernetes changes.`,
    ...(input.secrets.empty ? [] : [
      `Its Secrets (NAME-secrets, mounted at ${SECRETS_DIR}) hold keys, tokens or`,
      `certificates: keep this file out of version control, or make them yourself.`,
    ]),
  ]));
  // Its Secrets hold keys and tokens: readable by its owner only (hostile47 Q17).
  const mode = input.secrets.empty ? undefined : 0o600;
  return [{ path: K8S_FILE, text: yamlText(docs), ...(mode === undefined ? {} : { mode }) }];
}

/** The port of an entry's first replica: every pod of a StatefulSet listens on it. */
function basePort(instance: Instance, key: string): number {
  return (instance.options[key] as number) - ((instance.replica ?? 1) - 1);
}

function configMap(text: string): IConfigMap {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: TOPOLOGY_CONFIGMAP, labels: { "app.kubernetes.io/part-of": "dist" } },
    data: { [CONFIG_FILE]: text },
  };
}

/** The notes every k8s export may need, whatever its workloads. */
function noteDifferences(input: ExportInput): void {
  const { findings, topology } = input.context;
  const placed = [...new Set(topology.instances.map((i) => i.host))].filter((h) => !isLoopback(h));
  if (placed.length > 0) {
    findings.note(
      `The file places instances on ${placed.join(", ")}; Kubernetes schedules pods on its ` +
        `nodes itself (add a nodeSelector to a pod template to pin one)`,
    );
  }
  const readyNote = readyLineNote(
    input.planned,
    "an init container here waits only for what answers sys.ping",
  );
  if (readyNote !== undefined) findings.note(readyNote);
}

interface WorkloadContext {
  input: ExportInput;
  kind: Placement;
  group: string;
  endpoints: Map<string, Endpoint>;
  addressOf: (endpoint: Endpoint) => string;
  /** Workloads the file restarts only on failure (Kubernetes restarts them always). */
  onFailure: string[];
}

/** The objects of one workload (a StatefulSet of an entry, or one instance's) and its Service. */
function workload(
  members: PlannedInstance[],
  context: WorkloadContext,
): object[] {
  const { input, kind, group } = context;
  const { roles, findings } = input.context;
  const first = members[0].instance;
  const single = kind !== "set";
  const name = single ? first.name : group;
  const labels = labelsOf(first, single);
  const ports = listeningPorts(first, roles);
  if (!single) { for (const key of ports.keys()) ports.set(key, basePort(first, key)); }
  const overrides = {
    ...(roleSpec(roles[first.role]).host !== undefined ? { host: "0.0.0.0" } : {}),
    // A StatefulSet's pods share one command line: the entry's ports for all.
    ...(single ? {} : Object.fromEntries(ports)),
    ...rewrittenAddresses(first, {
      ...input.context,
      endpoints: context.endpoints,
      addressOf: context.addressOf,
      loopbackIsOwn: true,
    }),
    ...(ports.has("port")
      ? advertised(
        first,
        roles,
        single
          ? `${first.name}:${ports.get("port")}`
          : `$(${NAME_VARIABLE}).${group}:${ports.get("port")}`,
      )
      : {}),
  };
  // metrics: bound in the pod on the entry's port, a containerPort and Service port "metrics".
  const metrics = metricsListen(first, findings);
  if (metrics !== undefined) {
    const port = single || metrics.port === 0
      ? metrics.port
      : metrics.port - ((first.replica ?? 1) - 1);
    Object.assign(overrides, { metrics: formatAddress({ host: "0.0.0.0", port }) });
    if (port !== 0) ports.set("metrics", port);
  }
  const self = single ? undefined : `$(${NAME_VARIABLE})`;
  Object.assign(overrides, input.secrets.options(first.name, SECRETS_DIR, self));
  const args = commandOf(first, {
    roles,
    overrides,
    ...(self === undefined ? {} : { name: self }),
  });
  const secretIds = input.secrets.ids(members.map((m) => m.instance.name));
  const template = podTemplate(members, {
    ...context,
    labels,
    args,
    ports,
    single,
    secret: secretIds.length === 0 ? undefined : `${name}-secrets`,
    dial: input.secrets.dialFlags(first, SECRETS_DIR, self, "dependency"),
    ping: input.secrets.dialFlags(first, SECRETS_DIR, self),
  });
  if (first.restart === "on-failure" && kind !== "job") context.onFailure.push(name);
  if ([...ports.values()].some((p) => p < 1024)) {
    findings.note(
      `${name} listens on a port below 1024: the image runs as user ${IMAGE_USER}, so the ` +
        `runtime must allow unprivileged ports (net.ipv4.ip_unprivileged_port_start)`,
    );
  }
  const objects: object[] = [];
  if (secretIds.length > 0) {
    const secret: ISecret = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: `${name}-secrets`, labels },
      type: "Opaque",
      data: Object.fromEntries(secretIds.map((id) => [id, base64(input.secrets.text(id))])),
    };
    objects.push(secret);
  }
  const servicePorts = [...ports].map(([key, port]) => ({
    name: toKebab(key),
    port,
    targetPort: port,
  }));
  if (!single || servicePorts.length > 0) {
    const service: IService = {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name, labels },
      spec: {
        selector: labels,
        ...(single ? {} : {
          // Headless: each pod is reached by name (server-2.server), from its start,
          // as dist's dialers redial until it answers.
          clusterIP: "None",
          publishNotReadyAddresses: true,
        }),
        ...(servicePorts.length > 0 ? { ports: servicePorts } : {}),
      },
    };
    objects.push(service);
  }
  const metadata = { name, labels };
  if (kind === "job") {
    const job: IJob = {
      apiVersion: "batch/v1",
      kind: "Job",
      metadata,
      spec: {
        backoffLimit: first.restart === "no" ? 0 : 6,
        template: {
          ...template,
          spec: {
            ...template.spec!,
            restartPolicy: first.restart === "no" ? "Never" : "OnFailure",
          },
        },
      },
    };
    objects.push(job);
  } else if (!single || first.role === "binder") {
    const set: IStatefulSet = {
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata,
      spec: {
        serviceName: name,
        replicas: members.length,
        // Pods named as the file names the instances: group-1..group-N.
        ...(single ? {} : { ordinals: { start: 1 } }),
        podManagementPolicy: "Parallel",
        selector: { matchLabels: labels },
        template,
      },
    };
    objects.push(set);
  } else {
    const deployment: IDeployment = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata,
      spec: {
        replicas: 1,
        // One process per instance, as in the file: the old pod goes before the new one comes.
        strategy: { type: "Recreate" },
        selector: { matchLabels: labels },
        template,
      },
    };
    objects.push(deployment);
  }
  return objects;
}

function base64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}
