/**
 * Permissions of a users file against a user who looks for another name of
 * a method it is denied. A server checks an operation under its own name
 * (`divisione` is `div`), but a balancer checked what it forwards under the
 * name the client sent: a user denied `div` got its division through the
 * balancer by calling `divisione`.
 */
import assert from "node:assert/strict";
import { hashToken } from "../auth/mod.ts";
import { parseAddress } from "../config/mod.ts";
import { dial, DistError, type Peer } from "../wire/mod.ts";
import { startDist } from "./helpers/dist.ts";
import { startBalancer } from "./helpers/balancer.ts";

const ADMIN = "admin-token-0123456789";
const NODIV = "nodiv-token-0123456789";
const ADDONLY = "addonly-token-0123456789";

const USERS = `
[users.admin]
token = "${hashToken(ADMIN)}"
methods = ["*"]

[users.nodiv]
token = "${hashToken(NODIV)}"
methods = { allow = ["*"], deny = ["div"] }

[users.addonly]
token = "${hashToken(ADDONLY)}"
methods = ["add"]
`;

function as(address: string, token: string): Promise<Peer> {
  return dial(parseAddress(address), { role: "client", name: "attack", credentials: { token } });
}

async function denied(p: Promise<unknown>, message: string): Promise<void> {
  await assert.rejects(p, (e: DistError) => {
    assert.equal(`${e.code}: ${e.message}`, `UNAUTHORIZED: ${message}`);
    return true;
  });
}

for (const passthrough of [true, false]) {
  Deno.test(`attack: a method denied is denied under its alias through a balancer${passthrough ? "" : " (--no-passthrough)"}`, async () => {
    const file = await Deno.makeTempFile({ suffix: ".toml" });
    await Deno.writeTextFile(file, USERS, { mode: 0o600 });
    const server = await startDist(["server", "--port", "0", "--token", ADMIN]);
    const lb = await startBalancer([server], [
      "--users",
      file,
      "--token",
      ADMIN,
      ...(passthrough ? [] : ["--no-passthrough"]),
    ]);
    const peers: Peer[] = [];
    try {
      const nodiv = await as(lb.address, NODIV);
      peers.push(nodiv);
      assert.equal(await nodiv.call("mul", { a: 6, b: 3 }), 18);
      const message = 'User "nodiv" may not call div (denied by "div")';
      await denied(nodiv.call("div", { a: 6, b: 3 }), message);
      await denied(nodiv.call("divisione", { a: 6, b: 3 }), message);
      // An alias of an allowed method is allowed, as on a server.
      const addonly = await as(lb.address, ADDONLY);
      peers.push(addonly);
      assert.equal(await addonly.call("somma", { a: 2, b: 3 }), 5);
      await denied(
        addonly.call("sottrazione", { a: 2, b: 3 }),
        'User "addonly" may not call sub (not allowed)',
      );
    } finally {
      for (const p of peers) p.close();
      await lb.stop();
      await server.stop();
      await Deno.remove(file);
    }
  });
}

Deno.test("attack: a topic without its leading slash is checked as the topic it names", async () => {
  const file = await Deno.makeTempFile({ suffix: ".toml" });
  const SPY = "spy-token-0123456789";
  await Deno.writeTextFile(
    file,
    `[users.spy]
token = "${hashToken(SPY)}"
publish = { allow = ["/"], deny = ["/secret"] }
subscribe = { allow = ["/"], deny = ["/secret"] }
`,
    { mode: 0o600 },
  );
  const broker = await startDist(["broker", "--port", "0", "--users", file]);
  let spy: Peer | undefined;
  try {
    spy = await as(broker.address, SPY);
    for (const topic of ["secret", "secret/x", "secret/"]) {
      await denied(
        spy.call("broker.publish", { topic, value: 1 }),
        `User "spy" may not publish /secret${
          topic.slice(6).replace(/\/$/, "")
        } (denied by "/secret")`,
      );
      await denied(
        spy.call("broker.subscribe", { topic }),
        `User "spy" may not subscribe /secret${
          topic.slice(6).replace(/\/$/, "")
        } (denied by "/secret")`,
      );
    }
    // "+" is every first segment, /secret among them.
    await denied(
      spy.call("broker.subscribe", { topic: "+" }),
      'User "spy" may not subscribe /+ (denied by "/secret")',
    );
    await denied(
      spy.call("broker.topics", { prefix: "secret" }),
      'User "spy" may not subscribe /secret (denied by "/secret")',
    );
    // What is allowed stays allowed, written either way.
    const ok = await spy.call("broker.publish", { topic: "news", value: 1 }) as { topic: string };
    assert.equal(ok.topic, "/news");
    await spy.call("broker.subscribe", { topic: "news/+" });
  } finally {
    spy?.close();
    await broker.stop();
    await Deno.remove(file);
  }
});
