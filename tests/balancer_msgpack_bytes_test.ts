/**
 * A MessagePack client's requests through a balancer, forwarded as bytes
 * (hostile34 Z7; roles/balancer/fast_paths.ts, msgpack_job.ts): a JSON
 * backend gets them as JSON written from the bytes, answers, errors and
 * `by` come back in MessagePack; what the scanner does not take is decoded
 * as before when small, refused BAD_REQUEST when large; under a users file
 * the method is checked.
 */
import assert from "node:assert/strict";
import { dial, DistError, msgpackCodec, type Peer } from "../wire/mod.ts";
import { hashToken } from "../auth/mod.ts";
import { startBalancer, stopAll } from "./helpers/balancer.ts";

async function withBalancer(
  args: string[],
  credentials: { worker?: string; client?: string },
  body: (
    client: Peer,
    seen: { method: string; params: unknown; idem?: boolean }[],
  ) => Promise<void>,
): Promise<void> {
  const lb = await startBalancer([], args);
  const peers: Peer[] = [];
  const seen: { method: string; params: unknown }[] = [];
  try {
    const [host, port] = lb.workerAddress.split(":");
    // A JSON backend that echoes what it got, fails `fail`, and answers with its own `by`.
    const worker = await dial({ host, port: Number(port) }, {
      role: "worker",
      name: "echo",
      by: "echo-1",
      credentials: credentials.worker ? { token: credentials.worker } : undefined,
      onRequest: (method, params) => {
        if (method === "sys.ping") return { pong: true };
        seen.push({ method, params });
        if (method === "fail") throw new DistError("NOT_FOUND", "No such thing");
        return { params };
      },
    });
    peers.push(worker);
    await worker.call("worker.register", { name: "echo", capacity: 8 });
    const [chost, cport] = lb.address.split(":");
    const client = await dial({ host: chost, port: Number(cport) }, {
      role: "client",
      name: "mp",
      codec: msgpackCodec,
      credentials: credentials.client ? { token: credentials.client } : undefined,
    });
    peers.push(client);
    await body(client, seen);
  } finally {
    for (const p of peers) p.close();
    await stopAll([lb]);
  }
}

Deno.test("a MessagePack client's requests reach a JSON backend as bytes, and its answers come back", async () => {
  await withBalancer([], {}, async (client, seen) => {
    const params = {
      text: 'é\u0001✓ "q" \\',
      list: Array.from(
        { length: 200 },
        (_, i) => ({ i, f: i / 4, neg: -(i + 1) * 1e12, ok: i % 2 === 0 }),
      ),
      none: null,
      bin: new Uint8Array([0, 1, 255]),
    };
    const got = await client.request("echo.it", params);
    // Binary goes to a JSON backend as base64 text, as the decoded path sent it.
    const { bin: _bin, ...rest } = params;
    assert.deepEqual(got.result, { params: { ...rest, bin: "AAH/" } });
    assert.equal(got.by, "echo-1");
    assert.deepEqual(seen.at(-1), { method: "echo.it", params: { ...rest, bin: "AAH/" } });
    assert.deepEqual(await client.call("echo.it", [1, 2, 3]), { params: [1, 2, 3] });
    assert.deepEqual(await client.call("echo.it"), {});
    await assert.rejects(client.call("fail", {}), (e: DistError) => {
      assert.equal(`${e.code}: ${e.message}`, "NOT_FOUND: No such thing");
      return true;
    });
    // A small request with what the scanner does not take is decoded and forwarded as before.
    assert.deepEqual(await client.call("echo.it", { at: new Date(0) }), {
      params: { at: "1970-01-01T00:00:00.000Z" },
    });
    // A large one is refused, and the connection stays.
    const big = { at: new Date(0), pad: "x".repeat(20_000) };
    await assert.rejects(client.call("echo.it", big), (e: DistError) => {
      assert.equal(e.code, "BAD_REQUEST");
      assert.match(
        e.message,
        /Cannot forward a MessagePack request of \d+ bytes holding an extension/,
      );
      return true;
    });
    assert.deepEqual(await client.call("echo.it", { n: 1 }), { params: { n: 1 } });
  });
});

Deno.test("under --users a MessagePack client's forwarded method is checked, its params kept as bytes", async () => {
  const file = await Deno.makeTempFile({ suffix: ".toml" });
  const WORKER = "worker-token-0123456789";
  const APP = "app-token-0123456789";
  await Deno.writeTextFile(
    file,
    [
      "[users.worker]",
      `token = "${hashToken(WORKER)}"`,
      'roles = ["worker"]',
      "[users.app]",
      `token = "${hashToken(APP)}"`,
      'methods = ["echo.it"]',
    ].join("\n"),
    { mode: 0o600 },
  );
  try {
    await withBalancer(["--users", file], { worker: WORKER, client: APP }, async (client) => {
      assert.deepEqual(await client.call("echo.it", { a: [1, "b"] }), { params: { a: [1, "b"] } });
      await assert.rejects(client.call("fail", { pad: "x".repeat(500) }), (e: DistError) => {
        assert.equal(
          `${e.code}: ${e.message}`,
          'UNAUTHORIZED: User "app" may not call fail (not allowed)',
        );
        return true;
      });
      await assert.rejects(
        client.call("balancer.backends"),
        (e: DistError) => e.code === "UNAUTHORIZED",
      );
      assert.deepEqual(await client.call("echo.it", 5), { params: 5 });
    });
  } finally {
    await Deno.remove(file);
  }
});
