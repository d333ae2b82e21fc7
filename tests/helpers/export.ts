/**
 * Helpers for the tests of `dist export`: the topologies every export is
 * checked on, and the round trip: each instance's command line, read back
 * by dist's own parser against the exported topology file, gives addresses
 * that name what the same export defines, listening on that port, and the
 * instance the topology meant.
 */
import assert from "node:assert/strict";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { join } from "node:path";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import {
  DEFAULT_TOPOLOGY,
  DEFAULT_TOPOLOGY_FILE,
  type Instance,
  type Options,
  parseAddress,
  parseCommand,
  parseTopology,
  roleSpec,
  type Topology,
} from "../../config/mod.ts";
import { ROLES } from "../../roles/mod.ts";
import { buildExport, type ExportFile } from "../../export/mod.ts";

const EXAMPLES = new URL("../../examples/", import.meta.url);

/** Every example topology and the default one: file name and text. */
export async function topologies(): Promise<{ file: string; text: string }[]> {
  const list = [{ file: DEFAULT_TOPOLOGY_FILE, text: DEFAULT_TOPOLOGY }];
  for await (const entry of Deno.readDir(EXAMPLES)) {
    if (!entry.name.endsWith(".toml")) continue;
    list.push({
      file: `examples/${entry.name}`,
      text: await Deno.readTextFile(new URL(entry.name, EXAMPLES)),
    });
  }
  return list.sort((a, b) => a.file.localeCompare(b.file));
}

/** The hosts a topology places instances on (as written, first seen first). */
export function hostsOf(topology: Topology): string[] {
  return [...new Set(topology.instances.map((i) => i.host))];
}

export function load(file: string, text: string): Topology {
  return parseTopology(text, { file, roles: ROLES });
}

/**
 * The exports of one topology for one target: one per host where the
 * target takes one host at a time (compose with several hosts), else one.
 */
export async function exportsOf(
  target: string,
  source: { file: string; text: string },
  options: { bin?: string } = {},
): Promise<{ on?: string; files: ExportFile[] }[]> {
  const topology = load(source.file, source.text);
  const hosts = hostsOf(topology);
  const ons = target === "compose" && hosts.length > 1 ? hosts : [undefined];
  const out = [];
  for (const on of ons) {
    out.push({
      ...(on === undefined ? {} : { on }),
      files: await buildExport(target, {
        topology,
        text: source.text,
        roles: ROLES,
        ...(on === undefined ? {} : { on }),
        ...options,
      }),
    });
  }
  return out;
}

/** Writes files into `dir`. */
export async function writeAll(dir: string, files: ExportFile[]): Promise<void> {
  for (const file of files) {
    const path = join(dir, file.path);
    await Deno.mkdir(join(path, ".."), { recursive: true });
    await Deno.writeTextFile(path, file.text);
  }
}

/** One process an export runs: its name there and its command line after `dist`. */
export interface Launched {
  /** How the others reach its host: a service name, a pod's DNS name, an IP. */
  hosts: string[];
  argv: string[];
  /** What the export says it listens on, when it says (containerPort, healthcheck). */
  ports: number[];
  /** The secrets it is given, by the path it reads them at. */
  files: Map<string, string>;
}

/** A command line read back: the instance and its options as dist would run them. */
export interface ReadBack {
  launched: Launched;
  instance: Instance;
  options: Options;
}

/**
 * Parses each command line with dist's own parser, the exported topology
 * file standing for `/etc/dist/topology.toml`.
 */
export async function readBack(launched: Launched[], topologyText: string): Promise<ReadBack[]> {
  const out: ReadBack[] = [];
  for (const l of launched) {
    const parsed = await parseCommand(l.argv, ROLES, {
      load: () => Promise.resolve(parseTopology(topologyText, { file: "exported", roles: ROLES })),
    });
    assert.ok(parsed.instance, `${l.argv.join(" ")}: no instance`);
    out.push({ launched: l, instance: parsed.instance, options: parsed.resolved });
  }
  return out;
}

/**
 * The round trip: every address an instance is given names a process of
 * the same export (or, with `others`, an instance placed on another host
 * at its address), which listens on that port, and is the instance the
 * topology meant.
 */
export function checkRoundTrip(
  processes: ReadBack[],
  context: { topology: Topology; others?: Map<string, Instance>; what: string },
): number {
  const listensOn = (p: ReadBack, port: number) =>
    Object.entries(roleSpec(ROLES[p.instance.role])).some(([k, d]) =>
      d.type === "port" && p.options[k] === port
    );
  // What the export runs at a host: all of it where every process is on one host (systemd).
  const at = (host: string, port: number) => {
    const there = processes.filter((p) => p.launched.hosts.some((h) => normal(h) === normal(host)));
    return there.length > 1 ? there.find((p) => listensOn(p, port)) : there[0];
  };
  const original = new Map(context.topology.instances.map((i) => [i.name, i]));
  let checked = 0;
  for (const p of processes) {
    const name = p.options.name as string;
    const where = `${context.what}: ${name}`;
    assert.equal(p.instance.name, name, `${where}: --name picks its own instance`);
    const spec = roleSpec(ROLES[p.instance.role]);
    const listening = Object.entries(spec).filter(([, d]) => d.type === "port").map(([k]) =>
      p.options[k]
    );
    for (const port of p.launched.ports) {
      assert.ok(
        listening.includes(port),
        `${where}: the export's port ${port} is one it listens on`,
      );
    }
    const meant = original.get(name)!;
    for (const [key, def] of Object.entries(spec)) {
      if (def.type !== "address" && def.type !== "addresses") continue;
      const value = p.options[key];
      if (value === undefined) continue;
      const items = (Array.isArray(value) ? value : [value]).map(String);
      const targets = meant.refs[key];
      items.forEach((item, i) => {
        const { host, port } = parseAddress(item);
        const found = at(host, port);
        const label = `${where} --${key} ${item}`;
        if (found === undefined) {
          // An instance on another host, kept at the file's address; or a default nobody uses.
          const other = [...(context.others?.values() ?? [])].find((o) =>
            o.host === host && Object.values(o.options).includes(port)
          );
          if (targets === undefined && JSON.stringify(value) === JSON.stringify(def.default)) {
            return;
          }
          assert.ok(other, `${label}: names nothing this export defines`);
          if (targets) assert.equal(other.name, targets[i], `${label}: the instance meant`);
          checked++;
          return;
        }
        assert.ok(
          listensOn(found, port),
          `${label}: ${found.instance.name} does not listen on ${port}`,
        );
        if (!["0.0.0.0", "::"].includes(String(found.options.host))) {
          // Outside containers an instance listens where the file says.
          assert.equal(
            normal(String(found.options.host)),
            normal(host),
            `${label}: ${found.instance.name} listens on ${found.options.host}`,
          );
        }
        const expected = key === "advertise" ? name : targets?.[i];
        if (expected !== undefined) {
          assert.equal(found.instance.name, expected, `${label}: the instance meant`);
        }
        checked++;
      });
    }
  }
  return checked;
}

/** The secret values a topology writes (tokens, passwords). */
export function secretValues(topology: Topology): string[] {
  const values = topology.instances.flatMap((i) =>
    [i.options.token, i.options.password].filter((v) => typeof v === "string")
  ) as string[];
  return [...new Set(values)];
}

/**
 * What an export writes outside its secrets has no secret value in it, nor
 * any private key; the exported topology is the file with only its
 * `token =`/`password =` lines taken out.
 */
export function checkNoSecrets(
  exported: { topology: string; open: string[] },
  context: { source: string; topology: Topology; what: string },
): void {
  const values = secretValues(context.topology);
  if (values.length === 0) {
    assert.equal(exported.topology, context.source, `${context.what}: the topology as it is`);
  }
  const kept = context.source.split("\n").filter((l) => !/^\s*(token|password)\s*=/.test(l));
  assert.deepEqual(
    exported.topology.split("\n").filter((l) => !l.includes("taken out by dist export")),
    kept,
    `${context.what}: the topology less its secret lines`,
  );
  for (const text of [exported.topology, ...exported.open]) {
    for (const value of values) {
      assert.equal(text.includes(value), false, `${context.what}: a secret value in the open`);
    }
    assert.doesNotMatch(text, /PRIVATE KEY/, `${context.what}: a private key in the open`);
  }
}

/**
 * Each instance is given, at the paths its flags name, the secrets the file
 * gives it (its token, its password), and with [security] tls its CA, and
 * where it listens its certificate and key: signed by that CA, a pair, and
 * valid for every name the export's others dial it at and 127.0.0.1.
 */
export function checkSecretsCarried(
  processes: ReadBack[],
  context: { topology: Topology; what: string },
): number {
  const original = new Map(context.topology.instances.map((i) => [i.name, i]));
  let checked = 0;
  for (const p of processes) {
    const meant = original.get(p.instance.name)!;
    const where = `${context.what}: ${meant.name}`;
    const read = (key: string) => {
      const path = p.options[key];
      assert.equal(typeof path, "string", `${where}: --${key}`);
      const text = p.launched.files.get(path as string);
      assert.ok(text !== undefined, `${where}: --${key} ${path} is given to it`);
      return text;
    };
    for (const key of ["token", "password"]) {
      if (typeof meant.options[key] !== "string") continue;
      assert.equal(p.options[key], undefined, `${where}: no ${key} in its file or flags`);
      assert.equal(read(`${key}File`), meant.options[key], `${where}: its ${key}`);
      checked++;
    }
    if (context.topology.tls === undefined) continue;
    const ca = new X509Certificate(read("tlsCa"));
    checked++;
    const listening = Object.entries(roleSpec(ROLES[meant.role])).some(([k, d]) =>
      d.type === "port" && typeof meant.options[k] === "number"
    );
    if (!listening) continue;
    const cert = new X509Certificate(read("tlsCert"));
    assert.ok(cert.verify(ca.publicKey), `${where}: its certificate is signed by its CA`);
    assert.ok(cert.checkPrivateKey(createPrivateKey(read("tlsKey"))), `${where}: a pair`);
    // Its alternative names, as TLS clients read them (Deno's checkHost also takes the CN).
    const names = (cert.subjectAltName ?? "").split(", ");
    for (const host of [...p.launched.hosts, "127.0.0.1"]) {
      const name = isIP(host) ? `IP Address:${host}` : `DNS:${host}`;
      assert.ok(names.includes(name), `${where}: its certificate names ${host}`);
    }
    checked++;
  }
  if (context.topology.tls !== undefined || secretValues(context.topology).length > 0) {
    assert.ok(checked > 0, `${context.what}: some secret was checked`);
  }
  return checked;
}

function normal(host: string): string {
  return host.toLowerCase() === "localhost" ? "127.0.0.1" : host.toLowerCase();
}

/** compose.yaml's services as processes (`$$` read back as `$`). */
export function composeProcesses(text: string, exported: ExportFile[] = []): Launched[] {
  const doc = parseYaml(text) as {
    services: Record<string, Record<string, unknown>>;
    secrets?: Record<string, { file: string }>;
  };
  return Object.entries(doc.services).map(([name, service]) => {
    const unescape = (w: unknown) => String(w).replaceAll("$$", "$");
    const test = (service.healthcheck as { test?: string[] } | undefined)?.test;
    const ports = ((service.ports ?? []) as string[]).map((p) => Number(p.split(":").at(-1)));
    if (test) ports.push(parseAddress(test[test.indexOf("--connect") + 1]).port);
    const files = new Map<string, string>();
    for (const id of (service.secrets ?? []) as string[]) {
      const path = doc.secrets![id].file.replace(/^\.\//, "");
      files.set(`/run/secrets/${id}`, exported.find((f) => f.path === path)!.text);
    }
    return { hosts: [name], argv: (service.command as string[]).map(unescape), ports, files };
  });
}

/** The Kubernetes objects of an export. */
export function k8sObjects(text: string): Record<string, unknown>[] {
  return parseAllDocuments(text).map((d) => d.toJSON() as Record<string, unknown>);
}

// deno-lint-ignore no-explicit-any
type Json = any;

/** Every pod a k8s export runs, named and addressed as Kubernetes would. */
export function k8sProcesses(objects: Json[]): Launched[] {
  const services = objects.filter((o) => o.kind === "Service");
  const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
    Object.entries(selector).every(([k, v]) => labels[k] === v);
  const out: Launched[] = [];
  for (const w of objects) {
    if (!["StatefulSet", "Deployment", "Job"].includes(w.kind)) continue;
    const template = w.spec.template;
    const labels = template.metadata.labels;
    if (w.kind !== "Job") assert.deepEqual(w.spec.selector.matchLabels, labels, w.metadata.name);
    const container = template.spec.containers[0];
    const mine = services.filter((s) => matches(s.spec.selector, labels));
    const count = w.kind === "Job" ? 1 : w.spec.replicas;
    const start = w.spec.ordinals?.start ?? 0;
    for (let k = 0; k < count; k++) {
      const pod = w.kind === "StatefulSet" ? `${w.metadata.name}-${start + k}` : w.metadata.name;
      const env = new Map<string, string>();
      for (const e of container.env ?? []) {
        if (e.value !== undefined) {
          env.set(e.name, e.value); // data_dir "auto": STATE_DIRECTORY
          continue;
        }
        assert.equal(e.valueFrom.fieldRef.fieldPath, "metadata.name");
        env.set(e.name, pod);
      }
      const argv = (container.args as string[]).map((a) =>
        a.replace(/\$\(([A-Z_]+)\)/g, (_, v) => env.get(v) ?? `$(${v})`)
      );
      const hosts: string[] = [];
      const ports: number[] = (container.ports ?? []).map((p: Json) => p.containerPort);
      for (const s of mine) {
        if (s.spec.clusterIP === "None") {
          assert.equal(w.spec.serviceName, s.metadata.name, `${pod}: governed by its Service`);
          hosts.push(`${pod}.${s.metadata.name}`);
        } else {
          hosts.push(s.metadata.name);
          for (const p of s.spec.ports) {
            assert.equal(p.port, p.targetPort, `${s.metadata.name}: same port outside and in`);
            ports.push(p.targetPort);
          }
        }
      }
      const probe = container.readinessProbe?.exec?.command as string[] | undefined;
      if (probe) ports.push(parseAddress(probe[probe.indexOf("--connect") + 1]).port);
      const files = new Map<string, string>();
      for (const m of container.volumeMounts ?? []) {
        const volume = template.spec.volumes.find((v: Json) => v.name === m.name);
        if (volume?.secret === undefined) continue;
        const secret = objects.find((o) =>
          o.kind === "Secret" && o.metadata.name === volume.secret.secretName
        );
        assert.ok(secret, `${pod}: Secret ${volume.secret.secretName}`);
        for (const [key, value] of Object.entries(secret.data as Record<string, string>)) {
          const bytes = Uint8Array.from(atob(value), (c) => c.charCodeAt(0));
          files.set(`${m.mountPath}/${key}`, new TextDecoder().decode(bytes));
        }
      }
      out.push({ hosts, argv: argv.slice(argv.indexOf("--config")), ports, files });
    }
  }
  return out;
}

/** Every unit of a systemd export (its files, one host's folder), as processes. */
export function systemdProcesses(
  files: ExportFile[],
  host: string,
  credential: (id: string) => string | undefined = () => undefined,
): Launched[] {
  const out: Launched[] = [];
  for (const file of files) {
    if (!file.path.endsWith(".service")) continue;
    const exec = /^ExecStart=(\S+) (.*)$/m.exec(file.text);
    assert.ok(exec, `${file.path}: ExecStart`);
    const post = /^ExecStartPost=.*--connect (\S+)/m.exec(file.text);
    const ports = post ? [parseAddress(post[1]).port] : [];
    if (post) assert.equal(parseAddress(post[1]).host, host, `${file.path}: probes itself`);
    const given = new Map<string, string>();
    for (const [, id, path] of file.text.matchAll(/^LoadCredential=([^:]+):(.*)$/gm)) {
      assert.equal(path, `/etc/dist/credentials/${id}`, `${file.path}: LoadCredential=${id}`);
      const text = credential(id);
      assert.ok(text !== undefined, `${file.path}: credentials/${id} is in the export`);
      given.set(`%d/${id}`, text);
    }
    out.push({ hosts: [host], argv: exec[2].split(" "), ports, files: given });
  }
  return out;
}
