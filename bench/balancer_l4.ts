/**
 * `deno task bench balancer-l4`: the balancer's L4 mode (`--mode tcp`)
 * against HAProxy (`mode tcp`, `nbthread 1`) and nginx (`stream`,
 * `worker_processes 1`) over the same nginx backends, measured with `wrk`.
 *
 * Three request shapes, each in every round: a small answer on kept-alive
 * connections, a 16 KiB answer on kept-alive connections, and a small
 * answer on a new connection each time (`Connection: close`: the connect
 * and accept path). In each round every proxy (and the backends directly)
 * runs each shape once, in an order that rotates from round to round; the
 * figures are medians over the rounds, the ratios medians of each round's
 * ratio. CPU per request is the proxy's own (user + system, every process
 * and thread of it) over the requests wrk counted.
 *
 * Needs `wrk` and `nginx` (Debian: wrk, nginx, libnginx-mod-stream);
 * `haproxy` is compared when installed. Missing wrk or nginx: skipped, said.
 *
 * Knobs (environment), for A/B runs of a change:
 * - `BENCH_L4_SHAPES=small,close`: only these shapes (of small, 16k, close).
 * - `BENCH_L4_BASE=/path/to/other/checkout`: one more side, `base`, that
 *   checkout's balancer over the same backends (alternated with the rest).
 * - `BENCH_L4_RUNTIME=1`: one more side, `runtime`, this balancer on Deno's
 *   sockets (`DIST_TCP_IO=runtime`) rather than libc's.
 * - `BENCH_L4_SIDES=dist,haproxy,base`: only these sides (of direct, dist,
 *   base, runtime, haproxy, nginx): more rounds in a hold of the bench lock.
 */
import type { BenchFlags } from "./_common.ts";
import { onPath, round3, Rounds } from "./_common.ts";
import { type DistProcess, freePort, startDist } from "../tests/helpers/dist.ts";

/** The request shapes: the path wrk asks for, and its extra header. */
const ALL_SHAPES = [
  { key: "small", path: "/small", header: undefined, about: "64 B answer, kept-alive" },
  { key: "16k", path: "/16k", header: undefined, about: "16 KiB answer, kept-alive" },
  {
    key: "close",
    path: "/small",
    header: "Connection: close",
    about: "64 B answer, new connection each",
  },
] as const;

const SHAPES = ALL_SHAPES.filter((s) =>
  (Deno.env.get("BENCH_L4_SHAPES") ?? "small,16k,close").split(",").includes(s.key)
);

/** Whether side `name` is measured (`BENCH_L4_SIDES`; every side by default). */
function measured(name: string): boolean {
  const only = Deno.env.get("BENCH_L4_SIDES");
  return only === undefined || only.split(",").includes(name);
}

/** Where nginx keeps its module for `stream` on Debian. */
const STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so";

/**
 * CPU time of a process (every thread) and its children, in µs; 0 when gone.
 * From each thread's schedstat (run time in ns), not utime + stime (10 ms
 * ticks: a proxy's few ms a run were off by a tick either way). A thread
 * that ended during the run is not counted (none of the sides' do under load).
 */
function cpuTreeUs(pid: number): number {
  let total = 0;
  try {
    for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        const ns = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/schedstat`).split(" ")[0];
        total += Number(ns) / 1000;
      } catch {
        // The thread ended meanwhile.
      }
    }
    const children = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim();
    for (const c of children === "" ? [] : children.split(" ")) total += cpuTreeUs(Number(c));
  } catch {
    // Gone.
  }
  return total;
}

function loadAverage(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}

async function waitListening(port: number, what: string): Promise<void> {
  const end = performance.now() + 10_000;
  while (true) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      if (performance.now() > end) throw new Error(`${what} did not listen on ${port}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** A process the bench started, stopped by its pid. */
interface Proc {
  pid: number;
  stop(): Promise<void>;
}

/** Runs `exe args` in the foreground (its own config) and waits for `port`. */
async function spawnOn(exe: string, args: string[], port: number, what: string): Promise<Proc> {
  const child = new Deno.Command(exe, { args, stdin: "null", stdout: "null", stderr: "piped" })
    .spawn();
  const errText = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let err = "";
  (async () => {
    try {
      for (let r; !(r = await errText.read()).done;) err = (err + r.value).slice(-4000);
    } catch {
      // Killed.
    }
  })();
  try {
    await waitListening(port, what);
  } catch (e) {
    try {
      child.kill("SIGKILL");
    } catch {
      // It exited (its stderr says why).
    }
    throw new Error(`${(e as Error).message}: ${err}`);
  }
  return {
    pid: child.pid,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // Gone already.
      }
      await child.status;
    },
  };
}

/** nginx (one worker) with `conf`'s body, in its own directory. */
async function nginx(dir: string, name: string, body: string, port: number): Promise<Proc> {
  const conf = `${dir}/${name}.conf`;
  await Deno.writeTextFile(
    conf,
    [
      body.includes("stream {") ? `load_module ${STREAM_MODULE};` : "",
      "worker_processes 1;",
      "daemon off;",
      `pid ${dir}/${name}.pid;`,
      `error_log ${dir}/${name}.err warn;`,
      "events { worker_connections 4096; }",
      body,
    ].join("\n"),
  );
  return await spawnOn("nginx", ["-c", conf, "-p", dir], port, `nginx (${name})`);
}

/** The nginx backends: one worker, `ports.length` servers answering /small and /16k. */
function backendsConf(dir: string, ports: number[]): string {
  return `http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  ${
    ports.map((p) =>
      `server { listen 127.0.0.1:${p}; root ${dir}/www;
    location = /small { default_type text/plain; return 200 "${"x".repeat(64)}"; } }`
    ).join("\n  ")
  }
}`;
}

function streamConf(port: number, backends: number[]): string {
  return `stream {
  upstream be { ${backends.map((p) => `server 127.0.0.1:${p};`).join(" ")} }
  server { listen 127.0.0.1:${port}; proxy_pass be; proxy_timeout 10m; }
}`;
}

async function haproxy(dir: string, port: number, backends: number[]): Promise<Proc> {
  const cfg = `${dir}/haproxy.cfg`;
  await Deno.writeTextFile(
    cfg,
    [
      "global",
      "    maxconn 4096",
      "    nbthread 1",
      "defaults",
      "    mode tcp",
      "    timeout connect 5s",
      "    timeout client 10m",
      "    timeout server 10m",
      "listen l4",
      `    bind 127.0.0.1:${port}`,
      "    balance roundrobin",
      ...backends.map((p, i) => `    server b${i + 1} 127.0.0.1:${p} check inter 1s`),
      "",
    ].join("\n"),
  );
  return await spawnOn("haproxy", ["-f", cfg, "-db"], port, "haproxy");
}

/** What one wrk run measured. */
interface WrkResult {
  rps: number;
  p99Ms: number;
  requests: number;
  errors: number;
}

/** `wrk --latency` against `url`: requests/s, p99 and the count. */
async function wrk(url: string, o: { duration: string; connections: number; header?: string }) {
  const args = ["-t1", `-c${o.connections}`, `-d${o.duration}`, "--latency"];
  if (o.header) args.push("-H", o.header);
  const out = await new Deno.Command("wrk", { args: [...args, url], stdin: "null" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`wrk failed: ${new TextDecoder().decode(out.stderr)}`);
  const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
  const p99 = /\s99%\s+([\d.]+)(us|ms|s)\b/.exec(text);
  const scale = p99 ? { us: 0.001, ms: 1, s: 1000 }[p99[2] as "us" | "ms" | "s"] : NaN;
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = num(/Non-2xx or 3xx responses: (\d+)/);
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p99Ms: p99 ? Number(p99[1]) * scale : NaN,
    requests: num(/(\d+) requests in/),
    errors: (errors ? errors.slice(1).reduce((t, n) => t + Number(n), 0) : 0) +
      (Number.isNaN(non2xx) ? 0 : non2xx),
  } satisfies WrkResult;
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  if (!(await onPath("wrk")) || !(await onPath("nginx"))) {
    console.log(
      "balancer-l4: skipped: wrk and nginx are needed (Debian: wrk nginx libnginx-mod-stream)",
    );
    return {};
  }
  const rounds = flags.quick ? 1 : flags.runs;
  const duration = flags.quick ? "1s" : flags.duration;
  const connections = 64;
  const dir = await Deno.makeTempDir({ prefix: "dist-bench-l4-" });
  // nginx's worker may run as another user: it must read the file it serves.
  await Deno.chmod(dir, 0o755);
  await Deno.mkdir(`${dir}/www`, { mode: 0o755 });
  await Deno.writeFile(`${dir}/www/16k`, new Uint8Array(16 * 1024).fill(97), { mode: 0o644 });
  const procs: (Proc | DistProcess)[] = [];
  const sides: { name: string; port: number; pid?: number }[] = [];
  try {
    const backendPorts = [freePort(), freePort()];
    const backends = await nginx(dir, "backends", backendsConf(dir, backendPorts), backendPorts[0]);
    procs.push(backends);
    await waitListening(backendPorts[1], "nginx backend 2");
    sides.push({ name: "direct", port: backendPorts[0] });

    const distLb = await startDist([
      "balancer",
      "--mode",
      "tcp",
      "--port",
      "0",
      "--backends",
      backendPorts.map((p) => `127.0.0.1:${p}`).join(","),
    ]);
    procs.push(distLb);
    sides.push({ name: "dist", port: distLb.port, pid: distLb.child.pid });
    const lbArgs = (port: number) => [
      "balancer",
      "--mode",
      "tcp",
      "--port",
      String(port),
      "--backends",
      backendPorts.map((p) => `127.0.0.1:${p}`).join(","),
    ];
    const base = Deno.env.get("BENCH_L4_BASE");
    if (base !== undefined) {
      const port = freePort();
      const main = `${base.replace(/\/$/, "")}/main.ts`;
      const b = await spawnOn(Deno.execPath(), ["run", "-A", main, ...lbArgs(port)], port, "base");
      procs.push(b);
      sides.push({ name: "base", port, pid: b.pid });
    }
    if (Deno.env.get("BENCH_L4_RUNTIME") === "1") {
      const rt = await startDist(lbArgs(0), { env: { DIST_TCP_IO: "runtime" } });
      procs.push(rt);
      sides.push({ name: "runtime", port: rt.port, pid: rt.child.pid });
    }

    if (await onPath("haproxy")) {
      const port = freePort();
      const h = await haproxy(dir, port, backendPorts);
      procs.push(h);
      sides.push({ name: "haproxy", port, pid: h.pid });
    } else console.log("balancer-l4: haproxy not installed: its side is skipped");

    try {
      await Deno.stat(STREAM_MODULE);
      const port = freePort();
      const n = await nginx(dir, "stream", streamConf(port, backendPorts), port);
      procs.push(n);
      sides.push({ name: "nginx", port, pid: n.pid });
    } catch (err) {
      console.log(`balancer-l4: nginx stream not available (${(err as Error).message}): skipped`);
    }

    sides.splice(0, sides.length, ...sides.filter((s) => measured(s.name)));
    console.log(
      `balancer-l4: wrk -t1 -c${connections} -d${duration}, ${rounds} round(s), sides ` +
        `${sides.map((s) => s.name).join(", ")}; load average ${loadAverage()}`,
    );
    // Untimed: every side, every shape, twice (the balancer compiles its paths in the first
    // run and again after its first connections close: see warmUp in balancer.ts).
    for (let pass = 0; pass < (flags.quick ? 1 : 2); pass++) {
      for (const shape of SHAPES) {
        for (const side of sides) {
          await wrk(`http://127.0.0.1:${side.port}${shape.path}`, {
            duration: "1s",
            connections,
            header: shape.header,
          });
        }
      }
    }
    const r = new Rounds();
    for (let round = 0; round < rounds; round++) {
      for (const shape of SHAPES) {
        const order = sides.map((_, i) => sides[(i + round) % sides.length]);
        const rps: Record<string, number> = {};
        const p99: Record<string, number> = {};
        for (const side of order) {
          const cpu0 = side.pid ? cpuTreeUs(side.pid) : 0;
          const res = await wrk(`http://127.0.0.1:${side.port}${shape.path}`, {
            duration,
            connections,
            header: shape.header,
          });
          if (res.errors > 0) console.log(`  ${side.name} ${shape.key}: ${res.errors} errors`);
          rps[side.name] = res.rps;
          p99[side.name] = res.p99Ms;
          r.add(`${shape.key}_${side.name}_rps`, res.rps);
          r.add(`${shape.key}_${side.name}_p99_ms`, res.p99Ms);
          if (side.pid) {
            r.add(
              `${shape.key}_${side.name}_cpu_us_per_req`,
              (cpuTreeUs(side.pid) - cpu0) / res.requests,
            );
          }
        }
        for (const other of ["haproxy", "nginx", "base", "runtime"]) {
          if (rps[other] === undefined) continue;
          r.add(`${shape.key}_dist_vs_${other}_rps`, rps.dist / rps[other]);
          r.add(`${shape.key}_dist_vs_${other}_p99`, p99.dist / p99[other]);
        }
      }
      r.printRound("balancer-l4", round + 1);
    }
    const m = r.medians();
    console.log(`balancer-l4: medians of ${rounds} round(s); load average now ${loadAverage()}`);
    const f = (x: number | undefined, d = 0) =>
      x === undefined || Number.isNaN(x) ? "—" : x.toLocaleString("en-US", {
        maximumFractionDigits: d,
        minimumFractionDigits: d,
      });
    for (const shape of SHAPES) {
      console.log(`  ${shape.about}:`);
      for (const side of sides) {
        const k = `${shape.key}_${side.name}`;
        const cpu = side.pid ? `, ${f(m[`${k}_cpu_us_per_req`], 1)} µs CPU/req` : "";
        console.log(
          `    ${side.name.padEnd(8)} ${f(m[`${k}_rps`]).padStart(9)} req/s, p99 ` +
            `${f(m[`${k}_p99_ms`], 2)} ms${cpu}`,
        );
      }
      for (const other of ["haproxy", "nginx", "base", "runtime"]) {
        const k = `${shape.key}_dist_vs_${other}`;
        if (m[`${k}_rps`] === undefined) continue;
        console.log(
          `    dist vs ${other}: ${f(m[`${k}_rps`], 2)}× req/s, ${f(m[`${k}_p99`], 2)}× p99` +
            (other === "haproxy" ? " (target ≥ 1.0× req/s at ≤ 1.0× p99)" : ""),
        );
      }
    }
    return Object.fromEntries(Object.entries(m).map(([k, v]) => [k, round3(v)]));
  } finally {
    for (const p of procs.reverse()) await p.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
