/**
 * N9 (stop-47 review): a users, token or password file or a TLS key was read whatever its owner
 * and mode, so whoever could write it (a topology in a folder others may write) chose the
 * passwords, and a key others could read was theirs. Now each is checked as `data_dir` is
 * (config/owner.ts): another user's (root's is fine), or writable by group or others, is refused,
 * and a key, token or password file others may read too; `dist: …`, exit 2, naming the file and
 * `chmod 600`. The same file made 0600 is taken (the control of every case).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runDist, startDist } from "./helpers/dist.ts";
import { assertUserError } from "./helpers/cli.ts";
import { makePki } from "./helpers/pki.ts";

const USERS = '[users.app]\nmethods = ["add"]\n';

/** `dist server` with `args` gets past its start: it listens (then is stopped). */
async function starts(args: string[], env?: Record<string, string>): Promise<void> {
  const server = await startDist(["server", "--port", "0", ...args], { env });
  await server.stop();
}

Deno.test("a users file others may write is refused, naming it and chmod go-w; 0600 and 0644 are taken", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist_o48_users_" });
  try {
    const users = join(dir, "users.toml");
    await Deno.writeTextFile(users, USERS, { mode: 0o600 });
    for (const mode of [0o664, 0o646]) {
      await Deno.chmod(users, mode);
      const r = await runDist(["server", "--port", "0", "--users", users]);
      const line = assertUserError(r, 2, `users file mode ${mode.toString(8)}`);
      assert.match(line, /may be written by others/, line);
      assert.ok(line.includes(users) && line.includes(`chmod go-w ${users}`), line); // r48 R5
    }
    // Hashes only: others may read it (as /etc/passwd), not write it.
    await Deno.chmod(users, 0o644);
    await starts(["--users", users]);
    await Deno.chmod(users, 0o600);
    await starts(["--users", users]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a token or password file others may read is refused; group may read it (a pod's fsGroup)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist_o48_token_" });
  try {
    const token = join(dir, "token");
    await Deno.writeTextFile(token, "s3cret-token\n", { mode: 0o600 });
    await Deno.chmod(token, 0o644);
    const r = await runDist(["server", "--port", "0", "--token-file", token]);
    const line = assertUserError(r, 2, "token file 644");
    assert.match(line, /^dist: --token-file .* may be read by others \(mode 644\)/, line);
    assert.ok(line.includes(`chmod 600 ${token}`), line);
    const password = join(dir, "password");
    await Deno.writeTextFile(password, "pw\n", { mode: 0o600 });
    await Deno.chmod(password, 0o604);
    const p = await runDist(
      ["client", "--connect", "127.0.0.1:1", "--user", "u", "--password-file", password, "echo"],
    );
    assert.match(assertUserError(p, 2, "password file 604"), /--password-file .* read by others/);
    await Deno.chmod(token, 0o640);
    await starts(["--token-file", token]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a TLS key others may read is refused (dist up says so before starting anything)", async () => {
  const pki = await makePki();
  const dir = await Deno.makeTempDir({ prefix: "dist_o48_key_" });
  try {
    await Deno.chmod(pki.server.key, 0o644);
    const tls = ["--tls-cert", pki.server.cert, "--tls-key", pki.server.key];
    const r = await runDist(["server", "--port", "0", ...tls]);
    assert.match(assertUserError(r, 2, "key 644"), /--tls-key .* may be read by others/);
    const file = join(dir, "t.toml");
    await Deno.writeTextFile(
      file,
      `[[server]]\nport = 0\ntls_cert = "${pki.server.cert}"\ntls_key = "${pki.server.key}"\n`,
    );
    const up = await runDist(["up", file, "--no-dashboard"]);
    const line = assertUserError(up, 2, "dist up, key 644");
    assert.match(line, /^dist: server: tls_key .* may be read by others/, line);
    await Deno.chmod(pki.server.key, 0o600);
    await starts(tls);
  } finally {
    await pki.remove();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a CA file others may write is refused (a client CA planted would make any user); 0644 is taken", async () => {
  const pki = await makePki();
  try {
    const tls = ["--tls-cert", pki.server.cert, "--tls-key", pki.server.key];
    await Deno.chmod(pki.ca, 0o664);
    const r = await runDist(["server", "--port", "0", ...tls, "--tls-client-ca", pki.ca]);
    const line = assertUserError(r, 2, "client CA 664");
    assert.match(line, /^dist: --tls-client-ca .* may be written by others \(mode 664\)/, line);
    assert.ok(line.includes(`chmod go-w ${pki.ca}`), line); // r48 R5: a CA stays readable
    const d = await runDist(["client", "--connect", "127.0.0.1:1", "--tls-ca", pki.ca, "echo"]);
    assert.match(assertUserError(d, 2, "dialer's CA 664"), /--tls-ca .* may be written by others/);
    await Deno.chmod(pki.ca, 0o644); // A certificate is no secret: others may read it.
    await starts([...tls, "--tls-client-ca", pki.ca]);
  } finally {
    await pki.remove();
  }
});

Deno.test({
  name: "a users file of another user's is refused; root's is taken",
  ignore: Deno.uid() !== 0, // Only root can give a file away (and take root's).
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "dist_o48_owner_" });
    try {
      const users = join(dir, "users.toml");
      await Deno.writeTextFile(users, USERS, { mode: 0o600 });
      await Deno.chown(users, 54321, 54321);
      const r = await runDist(["server", "--port", "0", "--users", users]);
      const line = assertUserError(r, 2, "another user's");
      assert.match(line, /belongs to another user \(uid 54321\)/, line);
      assert.match(line, /make it yours \(chown\) and chmod go-w/, line);
      await Deno.chown(users, 0, 0);
      await starts(["--users", users]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("DIST_SECRETS_DIR (what dist export compose sets): its files are taken as mounted", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist_o48_mounted_" });
  try {
    const token = join(dir, "token");
    await Deno.writeTextFile(token, "s3cret-token\n", { mode: 0o600 });
    await Deno.chmod(token, 0o644);
    await starts(["--token-file", token], { DIST_SECRETS_DIR: dir });
    // Only its own files: a sibling folder's name that starts alike is not it.
    const r = await runDist(["server", "--port", "0", "--token-file", token], {
      env: { DIST_SECRETS_DIR: dir.slice(0, -2) },
    });
    assertUserError(r, 2, "outside DIST_SECRETS_DIR", 2); // "in force", then the refusal (r48 R6)
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dist export compose sets DIST_SECRETS_DIR in every service (each mounts the host's topology.toml: h48b V4)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist_o48_compose_" });
  try {
    const file = join(dir, "t.toml");
    await Deno.writeTextFile(
      file,
      '[[server]]\nname = "s"\nport = 5600\ntoken = "s3cret"\n[[broker]]\nname = "b"\nport = 5601\n',
    );
    const r = await runDist(["export", "compose", file]);
    assert.equal(r.code, 0, r.stderr);
    const service = (name: string) => {
      const at = r.stdout.indexOf(`\n  ${name}:\n`);
      const next = r.stdout.slice(at + 4).search(/\n {2}[a-z][\w-]*:\n|\n[a-z]/);
      return r.stdout.slice(at, at + 4 + next);
    };
    assert.match(service("s"), /DIST_SECRETS_DIR: \/run\/secrets/, service("s"));
    assert.match(service("b"), /DIST_SECRETS_DIR: \/run\/secrets/, service("b"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
