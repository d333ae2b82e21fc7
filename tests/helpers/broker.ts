/**
 * Helpers for broker tests: a broker run in-process on 127.0.0.1 port 0,
 * and a small wire client that subscribes, publishes and records what
 * arrives. Every wait is bounded.
 */
import assert from "node:assert/strict";
import { decode as mpDecode, encode as mpEncode } from "@msgpack/msgpack";
import { mergeOptions, roleSpec } from "../../config/mod.ts";
import { broker } from "../../roles/broker/mod.ts";
import { codecByName, dial, type Peer, readDelivery, TopicCache } from "../../wire/mod.ts";
import { frame, jsonFrame, rawHandshake, RawReader, waitFor, writeAll } from "./raw.ts";
import { distCommand } from "./dist.ts";

const decoder = new TextDecoder();

export interface Delivery {
  sid: number;
  topic: string;
  value: unknown;
  retained: boolean;
}

/** A running in-process broker. */
export interface TestBroker {
  port: number;
  address: string;
  stop(): Promise<void>;
}

/** Starts `dist broker --port 0` in this process with extra options (camelCase keys). */
export async function startBroker(options: Record<string, unknown> = {}): Promise<TestBroker> {
  const abort = new AbortController();
  let listening!: (port: number) => void;
  const bound = new Promise<number>((resolve) => listening = resolve);
  const done = broker.run(
    mergeOptions(roleSpec(broker), { port: 0, heartbeat: 5000, ...options }),
    {
      signal: abort.signal,
      positionals: [],
      onListening: (addr) => listening(addr.port),
    },
  );
  const port = await Promise.race([bound, done.then(() => -1)]);
  if (port < 0) throw new Error("Broker exited before listening");
  return {
    port,
    address: `127.0.0.1:${port}`,
    async stop() {
      abort.abort();
      await done;
    },
  };
}

/** Runs `body` with a fresh in-process broker, stopped afterwards. */
export async function withBroker(
  body: (b: TestBroker) => Promise<void>,
  options: Record<string, unknown> = {},
): Promise<void> {
  const b = await startBroker(options);
  try {
    await body(b);
  } finally {
    await b.stop();
  }
}

/** A wire client of the broker that records deliveries and new-topic notices. */
export class BrokerClient {
  readonly peer: Peer;
  readonly deliveries: Delivery[];
  readonly created: { sid: number; topic: string }[];

  private constructor(peer: Peer, deliveries: Delivery[], created: BrokerClient["created"]) {
    this.peer = peer;
    this.deliveries = deliveries;
    this.created = created;
  }

  static async connect(port: number, codec = "json", name = "test"): Promise<BrokerClient> {
    const deliveries: Delivery[] = [];
    const created: BrokerClient["created"] = [];
    const peer = await dial({ host: "127.0.0.1", port }, {
      role: "test",
      name,
      codec: codecByName(codec),
      heartbeatMs: 5000,
      onNotification: (method, params) => {
        const p = params as Record<string, unknown>;
        if (method === "broker.message") deliveries.push(p as unknown as Delivery);
        else if (method === "broker.topic_created") {
          created.push(p as { sid: number; topic: string });
        }
      },
    });
    return new BrokerClient(peer, deliveries, created);
  }

  subscribe(topic: string, extra: Record<string, unknown> = {}) {
    return this.peer.call("broker.subscribe", { topic, ...extra }) as Promise<
      { sid: number; topic: string; topics: string[]; topic_count: number }
    >;
  }

  /** Fire-and-forget. */
  publish(topic: string, value: unknown, retain?: boolean): void {
    this.peer.notify(
      "broker.publish",
      retain === undefined ? { topic, value } : {
        topic,
        value,
        retain,
      },
    );
  }

  /** Confirmed: resolves once the broker has routed it. */
  confirm(topic: string, value: unknown, retain?: boolean) {
    return this.peer.call("broker.publish", { topic, value, retain }) as Promise<
      { topic: string; deliveries: number }
    >;
  }

  stats(): Promise<Record<string, unknown>> {
    return this.peer.call("sys.stats") as Promise<Record<string, unknown>>;
  }

  /** Waits (at most `ms`) until `n` deliveries have arrived. */
  async received(n: number, ms = 5000): Promise<Delivery[]> {
    await waitFor(() => this.deliveries.length >= n, ms, `${n} deliveries (got some fewer)`);
    return this.deliveries;
  }

  close(): void {
    this.peer.close();
  }
}

/** Polls the broker's stats until `check` holds (at most `ms`). */
export async function statsUntil(
  c: BrokerClient,
  check: (stats: Record<string, unknown>) => boolean,
  ms = 5000,
): Promise<Record<string, unknown>> {
  const end = performance.now() + ms;
  while (true) {
    const stats = await c.stats();
    if (check(stats)) return stats;
    if (performance.now() > end) {
      throw new Error(`Stats never matched within ${ms} ms: ${JSON.stringify(stats)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A `dist consumer` (or any non-listening dist process) whose output is read as it comes. */
export interface Streaming {
  child: Deno.ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Waits (at most `ms`) until stdout or stderr matches. */
  until(
    stream: "stdout" | "stderr",
    pattern: RegExp | ((text: string) => boolean),
    ms?: number,
  ): Promise<void>;
  /** Sends `signal` (default SIGTERM) and waits for the exit (SIGKILL after 5 s). */
  stop(signal?: Deno.Signal): Promise<number>;
  /** Waits for the exit by itself (SIGKILL after `ms`). */
  exited(ms?: number): Promise<number>;
}

/** Starts `dist ...args` and reads its stdout and stderr in the background. */
export function streamDist(args: string[]): Streaming {
  const { exe, args: argv } = distCommand(args);
  const child = new Deno.Command(exe, {
    args: argv,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const text = { stdout: "", stderr: "" };
  const pump = async (name: "stdout" | "stderr", stream: ReadableStream<Uint8Array>) => {
    try {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) text[name] += chunk;
    } catch {
      // The child was killed: what was read is all there is.
    }
  };
  const drained = Promise.all([pump("stdout", child.stdout), pump("stderr", child.stderr)]);
  const exited = async (ms = 10_000) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const status = await Promise.race([
      child.status,
      new Promise<null>((r) => timer = setTimeout(() => r(null), ms)),
    ]);
    clearTimeout(timer);
    if (status === null) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited just now.
      }
    }
    const { code } = await child.status;
    await drained;
    return status === null ? -1 : code;
  };
  return {
    child,
    stdout: () => text.stdout,
    stderr: () => text.stderr,
    async until(stream, pattern, ms = 10_000) {
      const ok = typeof pattern === "function" ? pattern : (t: string) => pattern.test(t);
      await waitFor(() => ok(text[stream]), ms, `${stream} to match; stderr:\n${text.stderr}`);
    },
    async stop(signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch {
        // Already gone.
      }
      return await exited(5000);
    },
    exited,
  };
}

/**
 * A subscriber over a raw socket: handshake and subscribe, then it reads
 * only when the test does (a subscriber that stops reading, for slow-consumer
 * tests). The caller closes `conn`.
 */
export async function rawSubscriber(
  port: number,
  params: Record<string, unknown>,
  hello: Record<string, unknown> = {},
): Promise<{ conn: Deno.Conn; reader: RawReader }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new RawReader(conn);
  try {
    await rawHandshake(conn, reader, hello);
    await writeAll(conn, jsonFrame({ id: 1, method: "broker.subscribe", params }));
    const answer = await reader.json();
    if (answer?.id !== 1 || answer.result === undefined) {
      throw new Error(`Subscribe failed: ${JSON.stringify(answer)}`);
    }
    return { conn, reader };
  } catch (err) {
    conn.close();
    throw err;
  }
}

/** A raw socket that said hello in `codec` and was welcomed. The caller closes `conn`. */
export async function rawClient(
  port: number,
  codec: "json" | "msgpack",
): Promise<{ conn: Deno.Conn; reader: RawReader }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new RawReader(conn);
  await writeAll(conn, jsonFrame({ op: "hello", v: 1, codec, role: "raw", name: "raw" }));
  assert.equal((await reader.json())?.op, "welcome");
  return { conn, reader };
}

/**
 * A JSON and a MessagePack raw subscriber to `topic`; `next()` reads the
 * next delivery to each: the JSON one's value text, the MessagePack one's
 * value. The caller closes `sj.conn` and `sm.conn`.
 */
export async function codecSubscribers(port: number, topic: string) {
  const sj = await rawClient(port, "json");
  const sm = await rawClient(port, "msgpack");
  try {
    await writeAll(sj.conn, jsonFrame({ id: 1, method: "broker.subscribe", params: { topic } }));
    await writeAll(
      sm.conn,
      frame(mpEncode({ id: 1, method: "broker.subscribe", params: { topic } })),
    );
    assert.ok((await sj.reader.json())?.result);
    assert.ok((mpDecode((await sm.reader.frame())!) as { result?: unknown }).result);
  } catch (err) {
    sj.conn.close();
    sm.conn.close();
    throw err;
  }
  const topics = new TopicCache();
  const next = async (): Promise<{ text: string; value: unknown }> => {
    let f: Uint8Array;
    do f = (await sj.reader.frame())!; while (
      JSON.parse(decoder.decode(f)).method !== "broker.message"
    );
    const d = readDelivery(f, topics)!;
    let m: { method: string; params: { value: unknown } };
    do m = mpDecode((await sm.reader.frame())!) as typeof m; while (
      m.method !== "broker.message"
    );
    return { text: decoder.decode(d.value), value: m.params.value };
  };
  return { sj, sm, next };
}
