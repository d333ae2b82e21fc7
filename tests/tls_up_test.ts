/**
 * `[security] tls = "auto"` (issue 15): the default topology under
 * `dist up` with one more block serves its normal traffic in TLS on every
 * link (clients through the balancer and through binders, workers,
 * replication, publish and subscribe); a plain dialer is refused by its
 * listeners with a log line, a dialer with the cluster CA is served, and a
 * second run keeps the CA and certificates of the first. And the block's
 * mistakes are named with file and line.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import mqtt from "mqtt";
import { dial, DistError } from "../wire/mod.ts";
import { linesOf, movedTopology, startUp, stopCleanly, topologyFile } from "./helpers/up.ts";
import { runDist } from "./helpers/dist.ts";

const AUTO = '\n[security]\ntls = "auto"\n';

Deno.test('dist up with [security] tls = "auto" serves the default topology in TLS, and keeps its CA', async () => {
  const state = await Deno.makeTempDir({ prefix: "dist-tls-up-" });
  // The default topology's MQTT port included: it speaks TLS with the broker's files.
  const file = await topologyFile(movedTopology() + AUTO);
  const env = { DIST_STATE_DIR: state };
  try {
    const up = startUp([file, "--no-dashboard"], { env });
    let stdout: string;
    let dir: string;
    try {
      const [, made] = await up.waitFor(/Made a cluster CA in (\S+) /);
      dir = made;
      await up.waitFor(/Made TLS certificates for broker, binder-1, binder-2, server-1/);
      // The normal traffic of the default topology, every link in TLS.
      await up.waitFor(/^client +\| 10 requests: 10 ok, 0 errors/m, 40_000);
      await up.waitFor(/^resolver +\| 6 requests: 6 ok, 0 errors/m, 40_000);
      await up.waitFor(/^consumer +\| \/telephony\/moldcell /m);
      await up.waitFor(/^consumer +\| \/currency /m);
      const [, host, port] = await up.waitFor(/balancer ready at ([\d.]+):(\d+)/);
      const address = { host, port: Number(port) };
      // A plain dialer is told the port speaks TLS, and the balancer logs it.
      await assert.rejects(
        dial(address, { role: "test", name: "plain" }),
        (err: unknown) =>
          err instanceof DistError && /speaks TLS: dial it with --tls-ca/.test(err.message),
      );
      await up.waitFor(
        /^balancer +\| .*\[WRN\].*TLS connection from .* closed: it sent plain TCP/m,
      );
      // A dialer with the cluster's CA is served.
      const ca = await Deno.readTextFile(join(dir, "ca.crt"));
      const peer = await dial(address, { role: "test", name: "t", tls: { ca } });
      try {
        assert.equal(await peer.call("add", { a: 2, b: 3 }), 5);
      } finally {
        peer.close();
      }
      // The broker's MQTT port speaks TLS with the same certificate (MQTT.js, mqtts://).
      const [, mqttHost, mqttPort] = await up.waitFor(/MQTT on ([\d.]+):(\d+)/);
      const m = await mqtt.connectAsync(`mqtts://${mqttHost}:${mqttPort}`, {
        ca,
        rejectUnauthorized: true,
        reconnectPeriod: 0,
        connectTimeout: 5000,
      });
      try {
        const got = new Promise<string>((resolve) => m.on("message", (_t, p) => resolve(`${p}`)));
        await m.subscribeAsync("tls/check", { qos: 1 });
        await m.publishAsync("tls/check", "over TLS", { qos: 1 });
        assert.equal(await got, "over TLS");
      } finally {
        await m.endAsync();
      }
      // dist status dials every instance with the cluster's CA.
      const status = await runDist(["status", file], { env });
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.stdout, /^balancer +balancer +[\d.:]+ +up .*requests=\d+/m);
      assert.match(status.stdout, /^binder-2 +binder +[\d.:]+ +up .*instances=3/m);
      stdout = (await stopCleanly(up)).stdout;
    } finally {
      await up.stop();
    }
    assert.deepEqual(linesOf(stdout, "worker-1").filter((l) => l.includes("[ERR]")), []);
    assert.doesNotMatch(stdout, /\[ERR\]/);
    // The next run finds the CA and the certificates: it makes none.
    const caBefore = await Deno.readTextFile(join(dir, "ca.crt"));
    const again = startUp([file, "--no-dashboard"], { env });
    try {
      await again.waitFor(/^client +\| 10 requests: 10 ok, 0 errors/m, 40_000);
      const { stdout: second } = await stopCleanly(again);
      assert.doesNotMatch(second, /Made a cluster CA|Made TLS certificates/);
    } finally {
      await again.stop();
    }
    assert.equal(await Deno.readTextFile(join(dir, "ca.crt")), caBefore);
    assert.equal((await Deno.stat(join(dir, "ca.key"))).mode! & 0o077, 0);
  } finally {
    await Deno.remove(file);
    await Deno.remove(state, { recursive: true });
  }
});

Deno.test("[security] mistakes are named with the file, line and key", async () => {
  const cases: [string, RegExp][] = [
    ['tls = "yes"', /line 2: security\.tls: "yes" is not one of "auto", "files", "off"/],
    ['tls = "auto"\nca = "x.crt"', /line 3: security\.ca: only with tls = "files"/],
    [
      'tls = "files"\nca = "ca.crt"\ncert = "a.crt"\nkey = "{name}.key"',
      /security\.cert: must contain \{name\}/,
    ],
    ['tls = "files"\nca = "ca.crt"', /security\.tls = "files" needs security\.cert/],
    ['tls = "auto"\nmutual = true', /security\.mutual: unknown key/],
  ];
  for (const [block, expected] of cases) {
    const file = await topologyFile(`[security]\n${block}\n\n[[server]]\nport = 0\n`);
    try {
      const r = await runDist(["up", file, "--dry-run"]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, expected);
    } finally {
      await Deno.remove(file);
    }
  }
});

Deno.test('[security] tls = "files" gives each instance its own files, {name} replaced', async () => {
  const file = await topologyFile(
    '[security]\ntls = "files"\nca = "pki/ca.crt"\ncert = "pki/{name}.crt"\n' +
      'key = "pki/{name}.key"\n\n[[server]]\nreplicas = 2\nport = 0\n\n' +
      '[[client]]\nconnect = "server-1"\nrandom = 1\n',
  );
  try {
    const r = await runDist(["up", file, "--dry-run"]);
    assert.equal(r.code, 0, r.stderr);
    // Relative to the topology file's folder, not to where dist up runs (F7).
    const pki = join(dirname(file), "pki");
    for (const name of ["server-1", "server-2"]) {
      assert.match(
        r.stdout,
        new RegExp(
          `--tls-ca=${pki}/ca\\.crt --tls-cert=${pki}/${name}\\.crt --tls-key=${pki}/${name}\\.key`,
        ),
      );
    }
    // A client dials only: the CA, no certificate.
    const client = r.stdout.split("\n").find((l) => l.trim().startsWith("client"))!;
    assert.match(client, /--tls-ca=/);
    assert.doesNotMatch(client, /--tls-cert/);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test('tls = "auto" signs with no ca.crt that is not a CA, and "files" gives no instance the CA\'s files (hostile45c K-C4)', async () => {
  const state = await Deno.makeTempDir({ prefix: "dist-tls-ca-" });
  const dir = join(state, "pki");
  await Deno.mkdir(dir, { mode: 0o700 }); // Not group-writable under a umask of 002.
  const { issueCert, makeCa } = await import("../cert/mod.ts");
  // A leaf where the CA should be (what an instance named "ca" once wrote there).
  const leaf = await issueCert(await makeCa({ name: "other" }), {
    name: "ca",
    hosts: ["127.0.0.1"],
  });
  await Deno.writeTextFile(join(dir, "ca.crt"), leaf.cert, { mode: 0o600 });
  await Deno.writeTextFile(join(dir, "ca.key"), leaf.key, { mode: 0o600 });
  const auto = await topologyFile(
    `[security]\ntls = "auto"\ndir = "${dir}"\n\n[[server]]\nname = "s"\nport = 0\n`,
  );
  const files = await topologyFile(
    '[security]\ntls = "files"\nca = "pki/ca.crt"\ncert = "pki/{name}.crt"\n' +
      'key = "pki/{name}.key"\n\n[[server]]\nname = "ca"\nport = 0\n',
  );
  try {
    const r = await runDist(["up", auto, "--no-dashboard", "--duration", "2s"], {
      env: { DIST_STATE_DIR: state },
    });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /ca\.crt is not a CA certificate/);
    assert.equal(await Deno.readTextFile(join(dir, "ca.crt")), leaf.cert);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["ca.crt", "ca.key"]);
    const dry = await runDist(["up", files, "--dry-run"]);
    assert.equal(dry.code, 2, dry.stdout + dry.stderr);
    assert.match(dry.stderr, /ca's certificate would be the CA's .*pki\/ca\.crt/);
  } finally {
    await Deno.remove(auto);
    await Deno.remove(files);
    await Deno.remove(state, { recursive: true });
  }
});
