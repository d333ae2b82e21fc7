/**
 * Hostile review h47 Q24 (medium): `tls = "auto"` writes the cluster CA as
 * two plain writes (launch/tls.ts writePair: ca.key, then ca.crt), neither
 * atomic. A full disk (or a kill) between them leaves a new ca.key beside an
 * empty ca.crt; the run says `UNAVAILABLE: Cannot make the TLS files: No
 * space left on device`, and every later `dist up` of the file, with room
 * again, refuses for good: `ca.crt is not a certificate: dist up signs with
 * no other; remove ca.crt and ca.key to make a new CA` — a transient full
 * disk turned into a manual repair, and the message blames a certificate
 * dist never finished writing. Seen on a 64 KiB tmpfs with one page free:
 * ca.key 241 bytes, ca.crt 0 bytes. This test sets up that same pair (a
 * sound key, an empty certificate: what the full disk left) without a mount.
 *
 * Expected: a CA that was never completely written is made again (write
 * both to temporary names, rename the certificate last; at start, a pair
 * whose certificate is empty or absent is no CA yet).
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";
import { topologyFile } from "./helpers/up.ts";

Deno.test('h47 Q24: tls = "auto" recovers from a CA pair a full disk left half written', async () => {
  const state = await Deno.makeTempDir({ prefix: "dist-h47-q24-" });
  await Deno.chmod(state, 0o700);
  const file = await topologyFile(`[security]\ntls = "auto"\n\n[[server]]\nname = "s"\nport = 0\n`);
  const env = { DIST_STATE_DIR: state };
  try {
    const plan = await runDist(["up", file, "--dry-run", "--json"], { env });
    const caPath = /--tls-ca=([^"]+\/ca\.crt)/.exec(plan.stdout)?.[1];
    assert.ok(caPath !== undefined, plan.stdout + plan.stderr);
    const dir = caPath.slice(0, -"/ca.crt".length);
    // What the full disk left: the key written, the certificate created empty.
    const made = await runDist(["cert", "ca", "--dir", `${state}/made`]);
    assert.equal(made.code, 0, made.stderr);
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    await Deno.copyFile(`${state}/made/ca.key`, `${dir}/ca.key`);
    await Deno.chmod(`${dir}/ca.key`, 0o600);
    await Deno.writeTextFile(`${dir}/ca.crt`, "", { mode: 0o644 });
    const r = await runDist(["up", file, "--no-dashboard", "--duration", "2s"], {
      env,
      timeoutMs: 40_000,
    });
    assert.doesNotMatch(
      r.stderr + r.stdout,
      /is not a certificate/,
      `dist up refuses a CA it never finished writing: ${r.stderr.trim()}`,
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
  } finally {
    await Deno.remove(file);
    await Deno.remove(state, { recursive: true });
  }
});
