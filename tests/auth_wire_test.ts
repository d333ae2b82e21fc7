/**
 * Credentials over real connections: what a dialer puts in its hello, what
 * a listener with an authenticator answers, and that secrets stay out of
 * the logs.
 */
import assert from "node:assert/strict";
import { Gate, hashPassword, parseUsers } from "../auth/mod.ts";
import { dial, DistError, listen, type Peer } from "../wire/mod.ts";
import { HELLO, jsonFrame, RawReader } from "./helpers/raw.ts";
import { captureLogs } from "./helpers/logs.ts";

function served(gate: Gate) {
  const seen: Peer[] = [];
  const listener = listen({
    port: 0,
    role: "server",
    name: "srv",
    authenticator: gate,
    onRequest: (_method, _params, peer) => ({ user: peer.remote.user ?? null }),
    onPeer: (peer) => seen.push(peer),
  });
  return { listener, seen, at: { host: "127.0.0.1", port: listener.addr.port } };
}

Deno.test("a listener with a token answers a right token welcome, a wrong or missing one UNAUTHORIZED", async () => {
  const logs = await captureLogs();
  const { listener, seen, at } = served(
    new Gate({ token: "s3cret-t0ken", delays: { baseMs: 1 } }),
  );
  try {
    const peer = await dial(at, {
      role: "client",
      name: "c",
      credentials: { token: "s3cret-t0ken" },
    });
    assert.deepEqual(await peer.call("whoami"), { user: "token" });
    assert.equal(seen[0].identity?.user, "token");
    peer.close();
    for (const credentials of [{ token: "wrong-token!" }, undefined]) {
      await assert.rejects(
        dial(at, { role: "client", name: "c", credentials }),
        (e: DistError) =>
          e.code === "UNAUTHORIZED" &&
          e.message.startsWith(`127.0.0.1:${at.port} refused the hello: `),
      );
    }
    const lines = logs.lines().filter((l) => l.includes("Refused a hello"));
    assert.equal(lines.length, 2, "one warning line per refusal");
    assert.match(lines[0], /from 127\.0\.0\.1:\d+ \(client "?c"?\): wrong token/);
    assert.match(lines[1], /no credentials/);
    assert.ok(
      !logs.text().includes("wrong-token!") && !logs.text().includes("s3cret"),
      "no secret logged",
    );
  } finally {
    logs.stop();
    await listener.close();
  }
});

Deno.test("a refused hello is answered with the error, then the connection is closed", async () => {
  const { listener, at } = served(new Gate({ token: "t", delays: { baseMs: 1 } }));
  const conn = await Deno.connect({ hostname: at.host, port: at.port });
  try {
    await conn.write(jsonFrame({ ...HELLO, token: "nope" }));
    const reader = new RawReader(conn);
    const answer = await reader.json();
    assert.deepEqual(answer, {
      op: "error",
      error: { code: "UNAUTHORIZED", message: "Invalid credentials" },
    });
    assert.equal(await reader.json(), null, "closed after the answer");
  } finally {
    conn.close();
    await listener.close();
  }
});

Deno.test("a hello's credential fields must be strings of bounded length, never echoed", async () => {
  const { listener, at } = served(new Gate({ token: "t" }));
  const conn = await Deno.connect({ hostname: at.host, port: at.port });
  try {
    await conn.write(jsonFrame({ ...HELLO, password: 12345 }));
    const answer = await new RawReader(conn).json() as { error: { code: string; message: string } };
    assert.equal(answer.error.code, "BAD_REQUEST");
    assert.match(answer.error.message, /"password" must be a non-empty string/);
    assert.ok(!answer.error.message.includes("12345"));
  } finally {
    conn.close();
    await listener.close();
  }
});

Deno.test("a user and password from a users file; the peer knows the user", async () => {
  const users = parseUsers(
    `[users.alice]\npassword = "${await hashPassword("pw", {
      ln: 10,
      r: 8,
      p: 1,
    })}"\nmethods = ["*"]\n`,
    "u.toml",
  );
  const { listener, at } = served(new Gate({ users, delays: { baseMs: 1 } }));
  try {
    const peer = await dial(at, {
      role: "client",
      name: "c",
      credentials: { user: "alice", password: "pw" },
    });
    assert.deepEqual(await peer.call("whoami"), { user: "alice" });
    peer.close();
    await assert.rejects(
      dial(at, { role: "client", name: "c", credentials: { user: "alice", password: "PW" } }),
      /Invalid credentials/,
    );
  } finally {
    await listener.close();
  }
});

Deno.test("a dialer with credentials refuses a listener that welcomes it without a challenge (h46d D6)", async () => {
  let requests = 0;
  const listener = listen({
    port: 0,
    role: "server",
    name: "srv",
    onRequest: () => {
      requests++;
      return 1;
    },
  });
  const at = { host: "127.0.0.1", port: listener.addr.port };
  try {
    for (
      const credentials of [{ token: "whatever" }, { user: "alice", password: "pa55word!" }]
    ) {
      await assert.rejects(
        dial(at, { role: "client", name: "c", credentials }),
        (e: DistError) =>
          e.code === "UNAUTHORIZED" &&
          e.message.startsWith(`127.0.0.1:${at.port} did not authenticate: `) &&
          (e.data as { reason?: string }).reason === "listener_not_authenticated",
      );
    }
    // Without credentials the open listener is dialed as before; a listener still takes a
    // secret in clear from an older dialer (the token test above).
    const peer = await dial(at, { role: "client", name: "c" });
    assert.equal(await peer.call("x"), 1);
    assert.equal(peer.identity, undefined);
    peer.close();
    assert.equal(requests, 1, "the refused dialers sent no request");
  } finally {
    await listener.close();
  }
});
