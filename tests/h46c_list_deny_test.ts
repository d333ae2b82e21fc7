/**
 * hostile46c F2: a `resolve` grant with a deny list (`{ allow = ["*"],
 * deny = ["secret*"] }`) refuses `binder.lookup`, `binder.list` and
 * `binder.watch` of a denied service, but `binder.list` with no service (every
 * service) is checked as the name `*`, which the allow glob takes and no deny
 * pattern names: it answered the denied service's instances, meta and all.
 * The broker refuses a subscription to `/` that overlaps a deny rather than
 * filter it; a list of every service must likewise either leave the denied
 * services out or be refused.
 */
import assert from "node:assert/strict";
import { hashToken } from "../auth/mod.ts";
import { parseAddress } from "../config/mod.ts";
import { dial, DistError, type Peer } from "../wire/mod.ts";
import { startDist } from "./helpers/dist.ts";

const T = { app: "app-token-0123456789", srv: "srv-token-0123456789" };
const USERS = `
[users.app]
token = "${hashToken(T.app)}"
resolve = { allow = ["*"], deny = ["secret*"] }

[users.srv]
token = "${hashToken(T.srv)}"
register = ["*"]
`;

function as(address: string, token: string): Promise<Peer> {
  return dial(parseAddress(address), { role: "client", name: "t", credentials: { token } });
}

Deno.test("hostile46c F2: binder.list of every service does not hand out a service the user is denied", async () => {
  const file = await Deno.makeTempFile({ suffix: ".toml" });
  await Deno.writeTextFile(file, USERS, { mode: 0o600 });
  const binder = await startDist(["binder", "--port", "0", "--users", file]);
  const peers: Peer[] = [];
  try {
    const srv = await as(binder.address, T.srv);
    peers.push(srv);
    await srv.call("binder.register", {
      service: "secret-db",
      host: "10.1.2.3",
      port: 5432,
      meta: { password: "hunter2" },
    });
    await srv.call("binder.register", { service: "compute", host: "127.0.0.1", port: 5557 });
    const app = await as(binder.address, T.app);
    peers.push(app);
    // Denied by name, as README says.
    await assert.rejects(
      app.call("binder.list", { service: "secret-db" }),
      (e: DistError) => e.code === "UNAUTHORIZED",
    );
    // Every service: refused, or without the denied one.
    let listed: { service: string; meta?: unknown }[] = [];
    try {
      const page = await app.call("binder.list", {}) as { instances: typeof listed };
      listed = page.instances;
    } catch (err) {
      assert.equal((err as DistError).code, "UNAUTHORIZED", String(err));
    }
    const leaked = listed.filter((i) => i.service.startsWith("secret"));
    assert.deepEqual(
      leaked,
      [],
      `user "app", denied resolve of secret*, listed ${JSON.stringify(leaked)}`,
    );
  } finally {
    for (const p of peers) p.close();
    await binder.stop();
    await Deno.remove(file);
  }
});
