/**
 * The floor under an idle MQTT connection on this runtime (issue 18: memory
 * per idle connection ≤ Mosquitto's): what a socket costs a Deno server that
 * does nothing else, beside what dist's MQTT front costs, split by where the
 * bytes live.
 *
 *   deno task bench mqtt-floor [--runs N] [--quick]
 *   MQTT_FLOOR_MODES=dist,read512 deno task bench mqtt-floor   (some modes only)
 *
 * For each server mode a fresh process is started and another process
 * (`bench/idle_client.ts`) opens N connections to it and holds them (N =
 * 3,000; 1,000 with --quick). Per connection: the server's RSS growth 2 s
 * after the last connection is open (the moment `bench mqtt` and `bench idle`
 * measure) and 40 s after (V8 gives back what the connections' setup grew
 * some 20–30 s after it: the settled figure); then, after a full collection,
 * V8 heap used and committed, ArrayBuffer bytes and the C heap in use (glibc
 * `mallinfo2` through FFI: where the Rust side of the runtime — tokio's
 * registration, the resource table entry, a pending op's future — keeps its
 * part). Then the client closes every connection and the server says how
 * many sockets it still holds open: a socket with no read pending never
 * learns that its peer left (it stays in CLOSE_WAIT until closed).
 *
 * Modes: `hold` (the accepted Deno.Conn, never read: the least a socket
 * costs, and a server that cannot serve anyone), `read1`, `read512`,
 * `read4096` (one read of that many bytes always pending, a fresh buffer
 * per connection), `node` (node:net under Deno, 'data' events), `dist`
 * (`dist broker --mqtt-port` in process; its client sends CONNECT and one
 * QoS 1 SUBSCRIBE per connection, as `bench mqtt`'s idle figure), and
 * `mosquitto` (Debian's, as `bench mqtt` runs it; RSS and sockets only).
 */
import { fileURLToPath } from "node:url";
import { type BenchFlags, median, onPath, rssOf } from "./_common.ts";
import { startMosquitto } from "./mqtt.ts";
import { fdLimit } from "./idle.ts";
import { serveBare } from "./bare_server.ts";

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
  if (mode === "dist") {
    const { startMqttBroker } = await import("../tests/helpers/mqtt.ts");
    const b = await startMqttBroker({ maxConnections: 20_000, logLevel: "warning" });
    port = b.mqttPort;
  } else {
    port = await serveBare(mode);
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

/** A server measured: one of this file's own (`serve MODE`), or Mosquitto (RSS and sockets only). */
interface Measured {
  port: number;
  usage(): Promise<Usage>;
  stop(): Promise<void>;
}

/** Sockets a process holds open, from /proc. */
function socketsOf(pid: number): number {
  let n = 0;
  for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      if (Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`).startsWith("socket:")) n++;
    } catch {
      // Closed meanwhile.
    }
  }
  return n;
}

async function startMosquittoMeasured(): Promise<Measured> {
  const b = await startMosquitto();
  return {
    port: b.port,
    usage: () =>
      Promise.resolve({
        rss: rssOf(b.pid),
        heapUsed: NaN,
        heapTotal: NaN,
        arrayBuffers: NaN,
        malloc: NaN,
        fds: socketsOf(b.pid),
      }),
    stop: b.stop,
  };
}

class Server implements Measured {
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

  async started(): Promise<this> {
    this.port = Number(await this.line());
    return this;
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

/**
 * One mode: per-connection figures 2 s after `count` connections are open
 * (`bench mqtt`'s and `bench idle`'s moment) and again `settleMs` later
 * (V8 gives back what the connections' setup grew some 20–30 s after it),
 * and the sockets left open once the peers have gone.
 */
async function measureMode(mode: string, count: number, settleMs: number) {
  const server = mode === "mosquitto"
    ? await startMosquittoMeasured()
    : await new Server(mode).started();
  try {
    await pause(300);
    const before = await server.usage();
    const client = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        here("./idle_client.ts"),
        mode === "dist" || mode === "mosquitto" ? "mqtt" : "raw",
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
    const t0 = performance.now();
    await pause(2000);
    const held = await server.usage();
    await pause(settleMs - (performance.now() - t0));
    const settled = await server.usage();
    await client.stdin.close().catch(() => {});
    await client.status;
    reader.releaseLock();
    await client.stdout.cancel().catch(() => {});
    await pause(1500);
    const after = await server.usage();
    const per = (u: Usage, k: keyof Usage) => (u[k] - before[k]) / count;
    return {
      rss: per(held, "rss"),
      rssSettled: per(settled, "rss"),
      heapUsed: per(settled, "heapUsed"),
      heapTotal: per(held, "heapTotal"),
      heapTotalSettled: per(settled, "heapTotal"),
      arrayBuffers: per(settled, "arrayBuffers"),
      malloc: per(settled, "malloc"),
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
  const settleMs = flags.quick ? 5000 : 40_000;
  // MQTT_FLOOR_MODES=dist,read512: some of them (a change to dist measured against its floor).
  const only = Deno.env.get("MQTT_FLOOR_MODES")?.split(",");
  const modes: string[] = [...MODES];
  if (await onPath("mosquitto")) modes.push("mosquitto");
  else console.log("mosquitto not installed: its row skipped");
  if (only !== undefined) modes.splice(0, modes.length, ...modes.filter((m) => only.includes(m)));
  console.log(
    `${runs} round(s) of ${count} idle connections per mode (${modes.join(", ")}); bytes per ` +
      `connection: RSS 2 s after the last was open and ${settleMs / 1000} s after; after a full ` +
      `collection at ${settleMs / 1000} s: V8 heap used, V8 heap committed (also at 2 s), ` +
      `ArrayBuffers, C heap in use (malloc)`,
  );
  const got = new Map<string, Record<string, number[]>>();
  for (let round = 1; round <= runs; round++) {
    const order = round % 2 ? [...modes] : [...modes].reverse();
    for (const mode of order) {
      const r = await measureMode(mode, count, settleMs);
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
    "| mode      | RSS at 2 s | settled | V8 used | V8 committed 2 s / settled | ArrayBuffers | malloc | open after the peers left |",
    "| --------- | ---------: | ------: | ------: | -------------------------: | -----------: | -----: | ------------------------: |",
  ];
  for (const mode of modes) {
    const m = Object.fromEntries(
      Object.entries(got.get(mode)!).map(([k, v]) => [k, median(v)]),
    );
    for (const [k, v] of Object.entries(m)) out[`${mode}_${k}`] = v;
    const b = (k: string) => Number.isNaN(m[k]) ? "–" : Math.round(m[k]).toLocaleString("en-US");
    rows.push(
      `| ${mode.padEnd(9)} | ${b("rss")} | ${b("rssSettled")} | ${b("heapUsed")} | ` +
        `${b("heapTotal")} / ${b("heapTotalSettled")} | ${b("arrayBuffers")} | ${b("malloc")} | ` +
        `${b("leftOpen")} of ${count} |`,
    );
  }
  console.log(rows.join("\n"));
  return out;
}

if (import.meta.main && Deno.args[0] === "serve") await serve(Deno.args[1]);
