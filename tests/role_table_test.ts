/**
 * roles/load.ts against roles/mod.ts: main.ts loads the one role a command
 * names, so each loader must give the very role of the whole table, and
 * the table must have no role without a loader.
 */
import assert from "node:assert/strict";
import { ROLES } from "../roles/mod.ts";
import { ROLE_LOADERS, rolesFor } from "../roles/load.ts";

Deno.test("ROLE_LOADERS loads each role of ROLES, and no other", async () => {
  assert.deepEqual(Object.keys(ROLE_LOADERS).sort(), Object.keys(ROLES).sort());
  for (const [name, load] of Object.entries(ROLE_LOADERS)) {
    assert.equal(await load(), ROLES[name], name);
  }
});

Deno.test("rolesFor() gives the named role alone, and every role where argv can name another", async () => {
  assert.deepEqual(await rolesFor(["client", "--connect", "h:1", "echo", "x"]), {
    client: ROLES.client,
  });
  for (
    const argv of [
      [],
      ["--help"],
      ["--log-level", "debug", "client"],
      ["client", "--role", "server"],
      ["server", "--role=server"],
      ["server", "--config", "t.toml", "--name", "s1"],
      ["nosuchrole"],
      ["constructor"],
    ]
  ) {
    assert.equal(await rolesFor(argv), ROLES, argv.join(" "));
  }
});
