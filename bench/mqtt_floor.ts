/**
 * The floor under an idle MQTT connection on this runtime (issue 18: memory
 * per idle connection ≤ Mosquitto's): what a socket costs a Deno server that
 * does nothing else, beside what dist's MQTT front costs, split by where the
 * bytes live.
 *
 *   deno task bench mqtt-floor [--runs N] [--quick]
 *
 * For each server mode a fresh process (this file, `serve MODE`) is started
 * and another process (`bench/idle_client.ts`) opens N connections to it and
 * holds them (N = 3,000; 1,000 with --quick). After a full collection the
 * server reports, per connection: RSS growth, V8 heap used, V8 heap
 * committed, ArrayBuffer bytes, and the C heap in use (glibc `mallinfo2`,
 * through FFI: where the Rust side of the runtime — tokio's registration, the
 * resource table entry, a pending op's future — keeps its part). Then the
 * client closes every connection and the server says how many sockets it
 * still holds open: a socket with no read pending never learns that its
 * peer left (it stays in CLOSE_WAIT until the process closes it).
 *
 * Modes: `hold` (the accepted Deno.Conn, never read: the least a socket
 * costs, and a server that cannot serve anyone), `read1`, `read512`,
 * `read4096` (one read of that many bytes always pending, a fresh buffer
 * per connection), `node` (node:net under Deno, 'data' events), `dist`
 * (`dist broker --mqtt-port` in process; its client sends CONNECT and one
 * QoS 1 SUBSCRIBE per connection, as `bench mqtt`'s idle figure).
 */
import { fileURLToPath } from "node:url";
import { type BenchFlags, median } from "./_common.ts";
import { fdLimit } from "./idle.ts";

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));

const MODES = ["hold", "read1", "read512", "read4096", "node", "dist"] as const;

/** What the server reports, in bytes (sockets: counts). */
interface Usage {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  arrayBuffers: number;
  malloc: number;
  fds: number;
}

// ---- the server side (`serve MODE`) ----

function mallocInUse(): number {
  try {
    const lib = Deno.dlopen(
      "libc.so.6",
      {
        mallinfo2: { parameters: [], result: { struct: Array(10).fill("usize") } },
      } as const,
    );
    const raw = lib.symbols.mallinfo2() as Uint8Array;
    const v = new BigUint64Array(raw.buffer, raw.byteOffset, 10);
    // uordblks (in use in arenas) + hblkhd (in use in mmapped blocks).
    const used = Number(v[7]) + Number(v[4]);
    lib.close();
    return used;
  } catch {
    return NaN;
  }
}

function usage(): Usage {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) gc?.();
  const m = Deno.memoryUsage();
  // Sockets this process holds open (the listener's among them).
  let fds = 0;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${e.name}`).startsWith("socket:")) fds++;
    } catch {
      // Closed meanwhile (readDir's own).
    }
  }
  return {
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    arrayBuffers: (m as { arrayBuffers?: number }).arrayBuffers ?? m.external,
    malloc: mallocInUse(),
    fds,
  };
}

async function serve(mode: string): Promise<void> {
  let port: number;
  if (mode === "node") {
    const net = await import("node:net");
    const kept = new Set<unknown>();
    const server = net.createServer((socket) => {
      kept.add(socket);
      socket.on("data", () => {});
      socket.on("error", () => {});
      socket.on("close", () => kept.delete(socket));
    });
    port = await new Promise<number>((resolve) =>
      server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port))
    );
  } else if (mode === "dist") {
    const { startMqttBroker } = await import("../tests/helpers/mqtt.ts");
    const b = await startMqttBroker({ maxConnections: 20_000, logLevel: "warning" });
    port = b.mqttPort;
  } else {
    const size = mode === "hold" ? 0 : Number(mode.replace("read", ""));
    if (!(size >= 0)) throw new Error(`mqtt_floor: unknown mode ${mode}`);
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    port = (listener.addr as Deno.NetAddr).port;
    const held = new Set<Deno.Conn>();
    (async () => {
      for await (const conn of listener) {
        if (size === 0) {
          held.add(conn);
          continue;
        }
        (async () => {
          const buf = new Uint8Array(size);
          try {
            while ((await conn.read(buf)) !== null) { /* discard */ }
          } catch {
            // Gone.
          } finally {
            try {
              conn.close();
            } catch { /* closed */ }
          }
        })();
      }
    })();
  }
  console.log(port);
  // One line in ("usage"), one JSON line out.
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let pending = "";
  for await (const chunk of lines) {
    pending += chunk;
    while (pending.includes("\n")) {
      const i = pending.indexOf("\n");
      pending = pending.slice(i + 1);
      console.log(JSON.stringify(usage()));
    }
  }
  Deno.exit(0);
}

// ---- the driver ----

class Server {
  #child: Deno.ChildProcess;
  #lines: ReadableStreamDefaultReader<string>;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #buffered = "";
  port = 0;

  constructor(mode: string) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--v8-flags=--expose-gc", here("./mqtt_floor.ts"), "serve", mode],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#lines = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    this.#writer = this.#child.stdin.getWriter();
  }

  async line(): Promise<string> {
    while (!this.#buffered.includes("\n")) {
      const { value, done } = await this.#lines.read();
      if (done) throw new Error("mqtt_floor: the server ended");
      this.#buffered += value;
    }
    const i = this.#buffered.indexOf("\n");
    const line = this.#buffered.slice(0, i);
    this.#buffered = this.#buffered.slice(i + 1);
    return line;
  }

  async usage(): Promise<Usage> {
    await this.#writer.write(new TextEncoder().encode("usage\n"));
    return JSON.parse(await this.line());
  }

  async stop(): Promise<void> {
    this.#child.kill("SIGKILL");
    await this.#child.status;
    await this.#lines.cancel().catch(() => {});
  }
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One mode: per-connection figures with `count` connections, and sockets left after they close. */
async function measureMode(mode: string, count: number) {
  const server = new Server(mode);
  try {
    server.port = Number(await server.line());
    await pause(300);
    const before = await server.usage();
    const client = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        here("./idle_client.ts"),
        mode === "dist" ? "mqtt" : "raw",
        String(server.port),
        String(count),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = client.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const ready = (await reader.read()).value ?? "";
    if (!ready.startsWith(`ready ${count}`)) throw new Error(`idle client: ${ready}`);
    await pause(1500);
    const held = await server.usage();
    await client.stdin.close().catch(() => {});
    await client.status;
    reader.releaseLock();
    await client.stdout.cancel().catch(() => {});
    await pause(1500);
    const after = await server.usage();
    const per = (k: keyof Usage) => (held[k] - before[k]) / count;
    return {
      rss: per("rss"),
      heapUsed: per("heapUsed"),
      heapTotal: per("heapTotal"),
      arrayBuffers: per("arrayBuffers"),
      malloc: per("malloc"),
      leftOpen: after.fds - before.fds,
    };
  } finally {
    await server.stop();
  }
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  let count = flags.quick ? 1000 : 3000;
  const limit = await fdLimit();
  if (limit < count + 200) count = limit - 200;
  const runs = flags.quick ? 1 : Math.min(flags.runs, 3);
  console.log(
    `${runs} round(s) of ${count} idle connections per mode; bytes per connection after a full ` +
      `collection (rss, V8 heap used / committed, ArrayBuffers, C heap in use by malloc)`,
  );
  const got = new Map<string, Record<string, number[]>>();
  for (let round = 1; round <= runs; round++) {
    const order = round % 2 ? [...MODES] : [...MODES].reverse();
    for (const mode of order) {
      const r = await measureMode(mode, count);
      const slot = got.get(mode) ?? {};
      for (const [k, v] of Object.entries(r)) (slot[k] ??= []).push(v);
      got.set(mode, slot);
      console.log(
        `round ${round} ${mode}: ` +
          Object.entries(r).map(([k, v]) => `${k} ${Math.round(v)}`).join(", "),
      );
    }
  }
  const out: Record<string, number> = {};
  const rows = [
    "| mode     | RSS B/conn | V8 heap used | V8 committed | ArrayBuffers | malloc | open after peers left |",
    "| -------- | ---------: | -----------: | -----------: | -----------: | -----: | --------------------: |",
  ];
  for (const mode of MODES) {
    const m = Object.fromEntries(
      Object.entries(got.get(mode)!).map(([k, v]) => [k, median(v)]),
    );
    for (const [k, v] of Object.entries(m)) out[`${mode}_${k}`] = v;
    const b = (k: string) => Math.round(m[k]).toLocaleString("en-US");
    rows.push(
      `| ${mode.padEnd(8)} | ${b("rss")} | ${b("heapUsed")} | ${b("heapTotal")} | ` +
        `${b("arrayBuffers")} | ${b("malloc")} | ${b("leftOpen")} of ${count} |`,
    );
  }
  console.log(rows.join("\n"));
  return out;
}

if (import.meta.main && Deno.args[0] === "serve") await serve(Deno.args[1]);
