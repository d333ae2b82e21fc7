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
    await Deno.writeTextFile(users, '[users.compute]\nregister = ["compute"]\n');
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
