/**
 * h46d D6 and `dist up`: a dialer with credentials refuses a listener that
 * welcomes it without a challenge, so the launcher hands credentials only
 * where they are checked. A topology with no security set comes up though
 * the launcher's environment holds DIST_USER and DIST_PASSWORD (its
 * children would otherwise inherit them and refuse every open listener),
 * and an instance that dials with a password but takes none is probed
 * without one.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { runDist } from "./helpers/dist.ts";
import { linesOf, withUp } from "./helpers/up.ts";

Deno.test("dist up of an open topology: the launcher's DIST_USER and DIST_PASSWORD are not handed down", async () => {
  const topology = [
    "[[server]]",
    "port = 0",
    "[[client]]",
    'connect = "server"',
    "random = 3",
    "json = true",
    'restart = "no"',
  ].join("\n");
  await withUp(topology, [], async (up) => {
    await up.waitFor(/^client +\| .*"summary"/m);
    const out = up.stdout();
    assert.equal(JSON.parse(linesOf(out, "client").at(-1)!).summary.ok, 3, out + up.stderr());
    assert.doesNotMatch(out + up.stderr(), /did not authenticate/);
  }, { env: { DIST_USER: "app", DIST_PASSWORD: "app-pass" } });
});

Deno.test("dist up: a server that registers with a password but checks none is ready (probed without it)", async () => {
  const dir = await Deno.makeTempDir();
  const users = `${dir}/users.toml`;
  try {
    await Deno.writeTextFile(users, '[users.compute]\nregister = ["compute"]\n', { mode: 0o600 });
    const set = await runDist(["passwd", users, "compute", "--cost", "10"], {
      stdin: "compute-pass\n",
    });
    assert.equal(set.code, 0, set.stderr);
    const topology = [
      "[[binder]]",
      "port = 0",
      `users = "${users}"`,
      "[[server]]",
      "port = 0",
      'service = "compute"',
      'binders = ["binder"]',
      'user = "compute"',
      'password = "compute-pass"',
    ].join("\n");
    await withUp(topology, [], async (up) => {
      await up.waitFor(/^dist up: All 2 ready/m);
      assert.doesNotMatch(up.stdout() + up.stderr(), /did not authenticate/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dist export: an instance that dials with a password but checks none is probed without it (compose, systemd)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist_export_welcome_" });
  try {
    await Deno.writeTextFile(join(dir, "users.toml"), '[users.compute]\nregister = ["compute"]\n', {
      mode: 0o600,
    });
    const set = await runDist(["passwd", join(dir, "users.toml"), "compute", "--cost", "10"], {
      stdin: "compute-pass\n",
    });
    assert.equal(set.code, 0, set.stderr);
    const file = join(dir, "cluster.toml");
    await Deno.writeTextFile(
      file,
      [
        "[[binder]]",
        "port = 7500",
        'users = "users.toml"',
        "[[server]]",
        "port = 7501",
        'service = "compute"',
        'binders = ["binder"]',
        'user = "compute"',
        'password = "compute-pass"',
      ].join("\n") + "\n",
      { mode: 0o600 },
    );
    const out = join(dir, "c");
    const compose = await runDist(["export", "compose", file, "--out", out]);
    assert.equal(compose.code, 0, compose.stderr);
    const text = await Deno.readTextFile(join(out, "compose.yaml"));
    // deno-lint-ignore no-explicit-any
    const services = (parseYaml(text) as any).services;
    const health = (services.server.healthcheck.test as string[]).join(" ");
    assert.doesNotMatch(health, /--user|--password-file/, health);
    const systemd = await runDist(["export", "systemd", file, "--out", join(dir, "u")]);
    assert.equal(systemd.code, 0, systemd.stderr);
    const units = [...Deno.readDirSync(join(dir, "u"))].map((e) => e.name);
    const unit = units.find((n) => n.includes("server") && n.endsWith(".service"))!;
    const serverUnit = await Deno.readTextFile(join(dir, "u", unit));
    const post = serverUnit.split("\n").find((l) => l.startsWith("ExecStartPost="))!;
    assert.doesNotMatch(post, /--user|--password-file/, post);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
