/**
 * hostile45c K-C4: under `[security] tls = "auto"` each listening
 * instance's certificate and key go to `DIR/<name>.crt` and `DIR/<name>.key`
 * beside the cluster CA's `DIR/ca.crt` and `DIR/ca.key`. An instance named
 * `ca` (a valid name: a server in California) overwrites the CA with its
 * own leaf certificate and key: the CA's key is lost for good, every dialer
 * trusts a leaf (CA:FALSE) and refuses every listener, and every later run
 * of the file signs with that leaf.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { runDist } from "./helpers/dist.ts";
import { freeRange, topologyFile } from "./helpers/up.ts";

Deno.test('hostile45c K-C4: an instance named "ca" under tls = "auto" keeps the cluster CA a CA, and is served or refused by name', async () => {
  const state = await Deno.makeTempDir({ prefix: "dist-k-c4-" });
  const dir = join(state, "pki");
  const port = freeRange(1);
  const file = await topologyFile(`
[security]
tls = "auto"
dir = "${dir}"

[[server]]
name = "ca"
port = ${port}

[[client]]
name = "client"
connect = "ca"
random = 3
restart = "no"
`);
  try {
    const r = await runDist(["up", file, "--no-dashboard", "--duration", "8s"], {
      env: { DIST_STATE_DIR: state },
      timeoutMs: 40_000,
    });
    // The file dist up tells dialers outside it to trust (DIR/ca.crt today).
    const told = r.stdout.match(/dialers outside dist up trust (\S+)\)/)?.[1] ??
      join(dir, "ca.crt");
    let isCa: boolean | string = "no CA file";
    try {
      isCa = new X509Certificate(await Deno.readTextFile(told)).ca;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    // Refused at its line before anything is made (exit 2), or run as any other name (exit 0,
    // the client answered): never a cluster whose CA is gone.
    const refused = r.code === 2 && /\bca\b/.test(r.stderr);
    const served = r.code === 0 && isCa === true;
    assert.ok(
      refused && isCa !== false || served,
      `exit ${r.code}, ${told} is a CA: ${isCa}; stderr: ${r.stderr.slice(-600)}`,
    );
  } finally {
    await Deno.remove(file);
    await Deno.remove(state, { recursive: true });
  }
});
