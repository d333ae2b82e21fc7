/**
 * One row of broker_shapes.ts on a fresh broker under a Linux tool, after
 * every row's warm-up (a fresh broker's first rows pay for its compiler):
 * where the broker's time goes for that value shape (issue 17).
 *
 * - `perf`: `perf record -g -F 4000` of the broker, started with V8's
 *   `--perf-basic-prof` (JavaScript functions named in `perf report`);
 * - `stat`: `perf stat` of its system calls and context switches (no
 *   `strace`, which slows the broker and so makes its reads larger);
 * - `strace`: `strace -c -f`;
 * - `none`: the run alone.
 *
 * The broker runs in PROFILE_DIR (V8 writes its logs there), and the
 * tool's output goes to `PROFILE_DIR/<mode>-<row>-<subs>` (.data or .txt).
 *
 *   [PROFILE_ROW=object] [PROFILE_SUBS=1] [PROFILE_COUNT=400000]
 *     [PROFILE_MODE=perf|stat|strace|none] [PROFILE_DIR=/tmp/dist-profile]
 *     deno run -A bench/broker_profile.ts
 */
import { startDist } from "../tests/helpers/dist.ts";
import { loadRun } from "./broker.ts";
import { ROWS } from "./broker_shapes.ts";

const env = (name: string, fallback: string) => Deno.env.get(name) ?? fallback;
const rowName = env("PROFILE_ROW", "object");
const subs = Number(env("PROFILE_SUBS", "1"));
const count = Number(env("PROFILE_COUNT", "400000"));
const mode = env("PROFILE_MODE", "perf");
const dir = env("PROFILE_DIR", "/tmp/dist-profile");
const row = ROWS.find((r) => r.name === rowName);
if (row === undefined || !["perf", "stat", "strace", "none"].includes(mode)) {
  console.error(
    `dist: PROFILE_ROW is one of ${ROWS.map((r) => r.name).join(", ")}; ` +
      "PROFILE_MODE one of perf, stat, strace, none",
  );
  Deno.exit(2);
}
await Deno.mkdir(dir, { recursive: true });

const optsOf = (r: (typeof ROWS)[number]) => ({
  shape: r.shape,
  codec: r.codec,
  layout: r.layout,
  topic: `/profile/${r.name}`,
});
const broker = await startDist(["broker", "--port", "0", "--heartbeat", "5000"], {
  env: mode === "perf" ? { DENO_V8_FLAGS: "--perf-basic-prof" } : {},
  cwd: dir,
});
const server = { port: broker.port, pid: broker.child.pid };
const pid = String(broker.child.pid);
const out = `${dir}/${mode}-${rowName}-${subs}`;
const tools: Record<string, string[]> = {
  perf: ["perf", "record", "-g", "-F", "4000", "-o", `${out}.data`, "-p", pid],
  stat: [
    "perf",
    "stat",
    "-e",
    "syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait," +
    "syscalls:sys_enter_write,syscalls:sys_enter_futex,context-switches",
    "-o",
    `${out}.txt`,
    "-p",
    pid,
  ],
  strace: ["strace", "-c", "-f", "-o", `${out}.txt`, "-p", pid],
};
let tool: Deno.ChildProcess | undefined;
try {
  for (const r of ROWS) {
    await loadRun("dist", server, 1, 30_000, optsOf(r));
    await loadRun("dist", server, 4, 15_000, optsOf(r));
  }
  const argv = tools[mode];
  if (argv !== undefined) {
    tool = new Deno.Command(argv[0], { args: argv.slice(1), stdout: "null", stderr: "null" })
      .spawn();
    await new Promise((r) => setTimeout(r, 500)); // attached before the run starts
  }
  const x = await loadRun("dist", server, subs, count, optsOf(row));
  console.log(
    `${rowName} 1→${subs}: ${(x.serverCpuUs / subs).toFixed(3)} µs a delivery, ` +
      `${Math.round(x.deliveriesPerS).toLocaleString("en-US")} deliveries/s` +
      (tool === undefined ? "" : `; ${mode} output: ${out}.${mode === "perf" ? "data" : "txt"}`),
  );
} finally {
  if (tool !== undefined) {
    tool.kill("SIGINT");
    await tool.status;
  }
  await broker.stop();
}
