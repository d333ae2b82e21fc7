/**
 * Every export of every example topology and of the default one, checked
 * offline by the tools that read them: `docker-compose config -q` (Debian
 * `docker-compose`, no daemon needed), `systemd-analyze verify` (Debian
 * `systemd`), and each Kubernetes object against the API schema
 * (`kubernetes-models`). Each tool is first shown to refuse a broken file,
 * so a pass means something. `.ci/run` installs the two Debian packages; a
 * test whose tool is missing is skipped and says so.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { StatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import { Job } from "kubernetes-models/batch/v1/Job";
import { exportsOf, k8sObjects, topologies, writeAll } from "./helpers/export.ts";

const SOURCES = await topologies();

/** Runs a command; undefined when it is not installed. */
async function run(
  cmd: string,
  args: string[],
  cwd?: string,
): Promise<{ code: number; out: string } | undefined> {
  try {
    const o = await new Deno.Command(cmd, {
      args,
      cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    const text = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
    return { code: o.code, out: text };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

const compose = await run("docker-compose", ["version"]);
const systemdAnalyze = await run("systemd-analyze", ["--version"]);

Deno.test({
  name: compose
    ? "docker-compose config -q accepts every compose export"
    : "docker-compose config -q accepts every compose export (skipped: docker-compose is not installed; .ci/run installs it)",
  ignore: compose === undefined,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      // A broken file is refused: the check is real (YAML 1.1 reads an unquoted no as false).
      await Deno.writeTextFile(
        join(dir, "compose.yaml"),
        "services:\n  a:\n    image: x\n    restart: no\n",
      );
      const broken = await run("docker-compose", ["config", "-q"], dir);
      assert.notEqual(broken!.code, 0, "restart: no unquoted is refused");
      assert.match(broken!.out, /services\.a\.restart contains an invalid type/);
      const jobs = [];
      for (const source of SOURCES) {
        for (const e of await exportsOf("compose", source)) jobs.push({ ...e, file: source.file });
      }
      assert.ok(jobs.length > SOURCES.length, "two_machines.toml is exported once per host");
      // docker-compose takes a second or two to start: two at a time.
      for (let i = 0; i < jobs.length; i += 2) {
        await Promise.all(
          jobs.slice(i, i + 2).map(async ({ on, files, file }, j) => {
            const here = join(dir, String(i + j));
            await writeAll(here, files);
            const res = await run("docker-compose", ["config", "-q"], here);
            assert.equal(res!.code, 0, `${file} ${on ?? ""}: ${res!.out}`);
            assert.equal(res!.out.trim(), "", `${file} ${on ?? ""}: warnings`);
          }),
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: systemdAnalyze
    ? "systemd-analyze verify accepts every unit of every systemd export, with no warning"
    : "systemd-analyze verify accepts every systemd export (skipped: systemd-analyze is not installed; .ci/run installs systemd)",
  ignore: systemdAnalyze === undefined,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      // verify checks that ExecStart's program exists: a stand-in for dist.
      const bin = join(dir, "bin", "dist");
      await Deno.mkdir(join(dir, "bin"));
      await Deno.writeTextFile(bin, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
      const bad = join(dir, "bad");
      await Deno.mkdir(bad);
      await Deno.writeTextFile(
        join(bad, "dist-x.service"),
        `[Service]\nExecStart=${bin}\nRestart=sometimes\n`,
      );
      const broken = await run("systemd-analyze", ["verify", join(bad, "dist-x.service")]);
      assert.match(broken!.out, /dist-x\.service:3: .*restart/i, "a bad Restart= is reported");
      let checked = 0;
      for (const source of SOURCES) {
        const [{ files }] = await exportsOf("systemd", source, { bin });
        const here = join(dir, String(checked++));
        await writeAll(here, files);
        // Each host's folder at once, so that Wants= and After= find their units.
        const unitFiles = files.filter((f) => /\.(service|target)$/.test(f.path));
        const folders = new Set(unitFiles.map((f) => f.path.split("/").slice(0, -1).join("/")));
        for (const folder of folders) {
          const units = unitFiles.filter((f) => f.path.split("/").slice(0, -1).join("/") === folder)
            .map((f) => join(here, f.path));
          const res = await run("systemd-analyze", ["verify", ...units]);
          const ours = res!.out.split("\n").filter((l) => l.includes(here) || /dist[-.]/.test(l));
          assert.equal(res!.code, 0, `${source.file} ${folder}: ${res!.out}`);
          assert.deepEqual(ours, [], `${source.file} ${folder}: warnings`);
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** The schema of each kind an export writes. */
const MODELS: Record<string, (o: Record<string, unknown>) => { validate(): void }> = {
  // deno-lint-ignore no-explicit-any
  ConfigMap: (o) => new ConfigMap(o as any),
  // deno-lint-ignore no-explicit-any
  Secret: (o) => new Secret(o as any),
  // deno-lint-ignore no-explicit-any
  Service: (o) => new Service(o as any),
  // deno-lint-ignore no-explicit-any
  Deployment: (o) => new Deployment(o as any),
  // deno-lint-ignore no-explicit-any
  StatefulSet: (o) => new StatefulSet(o as any),
  // deno-lint-ignore no-explicit-any
  Job: (o) => new Job(o as any),
};

/** A DNS-1123 label (Service and pod names), a port name (IANA_SVC_NAME). */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const PORT_NAME = /^(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

Deno.test("every Kubernetes object of every k8s export matches the API schema", async () => {
  // A broken object is refused: the check is real.
  assert.throws(
    () =>
      MODELS.Service({ apiVersion: "v1", kind: "Service", spec: { ports: [{ port: "http" }] } })
        .validate(),
    /ports\/0\/port must be integer/,
  );
  for (const source of SOURCES) {
    const [{ files }] = await exportsOf("k8s", source);
    // deno-lint-ignore no-explicit-any
    for (const object of k8sObjects(files[0].text) as any[]) {
      const what = `${source.file}: ${object.kind}/${object.metadata?.name}`;
      const model = MODELS[object.kind];
      assert.ok(model, `${what}: a kind the export should not write`);
      model(object).validate();
      // What the schema leaves to the API server's validation.
      assert.match(object.metadata.name, DNS_LABEL, what);
      assert.ok(object.metadata.name.length <= 63, what);
      const pod = object.spec?.template?.spec;
      for (const c of [...(pod?.containers ?? []), ...(pod?.initContainers ?? [])]) {
        for (const p of c.ports ?? []) assert.match(p.name, PORT_NAME, `${what}: port ${p.name}`);
        for (const m of c.volumeMounts ?? []) {
          assert.ok(
            pod.volumes.some((v: { name: string }) => v.name === m.name),
            `${what}: ${m.name}`,
          );
        }
      }
      for (const p of object.kind === "Service" ? object.spec?.ports ?? [] : []) {
        assert.match(p.name, PORT_NAME, `${what}: port ${p.name}`);
      }
    }
  }
});
