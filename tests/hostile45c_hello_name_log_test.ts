/**
 * hostile45c K-C6 (H-A8's class, not covered by its fix 3347093): the name
 * and role a dialer gives in its hello are logged by every listening role
 * (`Connection with NAME (…) closed: …`, `Refused a hello from … (ROLE
 * NAME)`), and the log's text formatter escapes C0 controls only: a line
 * separator (U+2028) or a bidi override (U+202E) reaches the operator's
 * terminal raw, so `w1\u202egnp.exe` shows as `w1exe.png`. H-A8's fix
 * refused such characters in worker names only; any hello, unauthenticated,
 * still carries them into the log.
 */
import assert from "node:assert/strict";
import { startDist } from "./helpers/dist.ts";
import { jsonFrame, RawReader, sleep } from "./helpers/raw.ts";

Deno.test("hostile45c K-C6: a hello's name and role reach a listener's log without line separators or bidi controls", async () => {
  const server = await startDist(["server", "--port", "0", "--token", "k-c6-token-0123456789"]);
  try {
    const [host, port] = server.address.split(":");
    for (const token of ["k-c6-token-0123456789", "wrong"]) {
      const conn = await Deno.connect({ hostname: host, port: Number(port) });
      await conn.write(jsonFrame({
        op: "hello",
        v: 1,
        codec: "json",
        role: "client\u202e",
        name: "w1\u202egnp.exe\u2028FAKE",
        heartbeat: 100,
        token,
      }));
      await new RawReader(conn).json(5000).catch(() => null);
      await sleep(500); // silent past heartbeat × liveness: the server closes it and says so
      conn.close();
    }
    await sleep(1000);
    const log = server.stderr();
    assert.match(log, /w1/, "the connection was logged");
    const raw = [...log].filter((c) => /[\u2028\u2029\u202a-\u202e\u2066-\u2069]/.test(c));
    assert.equal(raw.length, 0, `raw separators/bidi controls in the log:\n${log.slice(-800)}`);
  } finally {
    await server.stop();
  }
});
