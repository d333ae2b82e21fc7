/**
 * A client spread over many connections, in its own process: CONNS
 * connections from the local address FROM (127.0.0.2 by default: another
 * source than the other clients on loopback), each keeping WINDOW small
 * `add` requests out (it reads its answers, and sends one more for each).
 * Each connection alone is within the balancer's four shares, so only its
 * source marks it as a bulk flow (roles/balancer/shares.ts). Used by
 * tests/balancer_hostile_test.ts and bench/balancer_hostile.ts.
 *
 * FROM may be a range of addresses, 127.0.0.A-B: connection i comes from
 * the (i mod count)th. With SIZE, each request is an `echo` of SIZE
 * characters instead (hostile35 H12: 16 addresses × 16 echoes of 4,000).
 * With PAUSE, a connection sends its next request PAUSE ms after an answer
 * (a client between requests); with `sleep:MS`, each request is a `sleep`
 * of MS whose params carry SIZE characters more (hostile37 K5: three
 * connections holding one `sleep` of 60 KB each, twenty sending a 10-byte
 * echo every 400 ms).
 *
 *   deno run -A bench/spread_client.ts PORT CONNS WINDOW [FROM] [SIZE] [PAUSE] [sleep:MS]
 *
 * Prints "ready" once every connection's handshake is done; then, for each
 * line on stdin, the answers received so far; exits when stdin closes.
 */
import net from "node:net";
import { concat, frame, jsonFrame } from "../tests/helpers/raw.ts";

const [portText, connsText, windowText, from = "127.0.0.2", sizeText, pauseText, op] = Deno.args;
const port = Number(portText);
const conns = Number(connsText);
const window = Number(windowText);
const echoText = sizeText === undefined ? undefined : "x".repeat(Number(sizeText));
const pause = Number(pauseText ?? 0);
const sleepMs = op?.startsWith("sleep:") ? Number(op.slice(6)) : undefined;

/** The local address of connection `i` (see FROM). */
function addressOf(i: number): string {
  const range = from.match(/^(\d+\.\d+\.\d+\.)(\d+)-(\d+)$/);
  if (range === null) return from;
  const first = Number(range[2]);
  return range[1] + (first + i % (Number(range[3]) - first + 1));
}

/** `n` framed requests in one buffer. */
function requests(n: number, next: () => number): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const id = next();
    parts.push(frame(
      sleepMs !== undefined
        ? `{"id":${id},"method":"sleep","params":{"ms":${sleepMs},"pad":"${echoText ?? ""}"}}`
        : echoText === undefined
        ? `{"id":${id},"method":"add","params":{"a":${id},"b":1}}`
        : `{"id":${id},"method":"echo","params":{"text":"${echoText}"}}`,
    ));
  }
  return concat(parts);
}

let answered = 0;
const sockets: net.Socket[] = [];

/** Connection `i`: the handshake, then WINDOW requests out until it closes. */
function open(i: number): Promise<void> {
  return new Promise((ready, fail) => {
    let id = 0;
    const next = () => ++id;
    let welcomed = false;
    let buffer = new Uint8Array(0);
    const socket = net.connect({ host: "127.0.0.1", port, localAddress: addressOf(i) }, () => {
      socket.write(jsonFrame({ op: "hello", v: 1, codec: "json", role: "client", name: "spread" }));
    });
    sockets.push(socket);
    socket.on("error", (err) => welcomed ? undefined : fail(err));
    socket.on("data", (chunk: Uint8Array) => {
      const joined = new Uint8Array(buffer.length + chunk.length);
      joined.set(buffer);
      joined.set(chunk, buffer.length);
      let at = 0;
      let answers = 0;
      while (joined.length - at >= 4) {
        const n = new DataView(joined.buffer, at).getUint32(0);
        if (joined.length - at - 4 < n) break;
        const text = new TextDecoder().decode(joined.subarray(at + 4, at + 4 + n));
        at += 4 + n;
        if (!welcomed) {
          welcomed = true;
          socket.write(requests(window, next));
          ready();
        } else if (text.includes('"method"')) {
          // A request (a balancer's sys.ping asking whether this client reads): every dist peer
          // answers, UNKNOWN_METHOD will do.
          const asked = JSON.parse(text).id;
          if (asked !== undefined) {
            socket.write(
              jsonFrame({ id: asked, error: { code: "UNKNOWN_METHOD", message: "spread" } }),
            );
          }
        } else if (text.includes('"result"') || text.includes('"error"')) answers++;
      }
      buffer = joined.slice(at);
      if (answers > 0) {
        answered += answers;
        const more = requests(answers, next);
        if (pause > 0) setTimeout(() => socket.destroyed || socket.write(more), pause);
        else socket.write(more);
      }
    });
  });
}

await Promise.all(Array.from({ length: conns }, (_, i) => open(i)));
console.log("ready");
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
for (let r = await lines.read(); !r.done; r = await lines.read()) console.log(String(answered));
for (const s of sockets) s.destroy();
Deno.exit(0);
