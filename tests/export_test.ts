/**
 * `dist export`: the round trip of every export of every example topology
 * and the default one (each address an instance is given names what the
 * same export defines, listening there, and the instance the file meant),
 * what a target cannot express (a `dist:` error or a note in the output),
 * and the command line.
 */
import assert from "node:assert/strict";
import { parse as parseYaml, stringify } from "yaml";
import { buildExport } from "../export/mod.ts";
import { ROLES } from "../roles/mod.ts";
import { UsageError } from "../config/mod.ts";
import { runDist } from "./helpers/dist.ts";
import {
  checkNoSecrets,
  checkRoundTrip,
  checkSecretsCarried,
  composeProcesses,
  exportsOf,
  hostsOf,
  k8sObjects,
  k8sProcesses,
  load,
  readBack,
  systemdProcesses,
  topologies,
} from "./helpers/export.ts";

const SOURCES = await topologies();

for (const source of SOURCES) {
  const topology = load(source.file, source.text);

  Deno.test(`export compose of ${source.file}: every address names a service of the export`, async () => {
    let checked = 0;
    for (const { on, files } of await exportsOf("compose", source)) {
      const compose = files.find((f) => f.path === "compose.yaml")!.text;
      const exported = files.find((f) => f.path === "topology.toml")!.text;
      checkNoSecrets({ topology: exported, open: [compose] }, {
        source: source.text,
        topology,
        what: "compose",
      });
      const processes = await readBack(composeProcesses(compose, files), exported);
      const placed = topology.instances.filter((i) => on === undefined || i.host === on);
      assert.deepEqual(
        processes.map((p) => p.instance.name).sort(),
        placed.map((i) => i.name).sort(),
      );
      const others = new Map(
        topology.instances.filter((i) => !placed.includes(i)).map((i) => [i.name, i]),
      );
      checked += checkRoundTrip(processes, { topology, others, what: `compose ${on ?? ""}` });
      checkSecretsCarried(processes, { topology, what: "compose" });
      // depends_on names services of the same file.
      const services = (parseYaml(compose) as { services: Record<string, { depends_on?: object }> })
        .services;
      for (const [name, service] of Object.entries(services)) {
        for (const dep of Object.keys(service.depends_on ?? {})) {
          assert.ok(Object.hasOwn(services, dep), `${name} depends on ${dep}, not a service`);
        }
      }
    }
    assert.ok(checked > 0, "some address was checked");
  });

  Deno.test(`export k8s of ${source.file}: every address names a Service and pod of the export`, async () => {
    const [{ files }] = await exportsOf("k8s", source);
    const objects = k8sObjects(files[0].text);
    const config = objects.find((o) => o.kind === "ConfigMap") as { data: Record<string, string> };
    const exported = config.data["topology.toml"];
    const open = objects.filter((o) => o.kind !== "Secret" && o.kind !== "ConfigMap");
    checkNoSecrets({ topology: exported, open: open.map((o) => JSON.stringify(o)) }, {
      source: source.text,
      topology,
      what: "k8s",
    });
    const processes = await readBack(k8sProcesses(objects), exported);
    assert.deepEqual(
      processes.map((p) => p.instance.name).sort(),
      topology.instances.map((i) => i.name).sort(),
    );
    assert.ok(checkRoundTrip(processes, { topology, what: "k8s" }) > 0);
    checkSecretsCarried(processes, { topology, what: "k8s" });
  });

  Deno.test(`export systemd of ${source.file}: every address names a unit of its host`, async () => {
    const [{ files }] = await exportsOf("systemd", source);
    const hosts = hostsOf(topology);
    let checked = 0;
    for (const host of hosts) {
      const folder = hosts.length > 1 ? `${host}/` : "";
      const mine = files.filter((f) =>
        f.path.startsWith(folder) && !f.path.slice(folder.length).includes("/")
      );
      const exported = mine.find((f) => f.path.endsWith("topology.toml"))!.text;
      checkNoSecrets({
        topology: exported,
        open: mine.map((f) => f.text).filter((t) => t !== exported),
      }, { source: source.text, topology, what: `systemd ${host}` });
      const credential = (id: string) =>
        files.find((f) => f.path === `${folder}credentials/${id}`)?.text;
      const processes = await readBack(systemdProcesses(mine, host, credential), exported);
      assert.deepEqual(
        processes.map((p) => p.instance.name).sort(),
        topology.instances.filter((i) => i.host === host).map((i) => i.name).sort(),
      );
      const others = new Map(
        topology.instances.filter((i) => i.host !== host).map((i) => [i.name, i]),
      );
      checked += checkRoundTrip(processes, { topology, others, what: `systemd ${host}` });
      checkSecretsCarried(processes, { topology, what: `systemd ${host}` });
      // After= names units of the same host.
      const units = new Set(mine.map((f) => f.path.slice(folder.length)));
      for (const file of mine) {
        const after = /^After=(.*)$/m.exec(file.text)?.[1].split(" ") ?? [];
        for (const u of after.filter((u) => u.startsWith("dist-"))) {
          assert.ok(units.has(u), `${file.path}: After=${u} is no unit of ${host}`);
        }
      }
    }
    assert.ok(checked > 0);
  });
}

Deno.test("checkRoundTrip() fails an export whose address names another service or port", async () => {
  const source = SOURCES.find((s) => s.file === "examples/balancer.toml")!;
  const topology = load(source.file, source.text);
  const [{ files }] = await exportsOf("compose", source);
  const compose = parseYaml(files[0].text) as { services: Record<string, { command: string[] }> };
  const balancer = compose.services.balancer.command;
  const at = balancer.findIndex((w) => w.startsWith("--backends="));
  for (
    const wrong of [
      "--backends=server-2:5557,server-2:5558,server-3:5559",
      "--backends=server-1:5560,server-2:5558,server-3:5559",
      "--backends=nowhere:5557,server-2:5558,server-3:5559",
    ]
  ) {
    balancer[at] = wrong;
    const processes = await readBack(composeProcesses(stringify(compose)), source.text);
    assert.throws(() => checkRoundTrip(processes, { topology, what: "broken" }), wrong);
  }
});

/** The problems of an export, or "" when it is made. */
async function problems(
  target: string,
  text: string,
  options: { on?: string } = {},
): Promise<string> {
  try {
    await buildExport(target, { topology: load("t.toml", text), text, roles: ROLES, ...options });
    return "";
  } catch (err) {
    assert.ok(err instanceof UsageError, String(err));
    return err.message;
  }
}

Deno.test("export refuses what a target cannot express, naming it", async () => {
  const twoHosts =
    `[[server]]\nname = "a"\nhost = "10.0.0.1"\n[[server]]\nname = "b"\nhost = "10.0.0.2"\n`;
  assert.match(
    await problems("compose", twoHosts),
    /compose runs every service on one Docker host.*--on HOST/,
  );
  assert.equal(await problems("compose", twoHosts, { on: "10.0.0.1" }), "");
  assert.equal(await problems("k8s", twoHosts), "");

  const portZero = `[[server]]\nname = "s"\nport = 0\n`;
  assert.match(
    await problems("compose", portZero),
    /server\.port: s listens on port 0: compose cannot/,
  );
  assert.match(await problems("k8s", portZero), /server\.port: s listens on port 0: k8s cannot/);
  // systemd may run it, as long as nobody dials it.
  assert.equal(await problems("systemd", portZero), "");
  assert.match(
    await problems("systemd", `${portZero}[[client]]\nname = "c"\nconnect = "s"\n`),
    /client\.connect: c dials s, which listens on port 0/,
  );

  const upper = `[[server]]\nname = "Big"\n`;
  assert.equal(await problems("compose", upper), "");
  assert.match(
    await problems("k8s", upper),
    /server\.name: "Big" cannot name a Kubernetes service/,
  );
  assert.match(
    await problems("compose", `[[server]]\nname = "a.b"\n`),
    /"a\.b" cannot name a compose service/,
  );

  // An address of nothing in the file on the loopback means the container itself.
  const nowhere = `[[client]]\nname = "c"\nconnect = "127.0.0.1:9999"\n`;
  assert.match(
    await problems("compose", nowhere),
    /client\.connect: c is given 127\.0\.0\.1:9999, which is no instance/,
  );
  assert.match(await problems("k8s", nowhere), /client\.connect: c is given 127\.0\.0\.1:9999/);
  assert.equal(await problems("systemd", nowhere), "");
  assert.match(
    await problems("nomad", nowhere),
    /Unknown export target "nomad": one of compose, systemd, k8s/,
  );
});

Deno.test("export notes in its output what the target does differently", async () => {
  const [{ files: k8s }] = await exportsOf(
    "k8s",
    SOURCES.find((s) => s.file === "examples/binders.toml")!,
  );
  assert.match(k8s[0].text, /# - restart = "on-failure" \(binder, compute\): Kubernetes restarts/);
  assert.match(k8s[0].text, /# - dist up starts what waits for compute-1, compute-2, compute-3,/);

  const two = SOURCES.find((s) => s.file === "examples/two_machines.toml")!;
  const [east] = await exportsOf("compose", two);
  const compose = east.files[0].text;
  assert.match(compose, /# waits for west on 192\.168\.1\.11, which compose cannot wait for/);
  // The file's address of west is kept: no --connect override.
  assert.match(compose, /command: \[--config, \/etc\/dist\/topology\.toml, --name, from-east\]/);
  assert.match(compose, /ports: \[192\.168\.1\.10:5557:5557\]/);
  const [{ files: k8sTwo }] = await exportsOf("k8s", two);
  assert.match(
    k8sTwo[0].text,
    /places instances on 192\.168\.1\.10, 192\.168\.1\.11; Kubernetes schedules/,
  );

  const [{ files: units }] = await exportsOf("systemd", two);
  const fromWest = units.find((f) => f.path === "192.168.1.11/dist-from-west.service")!.text;
  assert.match(fromWest, /^ExecStartPre=.*--connect 192\.168\.1\.10:5557 /m);
  assert.match(fromWest, /^Restart=no$/m);
});

Deno.test("export's k8s objects: replicas as StatefulSets named as the file names them, clients as Jobs", async () => {
  const [{ files }] = await exportsOf("k8s", SOURCES.find((s) => s.file === "(default topology)")!);
  // deno-lint-ignore no-explicit-any
  const objects = k8sObjects(files[0].text) as any[];
  const kinds = objects.map((o) => `${o.kind}/${o.metadata.name}`);
  for (
    const kind of [
      "StatefulSet/binder",
      "StatefulSet/server",
      "StatefulSet/worker",
      "Deployment/broker",
      "Deployment/balancer",
      "Job/client",
      "Job/resolver",
      "Service/server",
      "Service/balancer",
      "ConfigMap/dist-topology",
    ]
  ) {
    assert.ok(kinds.includes(kind), `${kind} in ${kinds.join(" ")}`);
  }
  const server = objects.find((o) => o.kind === "StatefulSet" && o.metadata.name === "server");
  assert.equal(server.spec.replicas, 3);
  assert.deepEqual(server.spec.ordinals, { start: 1 });
  const container = server.spec.template.spec.containers[0];
  assert.ok(
    container.args.includes("--advertise=$(DIST_NAME).server:5557"),
    container.args.join(" "),
  );
  assert.deepEqual(container.readinessProbe.exec.command, [
    "dist",
    "client",
    "--connect",
    "127.0.0.1:5557",
    "--timeout",
    "2s",
    "sys.ping",
  ]);
  // It waits for the binders, as dist up does.
  assert.match(
    server.spec.template.spec.initContainers[0].command[2],
    /binder-1\.binder:7000 binder-2\.binder:7000/,
  );
  const job = objects.find((o) => o.kind === "Job" && o.metadata.name === "client");
  assert.equal(job.spec.template.spec.restartPolicy, "Never");
  assert.equal(job.spec.backoffLimit, 0);
});

Deno.test("export: metrics is where an instance listens, bound and published in a container", async () => {
  // hostile47 Q15: it was taken for a reference to another instance and refused.
  const source = {
    file: "metrics.toml",
    text: `[[broker]]\nname = "broker"\nport = 44700\nmetrics = "0.0.0.0:44703"\n\n` +
      `[[server]]\nname = "s"\nreplicas = 2\nport = 44710\nmetrics = "127.0.0.1:44720"\n`,
  };
  const [{ files: composeFiles }] = await exportsOf("compose", source);
  // deno-lint-ignore no-explicit-any
  const services = (parseYaml(composeFiles[0].text) as any).services;
  assert.ok(services.broker.command.includes("--metrics=0.0.0.0:44703"), services.broker.command);
  // Each published where its own host says: the broker on the loopback, its metrics everywhere.
  assert.deepEqual(services.broker.ports, ["127.0.0.1:44700:44700", "44703:44703"]);
  assert.ok(services["s-2"].command.includes("--metrics=0.0.0.0:44721"), services["s-2"].command);
  assert.deepEqual(services["s-2"].ports, ["127.0.0.1:44711:44711", "127.0.0.1:44721:44721"]);
  const [{ files: k8sFiles }] = await exportsOf("k8s", source);
  // deno-lint-ignore no-explicit-any
  const objects = k8sObjects(k8sFiles[0].text) as any[];
  const set = objects.find((o) => o.kind === "StatefulSet" && o.metadata.name === "s");
  const container = set.spec.template.spec.containers[0];
  assert.ok(container.args.includes("--metrics=0.0.0.0:44720"), container.args.join(" "));
  assert.deepEqual(container.ports, [
    { name: "port", containerPort: 44710 },
    { name: "metrics", containerPort: 44720 },
  ]);
  const service = objects.find((o) => o.kind === "Service" && o.metadata.name === "broker");
  assert.deepEqual(service.spec.ports.find((p: { name: string }) => p.name === "metrics"), {
    name: "metrics",
    port: 44703,
    targetPort: 44703,
  });
  const [{ files: units }] = await exportsOf("systemd", source);
  // systemd runs the file's own address: no override, no note of it.
  assert.ok(units.every((f) => !f.text.includes("--metrics")));
  assert.ok(units.every((f) => !/is given .*4470[0-9]/.test(f.text)));
});

Deno.test("export systemd: a % or $ in --bin is escaped in every command line, the probe's too", async () => {
  // hostile47 Q21: ExecStartPost's probe left `%h` for systemd to expand into another path.
  const source = SOURCES.find((s) => s.file === "examples/client_server.toml")!;
  const [{ files }] = await exportsOf("systemd", source, { bin: "/opt/$HOME/%h/dist" });
  const lines = files.flatMap((f) => f.text.split("\n")).filter((l) => /^Exec/.test(l));
  assert.ok(lines.some((l) => l.startsWith("ExecStartPost=")), lines.join("\n"));
  for (const line of lines) {
    // What systemd would expand: a `%` specifier (but the credentials' %d) or a `$` not doubled.
    const left = line.replaceAll("%%", "").replaceAll("$$", "").replaceAll("%d/", "");
    assert.doesNotMatch(left, /[%$]/, line);
    // Read as systemd reads it, the binary is the one given.
    assert.ok(line.replaceAll("%%", "%").replaceAll("$$", "$").includes("/opt/"), line);
  }
  const post = lines.find((l) => l.startsWith("ExecStartPost="))!;
  assert.ok(
    post.replaceAll("%%", "%").replaceAll("$$", "$").includes(String.raw`"/opt/\$HOME/%h/dist"`),
    post,
  );
});

Deno.test("dist export writes the files to --out, lists them on stdout without it, and says what is wrong", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const wrote = await runDist([
      "export",
      "compose",
      "examples/balancer.toml",
      "--out",
      `${dir}/c`,
      "--image",
      "registry.example/dist:1",
    ]);
    assert.equal(wrote.code, 0, wrote.stderr);
    assert.match(wrote.stderr, /Wrote 2 files to .*: compose\.yaml, topology\.toml/);
    assert.match(
      await Deno.readTextFile(`${dir}/c/compose.yaml`),
      /image: registry\.example\/dist:1/,
    );
    const listed = await runDist(["export", "systemd", "examples/client_server.toml"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^# ==> dist\.target <==$/m);
    assert.match(listed.stdout, /^# ==> dist-alice\.service <==$/m);
    const k8s = await runDist(["export", "k8s"]);
    assert.equal(k8s.code, 0, k8s.stderr);
    assert.ok(k8sObjects(k8s.stdout).length > 10);
    const bad = await runDist(["export", "compose", "examples/two_machines.toml"]);
    assert.equal(bad.code, 2);
    assert.match(
      bad.stderr,
      /^dist: Cannot load examples\/two_machines\.toml: compose runs every service/,
    );
    const none = await runDist(["export"]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /^dist: dist export needs a target: compose, systemd or k8s/);
    const onK8s = await runDist(["export", "k8s", "--on", "x"]);
    assert.equal(onK8s.code, 2);
    assert.match(onK8s.stderr, /--on is for compose and systemd/);
    const help = await runDist(["export", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /dist export compose\|systemd\|k8s \[FILE\]/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("README's worked examples are what dist export writes", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const start = readme.indexOf("\n## When one machine is not enough\n");
  assert.ok(start >= 0, "README has the section");
  const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
  const blocks = [...section.matchAll(/```(\w*)\n([\s\S]*?)```/g)].map((m) => ({
    lang: m[1],
    body: m[2],
  }));
  let checked = 0;
  for (let i = 1; i < blocks.length; i++) {
    if (!["yaml", "ini"].includes(blocks[i].lang)) continue;
    // The command is the first `dist export` line of the sh block before the excerpt.
    const line = blocks[i - 1].body.split("\n").find((l) => l.startsWith("dist export "))!;
    const words = line.replace(/\s+#.*$/, "").replace(/\s*>.*$/, "").split(/\s+/);
    const out = words.indexOf("--out");
    if (out >= 0) words.splice(out, 2);
    const res = await runDist(words.slice(1));
    assert.equal(res.code, 0, `${line}: ${res.stderr}`);
    const docs = res.stdout.split(/^(?:---|# ==> .* <==)$/m).map((d) => d.split("\n"));
    // `# …` marks lines left out.
    const excerpt = blocks[i].body.split("\n").filter((l) => l.trim() !== "" && l.trim() !== "# …");
    // Every line of the excerpt, in order, in one file or document of the output.
    const found = docs.some((doc) => {
      let at = 0;
      for (const l of excerpt) {
        at = doc.indexOf(l, at);
        if (at < 0) return false;
        at++;
      }
      return true;
    });
    assert.ok(found, `README's excerpt after "${line}" is not in its output`);
    checked++;
  }
  assert.equal(checked, 4, "one worked example per target, and one with secrets");
});
