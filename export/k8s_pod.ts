/**
 * `dist export k8s`'s pod template (k8s.ts makes the workloads around it):
 * the container and its probes, the init container that waits for what the
 * instance depends on, the pod's security context and volumes.
 */
import type { IContainer } from "kubernetes-models/v1/Container";
import type { IPodTemplateSpec } from "kubernetes-models/v1/PodTemplateSpec";
import type { IProbe } from "kubernetes-models/v1/Probe";
import { toKebab } from "../config/mod.ts";
import type { PlannedInstance } from "../launch/mod.ts";
import { AUTO_DATA_ENV, CONFIG_DIR, type Endpoint, type ExportInput, pingPort } from "./model.ts";

/** The ConfigMap holding the topology. */
export const TOPOLOGY_CONFIGMAP = "dist-topology";

/** Where a pod's Secret is mounted. */
export const SECRETS_DIR = "/run/secrets/dist";

/** The variable a StatefulSet's pod finds its own name in (its instance's). */
export const NAME_VARIABLE = "DIST_NAME";

/**
 * Memory requested per instance: an idle instance of any role measured 60
 * to 64 MiB of RSS (`dist up` of the default topology, then `dist status`,
 * deno 2.9.6 from source, 2026-12-04).
 */
const REQUESTS = { cpu: "50m", memory: "64Mi" };

/** The user the Containerfile's image runs as. */
export const IMAGE_USER = 65532;

/**
 * `dist client --connect ADDRESS sys.ping`: exit 0 once it answers, dialing
 * with `dial` (the instance's own trust and credentials).
 */
export function ping(address: string, dial: string[]): string[] {
  return ["dist", "client", "--connect", address, "--timeout", "2s", ...dial, "sys.ping"];
}

/** What a workload's pod template is made from. */
export interface PodContext {
  input: ExportInput;
  /** The address other pods dial an endpoint at (a Service DNS name). */
  addressOf: (endpoint: Endpoint) => string;
  labels: Record<string, string>;
  args: string[];
  ports: Map<string, number>;
  single: boolean;
  /** The workload's Secret, when it has one. */
  secret: string | undefined;
  /** `dist client` flags to dial what the instance waits for, as the instance does. */
  dial: string[];
  /** `dist client` flags to dial the instance itself (its probes): see ExportSecrets.dialFlags. */
  ping: string[];
}

/**
 * The pod of a workload's members: the dist container (probes asking
 * `sys.ping`, the idle memory requested, no privileges, a read-only root),
 * an init container waiting for what `dist up` would wait for, and the
 * topology, work and Secret volumes.
 */
export function podTemplate(members: PlannedInstance[], context: PodContext): IPodTemplateSpec {
  const { input } = context;
  const byName = new Map(input.context.topology.instances.map((i) => [i.name, i]));
  const main = context.ports.get("port");
  const secretMount = context.secret === undefined
    ? []
    : [{ name: "secrets", mountPath: SECRETS_DIR, readOnly: true }];
  // A balancer in --mode tcp would pass sys.ping on to a backend: a TCP connect says it listens.
  const pings = pingPort(members[0].instance, input.context.roles) !== undefined;
  const probe = (period: number, failures: number): IProbe | undefined =>
    main === undefined ? undefined : {
      ...(pings
        ? { exec: { command: ping(`127.0.0.1:${main}`, context.ping) } }
        : { tcpSocket: { port: main } }),
      periodSeconds: period,
      timeoutSeconds: 5,
      failureThreshold: failures,
    };
  const env = [
    ...(context.single
      ? []
      : [{ name: NAME_VARIABLE, valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }]),
    ...Object.entries(members[0].instance.options.dataDir === "auto" ? AUTO_DATA_ENV : {})
      .map(([name, value]) => ({ name, value })),
  ];
  const container: IContainer = {
    name: "dist",
    image: input.image,
    args: context.args,
    ...(env.length === 0 ? {} : { env }),
    ...(context.ports.size > 0
      ? {
        ports: [...context.ports].map(([key, port]) => ({
          name: toKebab(key),
          containerPort: port,
        })),
      }
      : {}),
    ...(main === undefined ? {} : {
      readinessProbe: probe(5, 3),
      livenessProbe: { ...probe(10, 6)!, initialDelaySeconds: 15 },
    }),
    resources: { requests: REQUESTS },
    securityContext: {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    },
    volumeMounts: [
      { name: "topology", mountPath: CONFIG_DIR, readOnly: true },
      // The image's working directory: a relative --log-file lands here.
      { name: "work", mountPath: "/var/lib/dist" },
      ...secretMount,
    ],
  };
  // What dist up waits for, where it answers sys.ping.
  const after = new Set(members.flatMap((m) => m.after));
  const waits = [...after].map((name) => byName.get(name)!).filter((dep) =>
    pingPort(dep, input.context.roles) !== undefined
  ).map((dep) => context.addressOf({ instance: dep, key: "port" }));
  const initContainers: IContainer[] = waits.length === 0 ? [] : [{
    name: "wait",
    image: input.image,
    command: [
      "sh",
      "-c",
      `for a in ${waits.join(" ")}; do until ${ping("$a", context.dial).join(" ")} ` +
      `>/dev/null 2>&1; do sleep 1; done; done`,
    ],
    securityContext: container.securityContext,
    // The dialing flags may name the pod's own files ($(DIST_NAME).crt).
    ...(container.env === undefined ? {} : { env: container.env }),
    ...(secretMount.length > 0 ? { volumeMounts: secretMount } : {}),
  }];
  return {
    metadata: { labels: context.labels },
    spec: {
      securityContext: {
        runAsNonRoot: true,
        runAsUser: IMAGE_USER,
        runAsGroup: IMAGE_USER,
        // The Secret's files (readable by it only: defaultMode), and a volume mounted for a
        // data_dir (review r47 R5), belong to this group.
        ...(context.secret === undefined &&
            typeof members[0].instance.options.dataDir !== "string"
          ? {}
          : { fsGroup: IMAGE_USER }),
        seccompProfile: { type: "RuntimeDefault" },
      },
      ...(initContainers.length > 0 ? { initContainers } : {}),
      containers: [container],
      volumes: [
        { name: "topology", configMap: { name: TOPOLOGY_CONFIGMAP } },
        { name: "work", emptyDir: {} },
        ...(context.secret === undefined
          ? []
          : [{ name: "secrets", secret: { secretName: context.secret, defaultMode: 0o440 } }]),
      ],
    },
  };
}
