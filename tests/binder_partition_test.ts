/**
 * A true network partition: two binders in two network namespaces joined by
 * a veth pair, cut apart by setting the link down (packets are lost, nothing
 * is refused: the binders find out by their heartbeats), changed on both
 * sides, then joined again. Needs root and `ip netns`; skipped otherwise.
 */
import assert from "node:assert/strict";
import { distCommand } from "./helpers/dist.ts";

const TAG = `${Deno.pid % 100_000}`;
const NS = [`dist-a-${TAG}`, `dist-b-${TAG}`];
const VETH = [`dva${TAG}`, `dvb${TAG}`];
const ADDR = ["10.199.0.1", "10.199.0.2"];
const PORT = 7000;

async function sh(cmd: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const r = await new Deno.Command(cmd[0], { args: cmd.slice(1), stderr: "piped" }).output();
    const text = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
    return { ok: r.success, out: text };
  } catch (err) {
    return { ok: false, out: String(err) };
  }
}

async function ip(...args: string[]): Promise<void> {
  const r = await sh(["ip", ...args]);
  if (!r.ok) throw new Error(`ip ${args.join(" ")}: ${r.out}`);
}

/** Why namespaces cannot be used here, or undefined when they can. */
async function unavailable(): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "needs root";
  const probe = `dist-probe-${TAG}`;
  const add = await sh(["ip", "netns", "add", probe]);
  if (!add.ok) return `ip netns unavailable: ${add.out.trim().split("\n")[0]}`;
  await sh(["ip", "netns", "del", probe]);
  return undefined;
}

async function setUp(): Promise<void> {
  for (const ns of NS) await ip("netns", "add", ns);
  await ip("link", "add", VETH[0], "type", "veth", "peer", "name", VETH[1]);
  for (let i = 0; i < 2; i++) {
    await ip("link", "set", VETH[i], "netns", NS[i]);
    await ip("-n", NS[i], "addr", "add", `${ADDR[i]}/30`, "dev", VETH[i]);
    await ip("-n", NS[i], "link", "set", VETH[i], "up");
    await ip("-n", NS[i], "link", "set", "lo", "up");
  }
}

async function tearDown(): Promise<void> {
  for (const ns of NS) await sh(["ip", "netns", "del", ns]); // takes its end of the veth along
}

/** `dist …args` inside namespace `i`. */
function inNs(i: number, args: string[]): { exe: string; args: string[] } {
  const { exe, args: argv } = distCommand(args);
  return { exe: "ip", args: ["netns", "exec", NS[i], exe, ...argv] };
}

/** Starts binder `i` in its namespace and waits for its `Listening on` line. */
async function startBinder(i: number) {
  const { exe, args } = inNs(i, [
    "binder",
    "--host",
    "0.0.0.0",
    "--port",
    String(PORT),
    "--peers",
    `${ADDR[1 - i]}:${PORT}`,
  ]);
  const child = new Deno.Command(exe, { args, stdout: "null", stderr: "piped" }).spawn();
  let text = "";
  const reading = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) text += chunk;
  })();
  const t0 = performance.now();
  while (!/Listening on/.test(text)) {
    if (performance.now() - t0 > 10_000) throw new Error(`binder ${i} did not start:\n${text}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    stderr: () => text,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // Gone.
      }
      await child.status;
      await reading;
    },
  };
}

/** Calls `method` on binder `i` from inside its namespace (over its loopback). */
async function call(i: number, method: string, params: unknown): Promise<unknown> {
  const { exe, args } = inNs(i, [
    "client",
    "--connect",
    `127.0.0.1:${PORT}`,
    "--json",
    method,
    JSON.stringify(params),
  ]);
  const r = await new Deno.Command(exe, { args, stderr: "piped" }).output();
  const out = JSON.parse(new TextDecoder().decode(r.stdout).trim().split("\n").at(-1)!);
  if (!out.ok) throw new Error(`${method} on binder ${i}: ${JSON.stringify(out.error)}`);
  return out.result;
}

async function listed(i: number): Promise<string[]> {
  const res = await call(i, "binder.list", {}) as { instances: { id: string }[] };
  return res.instances.map((x) => x.id).sort();
}

const reg = (port: number) => ({ service: "compute", host: "10.0.0.9", port, ttl_ms: 600_000 });
const id = (port: number) => `compute@10.0.0.9:${port}`;

async function eventually(check: () => Promise<boolean>, what: string, ms = 20_000) {
  const t0 = performance.now();
  while (!(await check())) {
    if (performance.now() - t0 > ms) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const why = await unavailable();

Deno.test({
  name: "binders cut apart by a real network partition converge once the link is back" +
    (why ? ` (skipped: ${why})` : ""),
  ignore: why !== undefined,
  async fn() {
    await tearDown(); // leftovers of an interrupted run
    await setUp();
    const binders: Awaited<ReturnType<typeof startBinder>>[] = [];
    try {
      binders.push(await startBinder(0), await startBinder(1));
      await call(0, "binder.register", reg(1));
      await eventually(async () => (await listed(1)).includes(id(1)), "b to learn of 1");

      // Cut: the link goes down; packets are dropped, nothing refused.
      await ip("-n", NS[0], "link", "set", VETH[0], "down");
      await call(0, "binder.register", reg(2));
      await call(0, "binder.deregister", { id: id(1) });
      await call(1, "binder.register", reg(3));
      // Longer than heartbeat × liveness (3 s): the binders give each other up.
      await new Promise((r) => setTimeout(r, 4000));
      assert.deepEqual(await listed(0), [id(2)]);
      assert.deepEqual(await listed(1), [id(1), id(3)]);

      await ip("-n", NS[0], "link", "set", VETH[0], "up");
      const want = JSON.stringify([id(2), id(3)]);
      await eventually(
        async () =>
          JSON.stringify(await listed(0)) === want && JSON.stringify(await listed(1)) === want,
        "the two sides to converge",
      );
      // The cut was noticed by heartbeats (not refused), on whichever
      // connection the two had: the one a dialed, or the one b dialed in.
      assert.match(
        binders[0].stderr(),
        /Connection to 10\.199\.0\.2:7000 lost \(heartbeat_timeout\)|Connection with \S+ \(10\.199\.0\.2:\d+\) closed: heartbeat_timeout/,
      );
    } finally {
      await Promise.all(binders.map((b) => b.stop()));
      await tearDown();
    }
  },
});
