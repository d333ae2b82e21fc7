/**
 * F7's rest: a topology's relative paths (`users`, `[security]`'s
 * `tls = "files"` paths and `dir`, `data_dir`, `log_file`) are taken from
 * the file's folder, not from wherever `dist up` runs: the same file
 * started from another folder reads the same users file and certificates.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runDist } from "./helpers/dist.ts";
import { linesOf, startUp } from "./helpers/up.ts";

Deno.test("dist up --dry-run from another folder: the file's relative paths are its folder's", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist_paths_" });
  const elsewhere = await Deno.makeTempDir({ prefix: "dist_paths_cwd_" });
  try {
    const file = join(dir, "cluster.toml");
    await Deno.writeTextFile(
      file,
      [
        "[security]",
        'tls = "files"',
        'ca = "pki/ca.crt"',
        'cert = "pki/{name}.crt"',
        'key = "pki/{name}.key"',
        "[[server]]",
        "port = 0",
        'users = "users.toml"',
        'log_file = "logs/server.log"',
        "[[broker]]",
        "port = 0",
        'data_dir = "data/broker"',
        "[[binder]]",
        "port = 0",
        'data_dir = "/srv/dist/binder"',
      ].join("\n") + "\n",
      { mode: 0o600 },
    );
    const r = await runDist(["up", file, "--dry-run"], { cwd: elsewhere });
    assert.equal(r.code, 0, r.stderr);
    const line = (name: string) => r.stdout.split("\n").find((l) => l.trim().startsWith(name))!;
    const server = line("server");
    assert.ok(server.includes(`--users=${dir}/users.toml`), server);
    assert.ok(server.includes(`--log-file=${dir}/logs/server.log`), server);
    assert.ok(server.includes(`--tls-ca=${dir}/pki/ca.crt`), server);
    assert.ok(server.includes(`--tls-cert=${dir}/pki/server.crt`), server);
    assert.ok(server.includes(`--tls-key=${dir}/pki/server.key`), server);
    assert.ok(line("broker").includes(`--data-dir=${dir}/data/broker`), line("broker"));
    // An absolute path stays as written.
    assert.ok(line("binder").includes("--data-dir=/srv/dist/binder"), line("binder"));
    assert.doesNotMatch(r.stdout, new RegExp(elsewhere));
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(elsewhere, { recursive: true });
  }
});

Deno.test("dist up from another folder: a server's relative users file is the one beside the topology", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist_paths_" });
  const elsewhere = await Deno.makeTempDir({ prefix: "dist_paths_cwd_" });
  try {
    const users = join(dir, "users.toml");
    await Deno.writeTextFile(
      users,
      '[users.app]\nmethods = ["add", "sub", "mul", "div", "sum"]\n',
      { mode: 0o600 },
    );
    const set = await runDist(["passwd", users, "app", "--cost", "10"], { stdin: "app-pass\n" });
    assert.equal(set.code, 0, set.stderr);
    const file = join(dir, "cluster.toml");
    await Deno.writeTextFile(
      file,
      [
        "[[server]]",
        "port = 0",
        'users = "users.toml"',
        "[[client]]",
        'connect = "server"',
        'user = "app"',
        'password = "app-pass"',
        "random = 3",
        "json = true",
        'restart = "no"',
      ].join("\n") + "\n",
      { mode: 0o600 },
    );
    const up = startUp([file], { cwd: elsewhere });
    try {
      await up.waitFor(/^client +\| .*"summary"/m);
      const out = up.stdout();
      assert.equal(JSON.parse(linesOf(out, "client").at(-1)!).summary.ok, 3, out + up.stderr());
    } finally {
      await up.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(elsewhere, { recursive: true });
  }
});

Deno.test("dist up refuses an explicit data_dir others may write, or a link (F7)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist_paths_" });
  try {
    const open = join(dir, "open");
    await Deno.mkdir(open);
    await Deno.chmod(open, 0o777);
    await Deno.symlink(open, join(dir, "link"));
    for (const [data, why] of [["open", /may be written by others/], ["link", /symbolic link/]]) {
      const file = join(dir, `${data}.toml`);
      await Deno.writeTextFile(file, `[[broker]]\nport = 0\ndata_dir = "${data}"\n`, {
        mode: 0o600,
      });
      const r = await runDist(["up", file, "--duration", "1s"], { timeoutMs: 20_000 });
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.match(r.stderr, /^dist: broker: data_dir \S+ /m);
      assert.match(r.stderr, why as RegExp);
      assert.doesNotMatch(r.stdout, /Starting/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
