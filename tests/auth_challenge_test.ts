/**
 * K-C2: the hello carried the dialer's token or password in clear, so a
 * local user who bound the port a dialer dials while its listener was down
 * (a restart, a crash) was handed the secret. Now the dialer answers a
 * challenge: a squatter receives no secret, and what it receives it cannot
 * replay to the listener (or another), then or later.
 */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { Gate, hashPassword, hashToken, parseUsers } from "../auth/mod.ts";
import { dial, DistError, listen, type Listener } from "../wire/mod.ts";
import { concat, jsonFrame, RawReader, writeAll } from "./helpers/raw.ts";
import { hmacSha256 } from "../wire/scram.ts";

const TOKEN = "shared-t0ken-never-on-the-wire";
const BOT_TOKEN = "bot-t0ken-never-on-the-wire";
const PASSWORD = "alice-pa55word-never-on-the-wire";
const CHEAP = { ln: 10, r: 8, p: 1 };

async function usersText(): Promise<string> {
  return [
    "[users.alice]",
    `password = "${await hashPassword(PASSWORD, CHEAP)}"`,
    'methods = ["*"]',
    "[users.bot]",
    `token = "${hashToken(BOT_TOKEN)}"`,
    'methods = ["*"]',
  ].join("\n") + "\n";
}

function serve(gate: Gate, port = 0): Listener {
  return listen({
    port,
    host: "127.0.0.1",
    role: "server",
    name: "srv",
    authenticator: gate,
    onRequest: (_m, _p, peer) => ({ user: peer.remote.user ?? null }),
  });
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** Everything a dialer sends a squatter on `port`, which plays the listener's challenge. */
function squat(
  port: number,
  challenge: (hello: Record<string, unknown>) => Record<string, unknown>,
  then: "close" | "welcome",
): { port: number; frames: Uint8Array[]; done: Promise<void>; close(): void } {
  const server = Deno.listen({ hostname: "127.0.0.1", port });
  const frames: Uint8Array[] = [];
  const done = (async () => {
    const conn = await server.accept();
    const reader = new RawReader(conn);
    try {
      const hello = await reader.frame();
      frames.push(hello!);
      await writeAll(conn, jsonFrame(challenge(JSON.parse(text(hello!)))));
      const proof = await reader.frame();
      if (proof !== null) frames.push(proof);
      if (then === "welcome") {
        // A welcome with a made-up verifier: the dialer must not take it.
        await writeAll(
          conn,
          jsonFrame({
            op: "welcome",
            v: 1,
            codec: "json",
            role: "server",
            name: "srv",
            heartbeat: 1000,
            verifier: btoa("x".repeat(32)),
          }),
        );
        await reader.frame(1000).catch(() => null);
      }
    } finally {
      conn.close();
    }
  })();
  return { port: server.addr.port, frames, done, close: () => server.close() };
}

/** Sends `frames` as a dialer would (the hello, then the proof once challenged); the answer. */
async function replay(port: number, frames: Uint8Array[]): Promise<Record<string, unknown> | null> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new RawReader(conn);
  try {
    await writeAll(conn, frameOf(frames[0]));
    const challenge = await reader.json();
    if (challenge?.op !== "challenge") return challenge;
    await writeAll(conn, frameOf(frames[1]));
    return await reader.json(5000);
  } finally {
    conn.close();
  }
}

function frameOf(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length);
  out.set(payload, 4);
  return out;
}

const CASES: [string, { token: string } | { user: string; password: string }, string][] = [
  ["the shared token", { token: TOKEN }, "token"],
  ["a user's token", { token: BOT_TOKEN }, "bot"],
  ["a user's password", { user: "alice", password: PASSWORD }, "alice"],
];

for (const [what, credentials, user] of CASES) {
  Deno.test(`K-C2: a squatter on a restarting listener's port receives no secret of ${what}, and nothing it can replay`, async () => {
    const users = parseUsers(await usersText(), "users.toml");
    const gate = () => new Gate({ token: TOKEN, users, delays: { baseMs: 1 } });
    let real = serve(gate());
    const port = real.addr.port;
    // The real listener serves the dialer.
    const before = await dial({ host: "127.0.0.1", port }, {
      role: "client",
      name: "c",
      credentials,
    });
    assert.deepEqual(await before.call("whoami"), { user });
    before.close();
    // It learns the user's salt and cost as anyone may (the challenge of a hello naming alice).
    const probe = await Deno.connect({ hostname: "127.0.0.1", port });
    const probeReader = new RawReader(probe);
    await writeAll(
      probe,
      jsonFrame({
        op: "hello",
        v: 1,
        codec: "json",
        role: "client",
        name: "c",
        auth: { mech: "password", user: "alice", nonce: btoa("n".repeat(18)) },
      }),
    );
    const realChallenge = await probeReader.json();
    probe.close();
    assert.equal(realChallenge?.op, "challenge");
    // The listener goes down (a restart); a local user binds its port.
    await real.close();
    const squatter = squat(port, () => ({
      op: "challenge",
      nonce: btoa("s".repeat(18)),
      role: "server",
      name: "srv",
      salt: realChallenge!.salt,
      cost: realChallenge!.cost,
    }), "welcome");
    const refused = await dial({ host: "127.0.0.1", port }, {
      role: "client",
      name: "c",
      credentials,
    }).then(() => undefined, (err) => err);
    await squatter.done;
    squatter.close();
    // The dialer does not take the squatter for the listener (it cannot make the verifier).
    assert.ok(refused instanceof DistError, String(refused));
    assert.equal(refused.code, "UNAUTHORIZED");
    assert.match(refused.message, /did not prove it holds this dialer's keys/);
    // What the dialer sent: a hello and a proof, no secret in any form.
    assert.equal(squatter.frames.length, 2);
    const sent = squatter.frames.map(text).join("\n");
    const secret = "token" in credentials ? credentials.token : credentials.password;
    for (const form of [secret, btoa(secret), encodeURIComponent(secret)]) {
      assert.ok(!sent.includes(form), `the squatter got ${what} (${form}): ${sent}`);
    }
    assert.doesNotMatch(sent, /"(token|password)":/);
    // The listener is back: what the squatter got, replayed, is refused (a fresh nonce each hello).
    real = serve(gate(), port);
    try {
      const answer = await replay(port, squatter.frames);
      assert.equal(answer?.op, "error", JSON.stringify(answer));
      assert.deepEqual(answer?.error, { code: "UNAUTHORIZED", message: "Invalid credentials" });
      // The dialer itself still gets in.
      const after = await dial({ host: "127.0.0.1", port }, {
        role: "client",
        name: "c",
        credentials,
      });
      assert.deepEqual(await after.call("whoami"), { user });
      after.close();
    } finally {
      await real.close();
    }
  });
}

Deno.test("K-C2: a proof recorded between a dialer and its listener cannot be replayed later, nor to another listener with the same secret", async () => {
  const users = parseUsers(await usersText(), "users.toml");
  const a = serve(new Gate({ token: TOKEN, users, delays: { baseMs: 1 } }));
  const b = serve(new Gate({ token: TOKEN, users, delays: { baseMs: 1 } }));
  // A relay in the middle records what the dialer sends to a.
  const relay = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const recorded: Uint8Array[] = [];
  const relaying = (async () => {
    const inbound = await relay.accept();
    const outbound = await Deno.connect({ hostname: "127.0.0.1", port: a.addr.port });
    const pump = async (from: Deno.Conn, to: Deno.Conn, keep: boolean) => {
      const buf = new Uint8Array(65536);
      try {
        for (let n = await from.read(buf); n !== null; n = await from.read(buf)) {
          if (keep) recorded.push(buf.slice(0, n));
          await writeAll(to, buf.subarray(0, n));
        }
      } catch {
        // Closed.
      }
      try {
        to.close();
      } catch {
        // Closed.
      }
    };
    await Promise.all([pump(inbound, outbound, true), pump(outbound, inbound, false)]);
  })();
  try {
    const peer = await dial({ host: "127.0.0.1", port: relay.addr.port }, {
      role: "client",
      name: "c",
      credentials: { user: "alice", password: PASSWORD },
    });
    assert.deepEqual(await peer.call("whoami"), { user: "alice" });
    peer.close();
    await relaying;
    // The hello and the proof, as recorded (the first two frames the dialer sent).
    const bytes = concat(recorded);
    const frames: Uint8Array[] = [];
    for (let at = 0; frames.length < 2;) {
      const len = new DataView(bytes.buffer, bytes.byteOffset + at).getUint32(0);
      frames.push(bytes.slice(at + 4, at + 4 + len));
      at += 4 + len;
    }
    assert.equal(JSON.parse(text(frames[1])).op, "proof");
    for (const listener of [a, b]) {
      const answer = await replay(listener.addr.port, frames);
      assert.deepEqual(answer?.error, { code: "UNAUTHORIZED", message: "Invalid credentials" });
    }
  } finally {
    relay.close();
    await a.close();
    await b.close();
  }
});

Deno.test("K-C2: a wrong proof is refused with the error and the delay of a wrong secret sent in clear", async () => {
  const users = parseUsers(await usersText(), "users.toml");
  const gate = new Gate({ token: TOKEN, users }); // the default delays: 250 ms after a first failure
  const l = serve(gate);
  const at = { host: "127.0.0.1", port: l.addr.port };
  try {
    for (
      const credentials of [{ token: "wrong-token-0123" }, { user: "alice", password: "wrong" }]
    ) {
      const t0 = performance.now();
      const err = await dial(at, { role: "client", name: "c", credentials }).then(
        () => undefined,
        (e) => e,
      );
      const ms = performance.now() - t0;
      assert.ok(err instanceof DistError);
      assert.equal(err.code, "UNAUTHORIZED");
      assert.match(err.message, /refused the hello: Invalid credentials$/);
      assert.ok(ms >= 240, `refused after ${ms.toFixed(0)} ms`);
    }
    // A secret in clear (an older dialer): the same answer, after the record's next delay (500 ms).
    const conn = await Deno.connect(at);
    const reader = new RawReader(conn);
    const t0 = performance.now();
    await writeAll(
      conn,
      jsonFrame({ op: "hello", v: 1, codec: "json", role: "client", name: "c", token: "wrong-1" }),
    );
    const answer = await reader.json(5000);
    const ms = performance.now() - t0;
    conn.close();
    assert.deepEqual(answer?.error, { code: "UNAUTHORIZED", message: "Invalid credentials" });
    assert.ok(ms >= 240, `refused after ${ms.toFixed(0)} ms`);
  } finally {
    await l.close();
  }
});

Deno.test("K-C2: a users file keeps keys that check a proof but make none: its stored values are no credential", async () => {
  const file = await usersText();
  const users = parseUsers(file, "users.toml");
  const l = serve(new Gate({ users, delays: { baseMs: 1 } }));
  const at = { host: "127.0.0.1", port: l.addr.port };
  try {
    const stored = [...file.matchAll(/"(\$[^"]+)"/g)].map((m) => m[1]);
    assert.equal(stored.length, 2);
    const parts = stored.flatMap((s) => [s, ...s.split("$").filter((p) => p.length > 20)]);
    for (const part of parts) {
      for (const credentials of [{ token: part }, { user: "alice", password: part }]) {
        await assert.rejects(
          dial(at, { role: "client", name: "c", credentials }),
          /Invalid credentials/,
        );
      }
    }
    assert.equal(users.legacy.length, 0);
    // An entry written before the challenge hello (the bare SaltedKey) still loads, flagged.
    const old = parseUsers(
      `[users.old]\npassword = "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$${
        btoa("k".repeat(32)).replace(/=+$/, "")
      }"\n`,
      "old.toml",
    );
    assert.deepEqual(old.legacy, ["users.old.password"]);
  } finally {
    await l.close();
  }
});

Deno.test("hmacSha256() (two hashes) answers what node:crypto's createHmac does, for keys of every length", () => {
  for (const length of [0, 1, 32, 63, 64, 65, 200]) {
    const key = crypto.getRandomValues(new Uint8Array(length));
    const data = crypto.getRandomValues(new Uint8Array(100));
    assert.deepEqual(
      hmacSha256(key, data),
      new Uint8Array(createHmac("sha256", key).update(data).digest()),
      `key of ${length} bytes`,
    );
  }
});

Deno.test("K-C2: a dialer derives no more scrypt than 128 MiB for a challenge, whatever cost the listener names (h46d D3)", async () => {
  const squatter = squat(0, () => ({
    op: "challenge",
    nonce: btoa("s".repeat(18)),
    role: "server",
    name: "srv",
    salt: btoa("salt".repeat(4)),
    cost: "ln=20,r=32,p=16",
  }), "close");
  try {
    const t0 = performance.now();
    await assert.rejects(
      dial({ host: "127.0.0.1", port: squatter.port }, {
        role: "client",
        name: "c",
        credentials: { user: "alice", password: PASSWORD },
      }),
      (e: DistError) =>
        e.code === "BAD_REQUEST" && /asks more than 128 MiB of scrypt/.test(e.message),
    );
    assert.ok(performance.now() - t0 < 2000);
  } finally {
    squatter.close();
    await squatter.done.catch(() => {});
  }
});

Deno.test("K-C2: the challenge does not tell which users exist: a name that is no user gets a salt of its own, the same each time, and the file's cost", async () => {
  const users = parseUsers(await usersText(), "users.toml");
  const gate = new Gate({ users });
  const alice = gate.saltFor("alice");
  assert.deepEqual(alice.salt, users.entries.get("alice")!.password!.salt);
  const ghost = gate.saltFor("ghost");
  assert.equal(ghost.salt.length, alice.salt.length);
  assert.deepEqual(ghost.cost, alice.cost);
  assert.notDeepEqual(ghost.salt, alice.salt);
  // Asked again, and by another listener of the same file (a restart): the same salt.
  assert.deepEqual(gate.saltFor("ghost").salt, ghost.salt);
  assert.deepEqual(new Gate({ users }).saltFor("ghost").salt, ghost.salt);
  assert.notDeepEqual(gate.saltFor("ghost2").salt, ghost.salt);
});
