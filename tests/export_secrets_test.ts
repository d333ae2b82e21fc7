/**
 * `dist export` with security material: the exported instances run for
 * real with what each export gives them (a server from its Kubernetes pod's
 * arguments and Secret, the client from its systemd unit and credentials),
 * and each export's health check dials it with TLS and the token; what is
 * carried (users files, passwords, tls = "files") and what is refused (a
 * certificate that does not name where the target dials it, a token written
 * where it cannot be taken out); the files `--out` writes and their modes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { buildExport, type ExportFile } from "../export/mod.ts";
import { UsageError } from "../config/mod.ts";
import { issueCert, makeCa } from "../cert/x509.ts";
import { certNames } from "../cert/mod.ts";
import { X509Certificate } from "node:crypto";
import { ROLES } from "../roles/mod.ts";
import { freePort, runDist, startDist } from "./helpers/dist.ts";
import {
  checkNoSecrets,
  checkSecretsCarried,
  composeProcesses,
  k8sObjects,
  k8sProcesses,
  load,
  readBack,
  systemdProcesses,
} from "./helpers/export.ts";

const TOKEN = "Tk-export-7d1e93ab52";

function topologyText(port: number, pki: string): string {
  return `[defaults]\nhost = "127.0.0.1"\ntoken = "${TOKEN}"\n\n` +
    `[security]\ntls = "auto"\ndir = "${pki}"\n\n` +
    `[[server]]\nname = "s"\nport = ${port}\n\n` +
    `[[client]]\nname = "c"\nconnect = "s"\nrandom = 3\n`;
}

async function build(target: string, text: string, options: { bin?: string } = {}) {
  return await buildExport(target, {
    topology: load("t.toml", text),
    text,
    roles: ROLES,
    ...options,
  });
}

/** Writes each given secret where `dir` stands for the path the target mounts them at. */
async function place(files: Map<string, string>, mount: string, dir: string): Promise<void> {
  for (const [path, text] of files) {
    await Deno.writeTextFile(join(dir, path.slice(mount.length)), text, { mode: 0o600 });
  }
}

Deno.test("the exported instances run with TLS and the token each export gives them, and their checks pass", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist_export_secrets_" });
  const port = freePort();
  const text = topologyText(port, join(dir, "pki"));
  const topologyFile = join(dir, "topology.toml");
  let server: Awaited<ReturnType<typeof startDist>> | undefined;
  try {
    // The server as its Kubernetes pod runs it: the Secret's files where it is mounted.
    const objects = k8sObjects((await build("k8s", text))[0].text);
    // deno-lint-ignore no-explicit-any
    const config = (objects.find((o) => o.kind === "ConfigMap") as any).data["topology.toml"];
    await Deno.writeTextFile(topologyFile, config, { mode: 0o600 }); // It holds the token.
    const pods = await readBack(k8sProcesses(objects), config);
    const pod = pods.find((p) => p.instance.name === "s")!;
    const k8sDir = join(dir, "k8s");
    await Deno.mkdir(k8sDir);
    await place(pod.launched.files, "/run/secrets/dist", k8sDir);
    const here = (argv: string[]) =>
      argv.map((w) =>
        w.replace("/run/secrets/dist", k8sDir).replace("/etc/dist/topology.toml", topologyFile)
      );
    server = await startDist(here(pod.launched.argv));
    assert.equal(server.port, port);

    // Its readiness probe (TLS, the token) passes; a dial without the token is refused.
    // deno-lint-ignore no-explicit-any
    const set = objects.find((o: any) => o.kind === "Deployment" && o.metadata.name === "s") as any;
    const probe = set.spec.template.spec.containers[0].readinessProbe.exec.command as string[];
    assert.ok(probe.some((w) => w.startsWith("--token-file=")), probe.join(" "));
    const probed = await runDist(here(probe).slice(1));
    assert.equal(probed.code, 0, probed.stderr);
    const tlsOnly = here(probe).slice(1).filter((w) => !w.startsWith("--token-file="));
    const refused = await runDist(tlsOnly);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /UNAUTHORIZED|token/i);
    const plain = await runDist(["client", "--connect", `127.0.0.1:${port}`, "sys.ping"]);
    assert.notEqual(plain.code, 0, "a plain dial is refused");

    // compose's health check, its secrets where compose mounts them.
    const composeFiles = await build("compose", text);
    const compose = composeFiles.find((f) => f.path === "compose.yaml")!.text;
    const composeDir = join(dir, "compose");
    await Deno.mkdir(composeDir);
    const [service] = composeProcesses(compose, composeFiles).filter((p) => p.hosts[0] === "s");
    await place(service.files, "/run/secrets", composeDir);
    // deno-lint-ignore no-explicit-any
    const health = (parseYaml(compose) as any).services.s.healthcheck.test as string[];
    const healthy = await runDist(
      health.slice(2).map((w) => w.replace("/run/secrets", composeDir)),
    );
    assert.equal(healthy.code, 0, healthy.stderr);

    // The client as its systemd unit runs it (%d: the unit's credentials), to its end.
    const units = await build("systemd", text);
    const credDir = join(dir, "credentials");
    await Deno.mkdir(credDir);
    const credential = (id: string) =>
      units.find((f: ExportFile) => f.path === `credentials/${id}`)?.text;
    const clientUnit = units.filter((f) => f.path === "dist-c.service");
    const [client] = systemdProcesses(clientUnit, "127.0.0.1", credential);
    await place(client.files, "%d", credDir);
    const argv = client.argv.map((w) =>
      w.replace("%d", credDir).replace("/etc/dist/topology.toml", topologyFile)
    );
    const ran = await runDist(argv, { timeoutMs: 30_000 });
    assert.equal(ran.code, 0, ran.stderr);
    assert.match(ran.stdout + ran.stderr, /3 requests/);
    assert.equal(server.stdout().includes(TOKEN) || server.stderr().includes(TOKEN), false);
  } finally {
    await server?.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test('users files, passwords and tls = "files" are carried; certificates that would not work are refused', async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist_export_files_" });
  try {
    const ca = await makeCa();
    await Deno.writeTextFile(join(dir, "ca.crt"), ca.cert, { mode: 0o644 });
    const write = async (name: string, hosts: string[]) => {
      const pair = await issueCert(ca, { name, hosts });
      await Deno.writeTextFile(join(dir, `${name}.crt`), pair.cert, { mode: 0o644 });
      await Deno.writeTextFile(join(dir, `${name}.key`), pair.key, { mode: 0o600 });
    };
    const users = '[users.app]\ntoken = "sha256:abc"\n';
    await Deno.writeTextFile(join(dir, "users.toml"), users, { mode: 0o600 });
    const text = `[security]\ntls = "files"\nca = "${dir}/ca.crt"\n` +
      `cert = "${dir}/{name}.crt"\nkey = "${dir}/{name}.key"\n\n` +
      `[[server]]\nname = "s"\nport = 5590\nusers = "${dir}/users.toml"\n\n` +
      `[[client]]\nname = "c"\nconnect = "s"\nuser = "app"\npassword = "pw-5f0e2c1b9a"\n`;
    const topology = load("t.toml", text);

    // Made for dist up only (127.0.0.1): Kubernetes and compose dial it as "s".
    await write("s", ["127.0.0.1", "localhost"]);
    for (const target of ["k8s", "compose"]) {
      await assert.rejects(
        () => build(target, text),
        (err: Error) =>
          err instanceof UsageError &&
          /s's certificate is not valid for s, where \S+ dials it .*dist cert issue s --host s,127\.0\.0\.1/
            .test(err.message),
      );
    }
    assert.ok((await build("systemd", text)).length > 0, "systemd dials it where dist up does");

    await write("s", ["s", "127.0.0.1"]);
    const objects = k8sObjects((await build("k8s", text))[0].text);
    // deno-lint-ignore no-explicit-any
    const exported = (objects.find((o) => o.kind === "ConfigMap") as any).data["topology.toml"];
    checkNoSecrets({
      topology: exported,
      open: objects.filter((o) => o.kind !== "Secret" && o.kind !== "ConfigMap").map((o) =>
        JSON.stringify(o)
      ),
    }, { source: text, topology, what: "k8s" });
    const processes = await readBack(k8sProcesses(objects), exported);
    assert.ok(checkSecretsCarried(processes, { topology, what: "k8s" }) >= 3);
    const s = processes.find((p) => p.instance.name === "s")!;
    assert.equal(s.launched.files.get(s.options.users as string), users, "the users file");
    const c = processes.find((p) => p.instance.name === "c")!;
    assert.equal(c.options.user, "app");
    // The wait of c's init container dials as c does: its user and password file.
    // deno-lint-ignore no-explicit-any
    const job = objects.find((o: any) => o.kind === "Job") as any;
    assert.match(
      job.spec.template.spec.initContainers[0].command[2],
      /--tls-ca=\/run\/secrets\/dist\/ca\.crt --user=app --password-file=\/run\/secrets\/dist\/password/,
    );

    // A file that cannot be read, and a token the export cannot take out, are refused.
    await assert.rejects(
      () => build("compose", text.replace(`${dir}/users.toml`, `${dir}/nothing.toml`)),
      /server\.users: cannot read .*nothing\.toml for s/,
    );
    const multiLine = `[defaults]\ntoken = """\nTk-multi-line-0a9b8c"""\n[[server]]\nname = "s"\n`;
    await assert.rejects(
      () => build("k8s", multiLine),
      /the file's token or password cannot be taken out of the export/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dist export --out writes secrets into a folder only its owner enters", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist_export_out_" });
  try {
    const file = join(dir, "t.toml");
    await Deno.writeTextFile(file, topologyText(5591, join(dir, "pki")), { mode: 0o600 });
    const compose = await runDist(["export", "compose", file, "--out", join(dir, "c")]);
    assert.equal(compose.code, 0, compose.stderr);
    assert.match(compose.stderr, /Wrote \d+ files to .*secrets\/ca\.crt.*secrets\/token/);
    assert.equal((await Deno.stat(join(dir, "c", "secrets"))).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(join(dir, "c", "secrets", "s.key"))).mode! & 0o777, 0o644);
    assert.equal(await Deno.readTextFile(join(dir, "c", "secrets", "token")), TOKEN);
    const systemd = await runDist(["export", "systemd", file, "--out", join(dir, "u")]);
    assert.equal(systemd.code, 0, systemd.stderr);
    assert.equal((await Deno.stat(join(dir, "u", "credentials", "s.key"))).mode! & 0o777, 0o600);
    assert.equal(
      (await Deno.readTextFile(join(dir, "u", "topology.toml"))).includes(TOKEN),
      false,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("certNames() reads only the subject alternative names, never the common name", async () => {
  const ca = await makeCa();
  const pair = await issueCert(ca, { name: "server-1", hosts: ["127.0.0.1", "*.server"] });
  const cert = new X509Certificate(pair.cert);
  assert.equal(certNames(cert, "server-1"), false, "the CN is no name a TLS client takes");
  assert.equal(certNames(cert, "127.0.0.1"), true);
  assert.equal(certNames(cert, "server-1.server"), true, "a wildcard covers one label");
  assert.equal(certNames(cert, "a.b.server"), false);
  assert.equal(certNames(cert, "10.0.0.1"), false);
});
