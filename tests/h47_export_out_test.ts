/**
 * Hostile review h47 Q17 (medium): `dist export … --out DIR` and secrets.
 *
 * (a) The k8s export's `dist.yaml` holds the topology's Secrets (the token
 * and every instance's private key, base64) but is written as an ordinary
 * file: 0644 under the usual umask, readable by every local user, while the
 * systemd export writes each secret 0600 and compose its secrets in a 0700
 * folder (export/files.ts: "the secret is never readable by others").
 *
 * (b) The files are written through whatever is at their paths: a symlink
 * planted at `DIR/compose.yaml` (a shared `--out /tmp/export`) has its
 * target overwritten with the export (as root: any file), and a planted
 * `DIR/secrets` link sends the keys into a folder its planter owns (who may
 * then swap the CA and keys before they are installed). `tls = "auto"`'s
 * folder refuses exactly this (links, folders others may write: hostile46c
 * F7); `--out` does not.
 *
 * Expected: (a) dist.yaml with Secrets is written 0600; (b) a planted link
 * is refused (or replaced), never written through.
 */
import assert from "node:assert/strict";
import { runDist } from "./helpers/dist.ts";

const SECURE =
  `[defaults]\ntoken = "h47-q17-token-0123456789"\n\n[[server]]\nname = "s"\nport = 44780\n`;

Deno.test("h47 Q17a: the k8s export's file of Secrets is readable by its owner only", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-h47-q17a-" });
  try {
    await Deno.writeTextFile(`${dir}/t.toml`, SECURE, { mode: 0o600 }); // It holds the token.
    const r = await runDist(["export", "k8s", `${dir}/t.toml`, "--out", `${dir}/out`]);
    assert.equal(r.code, 0, r.stderr);
    const text = await Deno.readTextFile(`${dir}/out/dist.yaml`);
    assert.match(text, /kind: Secret/);
    const mode = (await Deno.stat(`${dir}/out/dist.yaml`)).mode! & 0o777;
    assert.equal(
      mode & 0o077,
      0,
      `dist.yaml holds the token and keys and is mode ${mode.toString(8)}: others may read it`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("h47 Q17b: dist export --out does not write through a link planted in the folder", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-h47-q17b-" });
  try {
    await Deno.writeTextFile(`${dir}/t.toml`, SECURE, { mode: 0o600 }); // It holds the token.
    await Deno.writeTextFile(`${dir}/victim`, "precious\n");
    await Deno.mkdir(`${dir}/out`);
    await Deno.symlink(`${dir}/victim`, `${dir}/out/compose.yaml`);
    await runDist(["export", "compose", `${dir}/t.toml`, "--out", `${dir}/out`]);
    assert.equal(
      await Deno.readTextFile(`${dir}/victim`),
      "precious\n",
      "the export overwrote the target of a link planted at --out/compose.yaml",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("h47 Q17b: --out refuses a folder others may write, and a planted secrets link", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-h47-q17c-" });
  try {
    await Deno.writeTextFile(`${dir}/t.toml`, SECURE, { mode: 0o600 }); // It holds the token.
    // A link at compose.yaml is replaced by the file, its target untouched.
    await Deno.mkdir(`${dir}/out`);
    await Deno.writeTextFile(`${dir}/victim`, "precious\n");
    await Deno.symlink(`${dir}/victim`, `${dir}/out/compose.yaml`);
    const ok = await runDist(["export", "compose", `${dir}/t.toml`, "--out", `${dir}/out`]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((await Deno.lstat(`${dir}/out/compose.yaml`)).isFile, true);
    assert.match(await Deno.readTextFile(`${dir}/out/compose.yaml`), /dist export compose/);
    assert.deepEqual(
      [...Deno.readDirSync(`${dir}/out`)].filter((e) => e.name.endsWith(".tmp")),
      [],
    );
    // A folder others may write.
    await Deno.mkdir(`${dir}/open`);
    await Deno.chmod(`${dir}/open`, 0o777);
    const open = await runDist(["export", "compose", `${dir}/t.toml`, "--out", `${dir}/open`]);
    assert.equal(open.code, 2, open.stderr);
    assert.match(open.stderr, /open may be written by others \(mode 777\)/);
    assert.deepEqual([...Deno.readDirSync(`${dir}/open`)], []);
    // A secrets folder that is a link to someone's folder.
    await Deno.mkdir(`${dir}/theirs`);
    await Deno.mkdir(`${dir}/out2`);
    const theirsMode = (await Deno.stat(`${dir}/theirs`)).mode! & 0o777;
    await Deno.symlink(`${dir}/theirs`, `${dir}/out2/secrets`);
    const link = await runDist(["export", "compose", `${dir}/t.toml`, "--out", `${dir}/out2`]);
    assert.equal(link.code, 2, link.stderr);
    assert.match(link.stderr, /secrets is a symbolic link/);
    assert.deepEqual([...Deno.readDirSync(`${dir}/theirs`)], []);
    assert.equal((await Deno.stat(`${dir}/theirs`)).mode! & 0o777, theirsMode, "chmodded");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
