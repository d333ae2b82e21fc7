/**
 * hostile45c K-C1: a binder checks a reported instance by dialing the
 * address its registrant gave, and that dial carries the binder's own
 * credentials (`--token`, or `--user`/`--password`) and says "binder". So a
 * user allowed to register and resolve one service of its own, and nothing
 * else, learns the binder's credential by registering an instance at a
 * port it listens on and reporting it down, and with it pushes a
 * `binder.sync` removal of every other service's live servers: issue 15's
 * eviction, back under a users file.
 */
import assert from "node:assert/strict";
import { hashToken } from "../auth/mod.ts";
import { parseAddress } from "../config/mod.ts";
import { dial, type DistError, type Peer } from "../wire/mod.ts";
import { startService } from "./helpers/binder.ts";
import { startDist } from "./helpers/dist.ts";
import { RawReader } from "./helpers/raw.ts";

const T = {
  peer: "peer-token-k-c1-0123456789",
  srv: "srv-token-k-c1-0123456789",
  look: "look-token-k-c1-0123456789",
  evil: "evil-token-k-c1-0123456789",
};

const USERS = `
[users.peer]
token = "${hashToken(T.peer)}"
roles = ["binder"]

[users.srv]
token = "${hashToken(T.srv)}"
register = ["compute"]

[users.look]
token = "${hashToken(T.look)}"
resolve = ["compute"]

[users.evil]
token = "${hashToken(T.evil)}"
register = ["evil"]
resolve = ["evil"]
`;

function as(address: string, token: string, role = "client"): Promise<Peer> {
  return dial(parseAddress(address), {
    role,
    name: `k-c1-${role}`,
    credentials: { token },
    connectTimeoutMs: 5000,
    timeoutMs: 5000,
  });
}

/** Listens on a free port and keeps the hello (first frame) of every dialer. */
function squatter() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const hellos: Record<string, unknown>[] = [];
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      new RawReader(conn).json(3000).then((h) => {
        if (h !== null) hellos.push(h);
        conn.close();
      }).catch(() => {});
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    hellos,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await accepting;
    },
  };
}

Deno.test("hostile45c K-C1: a registrant of its own service cannot learn a binder's credential by reporting its instance down, nor evict other services", async () => {
  const file = await Deno.makeTempFile({ suffix: ".toml" });
  await Deno.writeTextFile(file, USERS, { mode: 0o600 });
  // The binder dials (peers, checks) as the binders' user.
  const binder = await startDist(["binder", "--port", "0", "--users", file, "--token", T.peer]);
  const server = await startService("compute", binder.address, ["--token", T.srv]);
  const squat = squatter();
  try {
    // The attacker: only register and resolve "evil".
    const evil = await as(binder.address, T.evil);
    const { id } = await evil.call("binder.register", {
      service: "evil",
      host: "127.0.0.1",
      port: squat.port,
      ttl_ms: 60_000,
    }) as { id: string };
    await evil.call("binder.report_down", { id });
    evil.close();
    const secrets = squat.hellos.map((h) => h.token ?? h.password).filter((s) => s !== undefined);
    // What the squatter could now do with what it was sent.
    let evicted = false;
    for (const secret of secrets) {
      try {
        const forger = await as(binder.address, String(secret), "binder");
        const empty = { x: Array(64).fill(0), n: Array(64).fill(0) };
        const answer = await forger.call("binder.diff", { node: "evil", digest: empty }) as {
          records: { id: string; v: [number, number, string] }[];
        };
        const live = answer.records.filter((r) => r.id.startsWith("compute@"));
        await forger.call("binder.sync", {
          node: "evil",
          records: live.map((r) => ({
            ...r,
            v: [r.v[0] + 30_000, 0, "evil"],
            removed: "deregistered",
          })),
        });
        forger.close();
        evicted = true;
      } catch (err) {
        assert.ok((err as DistError).code !== undefined, String(err));
      }
    }
    const look = await as(binder.address, T.look);
    let found = true;
    try {
      await look.call("binder.lookup", { service: "compute" });
    } catch (err) {
      if ((err as DistError).code !== "NOT_FOUND") throw err;
      found = false;
    }
    look.close();
    assert.deepEqual(
      { credentialsSentToTheReportedAddress: secrets.length, evicted, computeFound: found },
      { credentialsSentToTheReportedAddress: 0, evicted: false, computeFound: true },
    );
  } finally {
    await squat.close();
    await server.stop();
    await binder.stop();
    await Deno.remove(file);
  }
});
