/**
 * The tls suite (issue 15's figures): TLS against plain TCP in the same
 * run, the two sides alternating which goes first in each round; medians.
 *
 * 1. RPC echo, `dist client --bench` against `dist server`, 64 in flight,
 *    64-byte payload: requests/s, TLS / plain (target ≥ 0.7×); also a TLS
 *    server on Deno's own listener (`DIST_TLS_LISTENER=deno`), for what the
 *    node:tls listener costs;
 * 2. broker 1 publisher → 1 subscriber, 128-byte values, fire-and-forget
 *    (bench/broker.ts's run): messages/s, TLS / plain (target ≥ 0.7×);
 * 3. connections set up per second (TCP, TLS handshake, dist hello, close),
 *    16 at once, and the CPU each costs the server and the dialer;
 * 4. server RSS per idle connection (handshaked, heartbeats going), plain
 *    (about 17 KiB) and TLS.
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { startDist } from "../tests/helpers/dist.ts";
import { dial } from "../wire/mod.ts";
import { issueCert, makeCa } from "../cert/mod.ts";
import { type BenchFlags, clientBench, cpuUs, Rounds, rssOf } from "./_common.ts";
import { loadRun } from "./broker.ts";

const IDLE_CLIENT = fileURLToPath(new URL("./idle_client.ts", import.meta.url));

/** A CA and a server certificate for 127.0.0.1, in a temporary folder. */
async function makePki() {
  const dir = await Deno.makeTempDir({ prefix: "dist-bench-tls-" });
  const ca = await makeCa({ name: "bench CA" });
  const server = await issueCert(ca, { name: "server", hosts: ["127.0.0.1"] });
  const files = {
    ca: join(dir, "ca.crt"),
    cert: join(dir, "server.crt"),
    key: join(dir, "server.key"),
  };
  await Deno.writeTextFile(files.ca, ca.cert);
  await Deno.writeTextFile(files.cert, server.cert);
  await Deno.writeTextFile(files.key, server.key, { mode: 0o600 });
  return { dir, files, caPem: ca.cert, listen: ["--tls-cert", files.cert, "--tls-key", files.key] };
}

/** `count` connections set up and closed, `parallel` at once: per second, and CPU per connection. */
async function setups(port: number, pid: number, count: number, ca?: string) {
  const parallel = 16;
  let next = 0;
  const cpu0 = [cpuUs(pid), cpuUs("self")];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next++ < count) {
      const peer = await dial({ host: "127.0.0.1", port }, {
        role: "bench",
        name: "hs",
        tls: ca === undefined ? undefined : { ca },
        connectTimeoutMs: 10_000,
      });
      peer.close();
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  const cpu1 = [cpuUs(pid), cpuUs("self")];
  return {
    perS: count / seconds,
    serverMs: (cpu1[0] - cpu0[0]) / count / 1000,
    clientMs: (cpu1[1] - cpu0[1]) / count / 1000,
  };
}

/** Server RSS growth per idle connection (KiB), `count` of them held by another process. */
async function idleKib(pid: number, port: number, count: number, caFile?: string) {
  await new Promise((r) => setTimeout(r, 500));
  const before = rssOf(pid);
  const args = ["run", "-A", IDLE_CLIENT, "dist", String(port), String(count)];
  const client = new Deno.Command(Deno.execPath(), {
    args: caFile === undefined ? args : [...args, caFile],
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

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const messages = flags.quick ? 100_000 : 500_000;
  const connections = flags.quick ? 300 : 2000;
  const idle = flags.quick ? 500 : 2000;
  console.log(
    `${flags.runs} round(s), plain and TLS alternating which goes first; medians; RPC echo ` +
      `${flags.duration} at c=64 over ${flags.connections} connection(s); broker 1→1 ` +
      `${messages} msgs of 128 B; ${connections} connection setups 16 at once; ${idle} idle ` +
      `connections; TLS 1.3, ECDSA P-256 certificates`,
  );
  const pki = await makePki();
  const tlsArgs = ["--tls-ca", pki.files.ca];
  const max = ["--max-connections", String(idle + 100)];
  const servers = {
    plain: await startDist(["server", "--port", "0", ...max]),
    tls: await startDist(["server", "--port", "0", ...max, ...pki.listen]),
    tlsDeno: await startDist(["server", "--port", "0", ...pki.listen], {
      env: { DIST_TLS_LISTENER: "deno" },
    }),
  };
  const brokers = {
    plain: await startDist(["broker", "--port", "0"]),
    tls: await startDist(["broker", "--port", "0", ...pki.listen]),
  };
  const rounds = new Rounds();
  type Side = "plain" | "tls";
  try {
    for (let round = 1; round <= flags.runs; round++) {
      const order: Side[] = round % 2 ? ["plain", "tls"] : ["tls", "plain"];
      const rps: Record<string, number> = {};
      const echo = async (side: "plain" | "tls" | "tlsDeno") => {
        const r = await clientBench(servers[side].address, [
          ...(side === "plain" ? [] : tlsArgs),
          "--concurrency",
          "64",
          "--connections",
          String(flags.connections),
          "--payload",
          "64",
          "--duration",
          flags.duration,
        ]);
        if (r.ok !== r.requests) throw new Error(`Errors under load: ${JSON.stringify(r.errors)}`);
        rps[side] = r.rps;
      };
      for (const side of order) await echo(side);
      await echo("tlsDeno");
      rounds.add("plain_c64_rps", rps.plain);
      rounds.add("tls_c64_rps", rps.tls);
      rounds.add("tls_deno_listener_c64_rps", rps.tlsDeno);
      rounds.add("ratio_c64", rps.tls / rps.plain);
      rounds.add("ratio_c64_deno_listener", rps.tlsDeno / rps.plain);

      const msgs: Record<string, number> = {};
      for (const side of order) {
        const b = brokers[side];
        const r = await loadRun("dist", { port: b.port, pid: b.child.pid }, 1, messages, {
          tlsCa: side === "tls" ? pki.caPem : undefined,
        });
        msgs[side] = r.msgsPerS;
        rounds.add(`${side}_broker_1to1_server_cpu_us_per_msg`, r.serverCpuUs);
      }
      rounds.add("plain_broker_1to1_msgs_per_s", msgs.plain);
      rounds.add("tls_broker_1to1_msgs_per_s", msgs.tls);
      rounds.add("ratio_broker_1to1", msgs.tls / msgs.plain);

      for (const side of order) {
        const s = servers[side];
        const r = await setups(
          s.port,
          s.child.pid,
          connections,
          side === "tls" ? pki.caPem : undefined,
        );
        rounds.add(`${side}_setups_per_s`, r.perS);
        rounds.add(`${side}_setup_server_cpu_ms`, r.serverMs);
        rounds.add(`${side}_setup_client_cpu_ms`, r.clientMs);
      }

      for (const side of order) {
        const s = servers[side];
        try {
          const ca = side === "tls" ? pki.files.ca : undefined;
          rounds.add(`${side}_idle_kib_per_conn`, await idleKib(s.child.pid, s.port, idle, ca));
        } catch (err) {
          // Seen once at load 16: one TLS dial of the 2,000 failed its hello (read_error).
          console.log(`tls round ${round}: idle ${side} failed: ${(err as Error).message}`);
        }
      }
      rounds.printRound("tls", round);
    }
  } finally {
    for (const s of [...Object.values(servers), ...Object.values(brokers)]) await s.stop();
    await Deno.remove(pki.dir, { recursive: true });
  }
  const m = rounds.medians();
  const f = (x: number) => Math.round(x).toLocaleString("en");
  console.log(
    `RPC echo c=64:     plain ${f(m.plain_c64_rps)} req/s  TLS ${f(m.tls_c64_rps)} ` +
      `(${m.ratio_c64.toFixed(2)}×, target ≥ 0.7×)  TLS on Deno.listenTls ` +
      `${f(m.tls_deno_listener_c64_rps)} (${m.ratio_c64_deno_listener.toFixed(2)}×)`,
  );
  console.log(
    `broker 1→1:        plain ${f(m.plain_broker_1to1_msgs_per_s)} msgs/s  TLS ` +
      `${f(m.tls_broker_1to1_msgs_per_s)} (${m.ratio_broker_1to1.toFixed(2)}×, target ≥ 0.7×); ` +
      `broker CPU ${m.plain_broker_1to1_server_cpu_us_per_msg.toFixed(2)} / ` +
      `${m.tls_broker_1to1_server_cpu_us_per_msg.toFixed(2)} µs per msg`,
  );
  console.log(
    `connection setups: plain ${f(m.plain_setups_per_s)}/s (CPU server ` +
      `${m.plain_setup_server_cpu_ms.toFixed(2)} ms, dialer ${
        m.plain_setup_client_cpu_ms.toFixed(2)
      } ms ` +
      `each)  TLS ${f(m.tls_setups_per_s)}/s (CPU server ${
        m.tls_setup_server_cpu_ms.toFixed(2)
      } ms, ` +
      `dialer ${m.tls_setup_client_cpu_ms.toFixed(2)} ms each)`,
  );
  console.log(
    `idle connection:   plain ${m.plain_idle_kib_per_conn?.toFixed(1)} KiB  TLS ` +
      `${m.tls_idle_kib_per_conn?.toFixed(1)} KiB of server RSS each`,
  );
  return m;
}
