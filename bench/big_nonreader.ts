/**
 * A hostile client, in its own process: CONNS connections that handshake,
 * then each send COUNT echo requests of SIZE characters as fast as the peer
 * takes them and never read an answer (hostile32 X5). Used by
 * tests/balancer_nonreader_test.ts and the X5 figures in README.
 *
 *   deno run -A bench/big_nonreader.ts PORT CONNS COUNT SIZE [BATCH]
 *
 * BATCH (default 1) requests go out in one write: small requests by the
 * thousand cost the attacker little CPU (hostile39a P9's pipeliners).
 *
 * Prints "ready" once every connection has its welcome and the requests
 * start going out; when stdin closes, prints "sent N" (the bytes the peer's
 * sockets took by then) and exits. Its own process: a Deno process that
 * floods sockets is slow to read its other sockets, and would slow a
 * legitimate client beside it.
 */
import { jsonFrame, rawHandshake, RawReader, writeAll } from "../tests/helpers/raw.ts";

const [port, conns, count, size, batch = 1] = Deno.args.map(Number);
// One frame for every request: ids may repeat, nobody reads the answers.
const one = jsonFrame({ id: 1, method: "echo", params: { text: "B".repeat(size) } });
const request = new Uint8Array(one.length * batch);
for (let i = 0; i < batch; i++) request.set(one, i * one.length);
let sent = 0;

const sockets = await Promise.all(Array.from({ length: conns }, async () => {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await rawHandshake(conn, new RawReader(conn));
  return conn;
}));
console.log("ready");
for (const conn of sockets) {
  (async () => {
    try {
      for (let i = 0; i < count; i += batch) {
        await writeAll(conn, request);
        sent += request.length;
      }
    } catch {
      // Cut off by the peer (slow consumer, heartbeat): its own doing.
    }
  })();
}
for await (const _ of Deno.stdin.readable) {
  // Until stdin closes.
}
console.log(`sent ${sent}`);
Deno.exit(0);
