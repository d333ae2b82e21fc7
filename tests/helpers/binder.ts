/**
 * Helpers for binder tests: binders run in this process (fast to start, on
 * port 0 or a given port), RPC connections to them, polling with a bound,
 * and a TCP proxy that can cut the network between two processes.
 */
import { mergeOptions, type Options, roleSpec } from "../../config/mod.ts";
import { binder } from "../../roles/binder/mod.ts";
import {
  dial,
  listen,
  type Listener,
  type NotificationHandler,
  type Peer,
} from "../../wire/mod.ts";
import { type DistProcess, freePort, runDist, startDist } from "./dist.ts";

/** A binder running in this process. */
export interface LocalBinder {
  port: number;
  address: string;
  name: string;
  /** A connection to it, opened on first use and closed by stop(). */
  rpc(): Promise<Peer>;
  call(method: string, params?: unknown): Promise<unknown>;
  stop(): Promise<void>;
}

/**
 * Starts `dist binder` in this process with `flags` (camelCase option keys:
 * `{ peers: ["127.0.0.1:7001"], ttl: 500 }`), on port 0 unless told.
 */
export async function startBinder(flags: Options = {}): Promise<LocalBinder> {
  const abort = new AbortController();
  const options = mergeOptions(roleSpec(binder), { port: 0, ...flags });
  let listening!: (addr: { port: number; name: string }) => void;
  const bound = new Promise<{ port: number; name: string }>((r) => listening = r);
  const done = binder.run(options, {
    signal: abort.signal,
    positionals: [],
    onListening: listening,
  });
  const { port, name } = await Promise.race([
    bound,
    done.then(() => {
      throw new Error("binder stopped before listening");
    }),
  ]);
  const conns: Peer[] = [];
  let main: Promise<Peer> | undefined;
  const self: LocalBinder = {
    port,
    name,
    address: `127.0.0.1:${port}`,
    rpc: () =>
      main ??= connectTo(self.address, "client", undefined, flags.token as string | undefined)
        .then((p) => (conns.push(p), p)),
    call: async (method, params) => (await self.rpc()).call(method, params, { timeout: 10_000 }),
    async stop() {
      for (const c of conns) c.close();
      abort.abort();
      await done;
    },
  };
  return self;
}

/** `binder.register` params of an instance of "compute" on 127.0.0.1:`port` (a minute's lease). */
export const reg = (port: number, extra: Record<string, unknown> = {}) => ({
  service: "compute",
  host: "127.0.0.1",
  port,
  ttl_ms: 60_000,
  ...extra,
});

/**
 * A new RPC connection to `address`, as a client (or as `role` says in its
 * handshake), handing notifications to `onNotification`.
 */
export function connectTo(
  address: string,
  role = "client",
  onNotification?: NotificationHandler,
  token?: string,
): Promise<Peer> {
  const [host, port] = address.split(":");
  return dial({ host, port: Number(port) }, {
    role,
    name: "test",
    timeoutMs: 10_000,
    onNotification,
    credentials: token === undefined ? undefined : { token },
  });
}

/** Polls `check` every 20 ms until it returns true; throws with `what` after `timeoutMs`. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 8000,
): Promise<number> {
  const t0 = performance.now();
  while (!(await check())) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return performance.now() - t0;
}

/**
 * The ids of a binder's live instances of `service` (all services when
 * undefined), every page of them; given an address, over a connection
 * opened for the call.
 */
export async function ids(b: LocalBinder | Peer | string, service?: string): Promise<string[]> {
  const peer = typeof b === "string" ? await connectTo(b) : b;
  try {
    const out: string[] = [];
    let after: string | undefined;
    do {
      const res = await peer.call("binder.list", { service, after }) as {
        instances: { id: string }[];
        next?: string;
      };
      out.push(...res.instances.map((i) => i.id));
      after = res.next;
    } while (after !== undefined);
    return out.sort();
  } finally {
    if (typeof b === "string") (peer as Peer).close();
  }
}

/**
 * A TCP proxy to `target` on 127.0.0.1 port 0 that can cut the network:
 * `cut()` drops every connection through it and refuses new ones (as a
 * failed link does); `heal()` lets connections through again.
 */
export class CuttableProxy {
  readonly port: number;
  #listener: Deno.TcpListener;
  #target: number;
  #pairs = new Set<[Deno.Conn, Deno.Conn]>();
  #cut = false;
  #done: Promise<void>;

  constructor(targetPort: number) {
    this.#target = targetPort;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.#done = this.#accept();
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  cut(): void {
    this.#cut = true;
    for (const pair of this.#pairs) this.#drop(pair);
  }

  heal(): void {
    this.#cut = false;
  }

  async close(): Promise<void> {
    this.cut();
    this.#listener.close();
    await this.#done;
  }

  async #accept(): Promise<void> {
    for await (const conn of this.#listener) {
      if (this.#cut) {
        conn.close();
        continue;
      }
      this.#pipe(conn).catch(() => {});
    }
  }

  async #pipe(inbound: Deno.Conn): Promise<void> {
    let outbound: Deno.Conn;
    try {
      outbound = await Deno.connect({ hostname: "127.0.0.1", port: this.#target });
    } catch {
      inbound.close();
      return;
    }
    const pair: [Deno.Conn, Deno.Conn] = [inbound, outbound];
    this.#pairs.add(pair);
    const copy = async (from: Deno.Conn, to: Deno.Conn) => {
      const buf = new Uint8Array(64 * 1024);
      try {
        for (;;) {
          const n = await from.read(buf);
          if (n === null) break;
          let off = 0;
          while (off < n) off += await to.write(buf.subarray(off, n));
        }
      } catch {
        // Dropped by cut() or by either end.
      }
      this.#drop(pair);
    };
    await Promise.all([copy(inbound, outbound), copy(outbound, inbound)]);
  }

  #drop(pair: [Deno.Conn, Deno.Conn]): void {
    if (!this.#pairs.delete(pair)) return;
    for (const c of pair) {
      try {
        c.close();
      } catch {
        // Already closed.
      }
    }
  }
}

/** Binders as `dist binder` processes on ports chosen in advance, each listing all of them. */
export interface BinderCluster {
  procs: DistProcess[];
  addresses: string[];
  /** `--binders` for a server or a client: every binder. */
  list: string;
  /** Restarts binder `i` on its port (after it was stopped or killed). */
  restart(i: number): Promise<DistProcess>;
  stop(): Promise<void>;
}

export async function startBinderProcs(n: number, args: string[] = []): Promise<BinderCluster> {
  const ports = Array.from({ length: n }, () => freePort());
  const addresses = ports.map((p) => `127.0.0.1:${p}`);
  const list = addresses.join(",");
  const start = (i: number) =>
    startDist(["binder", "--port", String(ports[i]), "--peers", list, ...args]);
  const procs = await Promise.all(ports.map((_, i) => start(i)));
  return {
    procs,
    addresses,
    list,
    async restart(i) {
      return procs[i] = await start(i);
    },
    async stop() {
      await Promise.all(procs.map((p) => p.stop()));
    },
  };
}

/** Starts `dist server --port 0 --service SERVICE --binders BINDERS …` and waits until it registered. */
export async function startService(
  service: string,
  binders: string,
  args: string[] = [],
): Promise<DistProcess> {
  const server = await startDist([
    "server",
    "--port",
    "0",
    "--service",
    service,
    "--binders",
    binders,
    ...args,
  ]);
  try {
    await waitUntil(() => /Registered as /.test(server.stderr()), "the server to register");
  } catch (err) {
    await server.stop();
    throw new Error(`${(err as Error).message}; stderr:\n${server.stderr()}`);
  }
  return server;
}

/** A server in this process that answers `echo` with its text (and its name in `by`), anything else `true`. */
export function echoServer(name: string): Listener {
  return listen({
    port: 0,
    role: "server",
    name,
    by: name,
    onRequest: (method, params) => method === "echo" ? (params as { text: string }).text : true,
  });
}

/** Registers `ports` as instances of `service` at 127.0.0.1 with `binder`, in order, for 10 minutes. */
export async function registerPorts(
  b: LocalBinder,
  service: string,
  ports: number[],
): Promise<void> {
  for (const port of ports) {
    await b.call("binder.register", { service, host: "127.0.0.1", port, ttl_ms: 600_000 });
  }
}

/** `dist client --service compute --timeout 5s ARGS…` through `binder`, and how long it took. */
export async function serviceClient(binder: LocalBinder, ...args: string[]) {
  const t0 = performance.now();
  const res = await runDist(
    ["client", "--binders", binder.address, "--service", "compute", "--timeout", "5s", ...args],
    { timeoutMs: 60_000 },
  );
  return { ...res, ms: performance.now() - t0 };
}
