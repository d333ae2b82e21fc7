/**
 * A lockstep load for the metrics bench (bench/metrics.ts), in its own
 * process, against several listeners at once, taking turns burst by burst
 * (A B A B …): the listeners being compared see the same moments of a
 * busy machine, so their CPU per unit of work can be compared to a few
 * percent where runs one after the other swing by 20 %.
 *
 *   deno run -A bench/burst_client.ts rpc PORT[,PORT…] BURST BURSTS
 *
 * sends each listener BURST `echo` requests in one write, reads every
 * answer, and goes on to the next listener (`dist client --bench`'s c=64
 * shape, in whole batches);
 *
 *   deno run -A bench/burst_client.ts broker PORT[,PORT…] BURST BURSTS SUBS
 *
 * subscribes SUBS connections to a broker's `/bench/burst`, then publishes
 * BURST fire-and-forget messages in one write and waits until every
 * subscriber has them all (a broker's 1 → SUBS fan-out, in whole batches).
 *
 * Prints one JSON line once all bursts are done: per listener, in the order
 * given, `{units, seconds, rate}` (units: requests, or deliveries; seconds:
 * the sum of that listener's turns).
 */

import { concat, frame } from "../tests/helpers/raw.ts";

const [mode, portsText, burstText, burstsText, subsText] = Deno.args;
const ports = portsText.split(",").map(Number);
const burst = Number(burstText);
const bursts = Number(burstsText);
const subs = Number(subsText ?? 0);
const encoder = new TextEncoder();
const TOPIC = "/bench/burst";

/** One connection, handshaken, reading whole frames. */
class Link {
  #buf = new Uint8Array(1 << 16);
  #start = 0;
  #end = 0;
  private constructor(readonly conn: Deno.TcpConn) {}

  static async open(port: number): Promise<Link> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    const link = new Link(conn);
    const hello = { op: "hello", v: 1, codec: "json", role: "client", name: "burst" };
    await conn.write(frame(JSON.stringify(hello)));
    await link.frames((buf, at) => buf[at + 2] === 0x6f); // the welcome: {"op"
    return link;
  }

  /**
   * Reads once and counts the frames that `counts` (given the frame and
   * where its payload starts).
   */
  async frames(counts: Matcher): Promise<number> {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    else if (this.#buf.length - this.#end < 4096) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (this.#end === this.#buf.length) {
      const bigger = new Uint8Array(this.#buf.length * 2);
      bigger.set(this.#buf.subarray(0, this.#end));
      this.#buf = bigger;
    }
    const n = await this.conn.read(this.#buf.subarray(this.#end));
    if (n === null) throw new Error("The listener closed the connection");
    this.#end += n;
    let counted = 0;
    const view = new DataView(this.#buf.buffer);
    while (this.#end - this.#start >= 4) {
      const len = view.getUint32(this.#start);
      if (this.#end - this.#start < 4 + len) break;
      const id = requestId(this.#buf, this.#start + 4, len);
      if (id !== "") this.answer(id);
      else if (counts(this.#buf, this.#start + 4)) counted++;
      this.#start += 4 + len;
    }
    return counted;
  }

  /** Reads until `n` counted frames have come. */
  async await(n: number, counts: Matcher): Promise<void> {
    let got = 0;
    while (got < n) got += await this.frames(counts);
  }

  write(bytes: Uint8Array): Promise<number> {
    return this.conn.write(bytes);
  }

  /**
   * Answers the listener's request `id` UNKNOWN_METHOD, as every dist peer
   * must (a balancer's or a broker's `sys.ping` behind its answers, asking
   * whether this client reads them: wire/read_proof.ts).
   */
  answer(id: string): void {
    const error = '"error":{"code":"UNKNOWN_METHOD","message":"burst client"}}';
    this.conn.write(frame(`{"id":${id},${error}`)).catch(() => {});
  }
}

const ID = encoder.encode('{"id":'), METHOD_KEY = encoder.encode(',"method"');

/** The id of a request (`{"id":N,"method"…`, as a dist peer writes it) in a frame, else "". */
function requestId(buf: Uint8Array, at: number, len: number): string {
  for (let i = 0; i < ID.length; i++) if (buf[at + i] !== ID[i]) return "";
  let end = at + ID.length;
  while (end < at + len && buf[end] >= 0x30 && buf[end] <= 0x39) end++;
  for (let i = 0; i < METHOD_KEY.length; i++) if (buf[end + i] !== METHOD_KEY[i]) return "";
  return new TextDecoder().decode(buf.subarray(at + ID.length, end));
}

/** Whether the frame whose payload starts at `at` is one to count. */
type Matcher = (buf: Uint8Array, at: number) => boolean;

const METHOD = encoder.encode('{"method":"broker.message"');
/** An answer: `{"id"…` */
const isAnswer: Matcher = (buf, at) => buf[at + 2] === 0x69;
/** A delivery: `{"method":"broker.message"…` */
const isMessage: Matcher = (buf, at) => {
  for (let i = 0; i < METHOD.length; i++) if (buf[at + i] !== METHOD[i]) return false;
  return true;
};
const PING = frame('{"method":"ping"}');

/** One listener's turn: send a burst, wait for all it causes. */
type Turn = () => Promise<number>;

async function rpcSide(port: number): Promise<Turn> {
  const link = await Link.open(port);
  const requests = concat(
    Array.from(
      { length: burst },
      (_, i) => frame(`{"id":${i + 1},"method":"echo","params":{"text":"hello"}}`),
    ),
  );
  return async () => {
    await link.write(requests);
    await link.await(burst, isAnswer);
    return burst;
  };
}

async function brokerSide(port: number): Promise<Turn> {
  const readers = await Promise.all(Array.from({ length: subs }, () => Link.open(port)));
  for (const r of readers) {
    await r.write(
      frame(JSON.stringify({ id: 1, method: "broker.subscribe", params: { topic: TOPIC } })),
    );
    await r.await(1, isAnswer);
  }
  const publisher = await Link.open(port);
  const value = { text: "x".repeat(100) };
  const publishes = concat(
    Array.from(
      { length: burst },
      (_, i) =>
        frame(JSON.stringify({
          method: "broker.publish",
          params: { topic: TOPIC, value: { ...value, i }, retain: false },
        })),
    ),
  );
  // Subscribers send nothing else: a ping now and then, or the broker takes them for dead.
  let pinged = performance.now();
  return async () => {
    if (performance.now() - pinged > 300) {
      pinged = performance.now();
      for (const r of readers) await r.write(PING);
    }
    await publisher.write(publishes);
    await Promise.all(readers.map((r) => r.await(burst, isMessage)));
    return burst * subs;
  };
}

const turns = await Promise.all(ports.map((p) => mode === "broker" ? brokerSide(p) : rpcSide(p)));
const units = ports.map(() => 0);
const seconds = ports.map(() => 0);
for (let b = 0; b < bursts; b++) {
  // Who goes first changes every burst.
  for (let k = 0; k < turns.length; k++) {
    const i = (b + k) % turns.length;
    const t0 = performance.now();
    units[i] += await turns[i]();
    seconds[i] += (performance.now() - t0) / 1000;
  }
}
console.log(JSON.stringify(
  ports.map((_, i) => ({ units: units[i], seconds: seconds[i], rate: units[i] / seconds[i] })),
));
Deno.exit(0); // the connections go with the process
