/**
 * The idle suite: what one idle connection costs a server, in KiB of RSS.
 *
 * For each server — a bare Deno TCP server reading into a 4 KiB buffer (the
 * floor), `dist server`, and nats-server when it is installed — a client
 * process opens N connections (dist ones complete the handshake and keep
 * heartbeats going; NATS ones send CONNECT and answer PINGs), waits 2 s, and
 * the server's VmRSS growth divided by N is the figure. Servers alternate
 * within each round; medians over the rounds. Target (issue 5): dist ≤ 20 KiB.
 */
import { fileURLToPath } from "node:url";
import { startDist } from "../tests/helpers/dist.ts";
import { type BenchFlags, onPath, Rounds, rssOf } from "./_common.ts";

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));

/** Starts a server that prints its port on its first stdout line. */
async function startPrinting(
  args: string[],
): Promise<{ pid: number; port: number; stop(): Promise<void> }> {
  const child = new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "inherit" })
    .spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const port = Number((await reader.read()).value?.trim());
  reader.releaseLock();
  return {
    pid: child.pid,
    port,
    async stop() {
      child.kill("SIGKILL");
      await child.status;
      await child.stdout.cancel().catch(() => {});
    },
  };
}

async function startNats(): Promise<{ pid: number; port: number; stop(): Promise<void> }> {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const child = new Deno.Command("nats-server", {
    args: ["-a", "127.0.0.1", "-p", String(port)],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const end = performance.now() + 5000;
  while (performance.now() < end) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    pid: child.pid,
    port,
    async stop() {
      child.kill("SIGKILL");
      await child.status;
    },
  };
}

/** Opens `count` connections of `mode` to `port`, waits, returns the server's KiB per connection. */
export async function perConnection(pid: number, port: number, mode: string, count: number) {
  await new Promise((r) => setTimeout(r, 500));
  const before = rssOf(pid);
  const client = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", here("./idle_client.ts"), mode, String(port), String(count)],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = client.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    const line = (await reader.read()).value ?? "";
    if (!line.startsWith(`ready ${count}`)) throw new Error(`idle client: ${line}`);
    await new Promise((r) => setTimeout(r, 2000));
    return (rssOf(pid) - before) / count / 1024;
  } finally {
    await client.stdin.close().catch(() => {});
    await client.status;
    reader.releaseLock();
    await client.stdout.cancel().catch(() => {});
  }
}

/** The file-descriptor limit this process (and its children) has. */
export async function fdLimit(): Promise<number> {
  const out = await new Deno.Command("sh", { args: ["-c", "ulimit -n"] }).output();
  const n = Number(new TextDecoder().decode(out.stdout).trim());
  return Number.isFinite(n) ? n : 1024;
}

/** The bare servers measured, by result key (see bare_server.ts). */
const BARE_MODES = [
  ["bare_kib_per_conn", "read4096"],
  ["bare_read1_kib_per_conn", "read1"],
  ["bare_hold_kib_per_conn", "hold"],
  ["node_net_kib_per_conn", "node"],
] as const;

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  let count = flags.quick ? 1000 : 10_000;
  const limit = await fdLimit();
  if (limit < count + 200) {
    console.log(
      `file descriptor limit ${limit}: measuring ${limit - 200} connections, not ${count}`,
    );
    count = limit - 200;
  }
  const nats = await onPath("nats-server");
  console.log(
    `${flags.runs} round(s) of ${count} idle connections per server; KiB of server RSS each` +
      (nats ? "" : " (nats-server not installed: skipped)"),
  );
  const rounds = new Rounds();
  for (let round = 1; round <= flags.runs; round++) {
    // The runtime's floors (see bare_server.ts): a 4 KiB read pending (this
    // suite's first figure), a 1-byte one, the socket alone, node:net.
    for (const [key, mode] of BARE_MODES) {
      const bare = await startPrinting(["run", "-A", here("./bare_server.ts"), mode]);
      try {
        rounds.add(key, await perConnection(bare.pid, bare.port, "raw", count));
      } finally {
        await bare.stop();
      }
    }
    const dist = await startDist([
      "server",
      "--port",
      "0",
      "--max-connections",
      String(count + 100),
    ]);
    try {
      rounds.add(
        "dist_kib_per_conn",
        await perConnection(dist.child.pid, dist.port, "dist", count),
      );
    } finally {
      await dist.stop();
    }
    if (nats) {
      const server = await startNats();
      try {
        rounds.add(
          "nats_kib_per_conn",
          await perConnection(server.pid, server.port, "nats", count),
        );
      } finally {
        await server.stop();
      }
    }
    rounds.printRound("idle", round);
  }
  const m = rounds.medians();
  console.log(
    `idle connection: dist ${m.dist_kib_per_conn.toFixed(1)} KiB (target ≤ 20), bare Deno ` +
      `${m.bare_kib_per_conn.toFixed(1)} KiB (runtime floors: a 1-byte read pending ` +
      `${m.bare_read1_kib_per_conn.toFixed(1)} KiB, the socket held and never read ` +
      `${m.bare_hold_kib_per_conn.toFixed(1)} KiB, node:net ${
        m.node_net_kib_per_conn.toFixed(1)
      } KiB)` +
      (nats ? `, nats-server ${m.nats_kib_per_conn.toFixed(1)} KiB` : ""),
  );
  return m;
}
