/**
 * Helpers for MQTT tests: an in-process broker with `--mqtt-port 0` (its
 * MQTT port read from sys.stats), MQTT.js clients that never reconnect, and
 * a raw MQTT socket whose packets are written and parsed with mqtt-packet
 * (a peer of our own making, for hostile input and exact wire checks).
 */
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import mqttPacket, { type IConnackPacket, type Packet } from "mqtt-packet";
import { BrokerClient, startBroker } from "./broker.ts";
import { sleep, waitFor, writeAll } from "./raw.ts";

/** MQTT.js leaves timers of its own behind after end(): not ours to sanitize. */
export const mqttOpts = { sanitizeOps: false, sanitizeResources: false };

/** Whether mosquitto_pub and mosquitto_sub are installed (Debian mosquitto-clients, in .ci/run). */
export const HAVE_MOSQUITTO = (() => {
  try {
    return new Deno.Command("mosquitto_sub", { args: ["--help"], stdout: "null", stderr: "null" })
      .outputSync().code !== 127;
  } catch {
    return false;
  }
})();

/** Runs a mosquitto client tool to its end (killed after `ms`), `stdin` written to it. */
export async function mosquitto(
  tool: string,
  args: string[],
  stdin?: string,
  ms = 10_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(tool, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(ms),
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

export interface MqttBroker {
  port: number;
  mqttPort: number;
  /** A native client (stats, publish, subscribe). */
  native: BrokerClient;
  stats(): Promise<Record<string, unknown>>;
  /** The MQTT front end's counters. */
  mqttStats(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/** Starts a broker in this process with `--mqtt-port 0` and extra options. */
export async function startMqttBroker(options: Record<string, unknown> = {}): Promise<MqttBroker> {
  const b = await startBroker({ mqttPort: 0, ...options });
  const native = await BrokerClient.connect(b.port, "json", "mqtt-test");
  const stats = await native.stats();
  const mqttPort = (stats.mqtt as { port: number }).port;
  return {
    port: b.port,
    mqttPort,
    native,
    stats: () => native.stats(),
    mqttStats: async () => (await native.stats()).mqtt as Record<string, number>,
    async stop() {
      native.close();
      await b.stop();
    },
  };
}

/** Runs `body` with a fresh broker, stopped afterwards. */
export async function withMqttBroker(
  body: (b: MqttBroker) => Promise<void>,
  options: Record<string, unknown> = {},
): Promise<void> {
  const b = await startMqttBroker(options);
  try {
    await body(b);
  } finally {
    await b.stop();
  }
}

/** An MQTT.js client that never reconnects. */
export function mqttClient(port: number, opts: mqtt.IClientOptions = {}): Promise<mqtt.MqttClient> {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...opts,
  });
}

/** An MQTT.js client and the CONNACK it got; `got` records from before the CONNACK. */
export async function connectWithAck(
  port: number,
  o: mqtt.IClientOptions,
): Promise<{ c: mqtt.MqttClient; ack: IConnackPacket; got: ReturnType<typeof record> }> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...o,
  });
  const got = record(c);
  const ack = await new Promise<IConnackPacket>((resolve, reject) => {
    c.once("connect", resolve);
    c.once("error", reject);
  });
  return { c, ack, got };
}

export interface Received {
  topic: string;
  payload: Uint8Array;
  qos: number;
  retain: boolean;
}

/** Records what an MQTT.js client receives. */
export function record(c: mqtt.MqttClient): Received[] {
  const got: Received[] = [];
  c.on("message", (topic, payload, packet) => {
    got.push({
      topic,
      payload: new Uint8Array(payload),
      qos: packet.qos,
      retain: packet.retain,
    });
  });
  return got;
}

/** Waits (at most `ms`) until `list` holds `n` items. */
export async function atLeast<T>(list: T[], n: number, ms = 5000): Promise<T[]> {
  await waitFor(() => list.length >= n, ms, `${n} items (have ${list.length})`);
  return list;
}

/** A raw MQTT connection: packets written and parsed with mqtt-packet. */
export class RawMqtt {
  readonly conn: Deno.Conn;
  readonly packets: Packet[] = [];
  /** Set once the broker closed the connection (EOF or reset). */
  closed = false;
  #parser;
  #reading: Promise<void>;

  private constructor(conn: Deno.Conn, version: number) {
    this.conn = conn;
    this.#parser = mqttPacket.parser({ protocolVersion: version });
    this.#parser.on("packet", (p: Packet) => this.packets.push(p));
    this.#reading = this.#read();
  }

  /** Connects a TCP socket (sends nothing). */
  static async open(port: number, version = 4): Promise<RawMqtt> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    return new RawMqtt(conn, version);
  }

  /** Opens and sends CONNECT, waits for the CONNACK. */
  static async connect(
    port: number,
    fields: Record<string, unknown> = {},
    version = 4,
  ): Promise<RawMqtt> {
    const raw = await RawMqtt.open(port, version);
    await raw.send({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: version,
      clientId: `raw-${crypto.randomUUID().slice(0, 8)}`,
      clean: true,
      keepalive: 0,
      ...fields,
    } as Packet);
    await raw.next("connack");
    return raw;
  }

  async #read(): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        this.#parser.parse(Buffer.from(buf.slice(0, n)));
      }
    } catch {
      // Reset by the broker: closed as well.
    }
    this.closed = true;
  }

  /** Writes a packet (generated by mqtt-packet). */
  send(packet: Packet, version = 4): Promise<void> {
    return writeAll(this.conn, mqttPacket.generate(packet, { protocolVersion: version }));
  }

  /** Writes raw bytes. */
  write(bytes: Uint8Array): Promise<void> {
    return writeAll(this.conn, bytes);
  }

  /** Waits (at most `ms`) for the first received packet of `cmd` not yet taken, and takes it. */
  async next(cmd: string, ms = 5000): Promise<Packet> {
    await waitFor(() => this.packets.some((p) => p.cmd === cmd), ms, `an MQTT ${cmd}`);
    const i = this.packets.findIndex((p) => p.cmd === cmd);
    return this.packets.splice(i, 1)[0];
  }

  /** Waits (at most `ms`) until the broker has closed the connection. */
  async closedWithin(ms = 5000): Promise<void> {
    await waitFor(() => this.closed, ms, "the broker to close the connection");
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Closed already.
    }
  }

  /** Closes and waits for the read loop to end. */
  async end(): Promise<void> {
    this.close();
    await this.#reading;
  }
}

/** Payloads of the PUBLISH packets `c` received and no one took yet. */
export function payloads(c: RawMqtt): string[] {
  return c.packets.filter((p) => p.cmd === "publish")
    .map((p) => String((p as mqttPacket.IPublishPacket).payload));
}

/**
 * A persistent MQTT 5 session on `#` (or `filters`, QoS 1) with Receive
 * Maximum 1 whose socket never reads (CONNECT and SUBSCRIBE written,
 * nothing read back): one QoS 1 delivery fills its window for good.
 * Another `qos` or `receiveMaximum` may be asked.
 */
export function stalledSession(
  port: number,
  clientId: string,
  expiry = 3600,
  filters = ["#"],
  { qos = 1, receiveMaximum = 1 }: { qos?: 0 | 1 | 2; receiveMaximum?: number } = {},
): Promise<Deno.Conn> {
  return subscribedSocket(
    port,
    {
      clientId,
      clean: false,
      properties: { sessionExpiryInterval: expiry, receiveMaximum },
    },
    filters.map((topic) => ({ topic, qos })),
    5,
  );
}

/** A TCP connection with a CONNECT (`fields`) and a SUBSCRIBE written, nothing read back. */
async function subscribedSocket(
  port: number,
  fields: Record<string, unknown>,
  subscriptions: { topic: string; qos: 0 | 1 | 2 }[],
  protocolVersion: 4 | 5,
): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const opts = { protocolVersion };
  await writeAll(
    conn,
    new Uint8Array(Buffer.concat([
      mqttPacket.generate(
        { cmd: "connect", protocolId: "MQTT", protocolVersion, keepalive: 0, ...fields } as Packet,
        opts,
      ),
      mqttPacket.generate({ cmd: "subscribe", messageId: 1, subscriptions } as Packet, opts),
    ])),
  );
  return conn;
}

/**
 * A clean 3.1.1 subscriber to `filter` (QoS 0) that reads every byte as it
 * comes and parses nothing; `chunk` bytes a read at most, `pauseMs` between
 * reads (a reader slower than the broker, that keeps reading).
 */
export interface ByteReader {
  conn: Deno.Conn;
  /** Bytes read so far (its CONNACK and SUBACK included). */
  bytes(): number;
  /** Resolves when its connection ends (closed by either side). */
  ended: Promise<void>;
}

export async function byteReader(
  port: number,
  filter: string,
  { chunk = 1 << 20, pauseMs = 0 } = {},
): Promise<ByteReader> {
  const conn = await subscribedSocket(
    port,
    { clientId: "honest", clean: true },
    [{ topic: filter, qos: 0 }],
    4,
  );
  let bytes = 0;
  const ended = (async () => {
    const buf = new Uint8Array(chunk);
    while (true) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return;
      bytes += n;
      if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  })();
  return { conn, bytes: () => bytes, ended };
}

/** Payloads of the PUBLISHes `c` gets until none came for `quietMs`, each acknowledged. */
export async function drainAcking(c: RawMqtt, quietMs: number): Promise<string[]> {
  const out: string[] = [];
  let last = Date.now();
  while (Date.now() - last < quietMs) {
    const got = c.packets.filter((p) => p.cmd === "publish") as mqttPacket.IPublishPacket[];
    if (got.length === 0) {
      await sleep(20);
      continue;
    }
    c.packets.splice(0, c.packets.length, ...c.packets.filter((p) => p.cmd !== "publish"));
    last = Date.now();
    for (const p of got) {
      out.push(String(p.payload));
      if (p.qos > 0) await c.send({ cmd: "puback", messageId: p.messageId } as never, 5);
    }
  }
  return out;
}
