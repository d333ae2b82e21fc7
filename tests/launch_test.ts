/**
 * Unit tests of launch/: the plan (order, cycles, --only, --on, command
 * lines), restart decisions, output, the commands' flags, status
 * formatting and state files. No processes.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  DEFAULT_TOPOLOGY,
  DEFAULT_TOPOLOGY_FILE,
  formatMainHelp,
  parseTopology,
  type Topology,
} from "../config/mod.ts";
import { formatLauncherHelp, parseLauncherArgs, STATUS, UP } from "../launch/args.ts";
import { LineSplitter, MAX_LINE, Output } from "../launch/output.ts";
import { childArgs, makePlan, sameHost } from "../launch/plan.ts";
import { backoffMs, decideRestart } from "../launch/restart.ts";
import { runsFromSource, selfCommand } from "../launch/self.ts";
import { launcherAlive, readStates, StateWriter } from "../launch/state.ts";
import { formatFigures, formatStatusTable, formatUptime } from "../launch/status.ts";
import { ROLES as REAL_ROLES } from "../roles/mod.ts";
import { Interrupts, readTopology, REPEAT_MS } from "../launch/up.ts";
import { ROLES, throwsUsage } from "./helpers/fake_roles.ts";

function load(text: string): Topology {
  return parseTopology(text, { file: "cluster.toml", roles: ROLES });
}

const CLUSTER = [
  "[[client]]", // 1
  'connect = "balancer"',
  "",
  "[[balancer]]", // 4
  "port = 6000",
  'backends = ["server"]',
  "",
  "[[server]]", // 8
  "replicas = 2",
  "port = 7000",
].join("\n");

// ---- plan ----

Deno.test("makePlan() starts an instance after what it references, file order within a step", () => {
  const plan = makePlan(load(CLUSTER), { roles: ROLES });
  assert.deepEqual(
    plan.instances.map((p) => [p.instance.name, p.step, p.after]),
    [
      ["server-1", 1, []],
      ["server-2", 1, []],
      ["balancer", 2, ["server-1", "server-2"]],
      ["client", 3, ["balancer"]],
    ],
  );
  assert.deepEqual(plan.instances.map((p) => p.listens), [true, true, true, false]);
  assert.deepEqual(plan.remote, []);
});

Deno.test("makePlan() takes instances of one role naming each other as peers, not dependencies", () => {
  const text = [
    "[[server]]",
    "replicas = 2",
    "port = 7000",
    'binders = ["server", "other"]',
    "[[server]]",
    'name = "other"',
    "port = 7100",
    'binders = ["server"]',
  ].join("\n");
  const plan = makePlan(load(text), { roles: ROLES, on: "127.0.0.1" });
  assert.deepEqual(plan.instances.map((p) => [p.instance.name, p.step, p.after]), [
    ["server-1", 1, []],
    ["server-2", 1, []],
    ["other", 1, []],
  ]);
  throwsUsage(
    () => makePlan(load(text.replace("port = 7100", "port = 0")), { roles: ROLES }),
    /^Cannot load cluster\.toml: server\.binders: other has port 0, and instances of one role that name each other start together/,
  );
});

Deno.test("makePlan() rejects a reference cycle, naming the file, the line and the keys", () => {
  const text = [
    "[[balancer]]", // 1
    "port = 6000",
    'backends = ["server"]',
    "",
    "[[server]]", // 5
    "port = 7000",
    'binders = ["balancer"]', // 7
  ].join("\n");
  throwsUsage(
    () => makePlan(load(text), { roles: ROLES, text }),
    "Cannot load cluster.toml: line 3: balancer.backends: reference cycle: " +
      "balancer (backends) -> server (binders) -> balancer",
  );
});

Deno.test("makePlan() --only keeps the named instances and what they depend on", () => {
  const names = (only: string[]) =>
    makePlan(load(CLUSTER), { roles: ROLES, only }).instances.map((p) => p.instance.name);
  assert.deepEqual(names(["client"]), ["server-1", "server-2", "balancer", "client"]);
  assert.deepEqual(names(["balancer"]), ["server-1", "server-2", "balancer"]);
  assert.deepEqual(names(["server"]), ["server-1", "server-2"]);
  assert.deepEqual(names(["server-2"]), ["server-2"]);
  throwsUsage(
    () => names(["balancr"]),
    '--only: unknown instance "balancr" in cluster.toml (did you mean "balancer"?)',
  );
  // `--only ""` or `--only ,` (hostile47 Q11: "No selected instance … is placed on undefined").
  throwsUsage(
    () => names([]),
    "--only: no instance named: give names or entries of cluster.toml, comma-separated",
  );
  // A zero that can only fail is refused (hostile47 Q11).
  throwsUsage(
    () => parseLauncherArgs(["--ready-timeout", "0"], UP),
    '--ready-timeout: must be at least 1ms, got "0"',
  );
  throwsUsage(
    () => parseLauncherArgs(["--timeout", "0"], STATUS),
    '--timeout: must be at least 10ms, got "0": a call timeout under it fails every call TIMEOUT',
  );
});

const TWO_HOSTS = [
  "[[server]]",
  'name = "near"',
  'host = "127.0.0.1"',
  "port = 7000",
  "[[server]]",
  'name = "far"',
  'host = "10.0.0.2"',
  "port = 7000",
  "[[balancer]]",
  'host = "localhost"',
  'backends = ["near", "far"]',
].join("\n");

Deno.test("makePlan() --on keeps the instances placed on that host; others it waits for are remote", () => {
  const here = makePlan(load(TWO_HOSTS), { roles: ROLES, on: "127.0.0.1" });
  assert.deepEqual(here.instances.map((p) => [p.instance.name, p.after, p.remote]), [
    ["near", [], []],
    ["balancer", ["near"], ["far"]],
  ]);
  assert.deepEqual(here.remote, [{ name: "far", role: "server", address: "10.0.0.2:7000" }]);
  const there = makePlan(load(TWO_HOSTS), { roles: ROLES, on: "10.0.0.2" });
  assert.deepEqual(there.instances.map((p) => p.instance.name), ["far"]);
  throwsUsage(
    () => makePlan(load(TWO_HOSTS), { roles: ROLES, on: "10.0.0.3" }),
    "No instance of cluster.toml is placed on 10.0.0.3 (hosts: 127.0.0.1, 10.0.0.2, localhost)",
  );
});

Deno.test("makePlan() refuses to wait for an instance on another host whose port is 0", () => {
  const text = '[[server]]\nhost = "10.0.0.2"\nport = 0\n[[client]]\nconnect = "server"\n';
  throwsUsage(
    () => makePlan(load(text), { roles: ROLES, on: "127.0.0.1" }),
    /client waits for server on 10\.0\.0\.2, whose port is not fixed/,
  );
});

Deno.test("makePlan() refuses port 0 where the Listening line is not logged", () => {
  throwsUsage(
    () => makePlan(load('[[server]]\nport = 0\nlog_level = "warning"\n'), { roles: ROLES }),
    /server listens on port 0 with log_level warning/,
  );
});

Deno.test("sameHost() takes localhost for 127.0.0.1 and ignores case", () => {
  assert.ok(sameHost("localhost", "127.0.0.1"));
  assert.ok(sameHost("Box.Example", "box.example"));
  assert.ok(!sameHost("127.0.0.2", "127.0.0.1"));
});

Deno.test("childArgs() gives the role, the name and the flags that differ from the defaults", () => {
  const topology = load(CLUSTER);
  const byName = new Map(topology.instances.map((i) => [i.name, i]));
  const args = (name: string) => childArgs(byName.get(name)!, { roles: ROLES, byName });
  assert.deepEqual(args("server-2"), ["server", "--name=server-2", "--port=7001"]);
  assert.deepEqual(args("balancer"), [
    "balancer",
    "--name=balancer",
    "--port=6000",
    "--backends=127.0.0.1:7000,127.0.0.1:7001",
  ]);
  assert.deepEqual(args("client"), ["client", "--name=client", "--connect=127.0.0.1:6000"]);
});

Deno.test("childArgs() points references to port-0 instances at the ports they got", () => {
  const topology = load(
    '[[server]]\nreplicas = 2\nport = 0\n[[balancer]]\nport = 0\nbackends = ["server", "10.1.1.1:9"]\n',
  );
  const byName = new Map(topology.instances.map((i) => [i.name, i]));
  const ports = new Map([["server-1", 41001], ["server-2", 41002], ["balancer", 41003]]);
  const args = (name: string) => childArgs(byName.get(name)!, { roles: ROLES, byName, ports });
  assert.deepEqual(args("balancer"), [
    "balancer",
    "--name=balancer",
    "--port=41003", // kept across restarts
    "--backends=127.0.0.1:41001,127.0.0.1:41002,10.1.1.1:9",
  ]);
  assert.deepEqual(args("server-2"), ["server", "--name=server-2", "--port=41002"]);
});

Deno.test("makePlan() waits for a worker's registration line, unless its log level hides it", () => {
  const plan = (level: string) =>
    makePlan(
      parseTopology(`[[balancer]]\n[[worker]]\nbalancer = "balancer"\nlog_level = "${level}"\n`, {
        file: "w.toml",
        roles: REAL_ROLES,
      }),
      { roles: REAL_ROLES },
    ).instances.map((p) => [p.instance.name, p.listens, p.readyLine?.source]);
  assert.deepEqual(plan("info"), [
    ["balancer", true, undefined],
    ["worker", false, "Registered with \\S+ as "],
  ]);
  assert.deepEqual(plan("warning")[1], ["worker", false, undefined]);
});

Deno.test("makePlan() infers waits: a balancer's dialers for its workers, a service's clients for its servers, producers for consumers", () => {
  const text = [
    "[[broker]]",
    "port = 0",
    "[[producer]]",
    'broker = "broker"',
    'type = "currency"',
    "[[consumer]]",
    'broker = "broker"',
    "[[binder]]",
    "port = 7000",
    "[[server]]",
    "replicas = 2",
    "port = 0",
    'service = "compute"',
    'binders = ["binder"]',
    "[[balancer]]",
    "port = 0",
    "worker_port = 7100",
    "[[worker]]",
    'balancer = "balancer"',
    "[[worker]]",
    'name = "far"', // on another host: not waited for by name
    'host = "127.0.0.2"',
    'balancer = "balancer"',
    "[[client]]",
    'connect = "balancer"',
    "[[client]]",
    'name = "resolver"',
    'service = "compute"',
    'binders = ["binder"]',
  ].join("\n");
  const topology = parseTopology(text, { file: "w.toml", roles: REAL_ROLES });
  const plan = makePlan(topology, { roles: REAL_ROLES, text, on: "127.0.0.1" });
  const waits = Object.fromEntries(
    plan.instances.map((p) => [p.instance.name, [p.step, p.after, p.readyLine?.source]]),
  );
  assert.deepEqual(waits, {
    broker: [1, [], undefined],
    binder: [1, [], undefined],
    consumer: [2, ["broker"], "Subscribed to \\S"],
    "server-1": [2, ["binder"], "Registered as \\S+ with binder "],
    "server-2": [2, ["binder"], "Registered as \\S+ with binder "],
    producer: [3, ["broker", "consumer"], undefined],
    balancer: [1, [], undefined],
    worker: [2, ["balancer"], "Registered with \\S+ as "],
    client: [3, ["balancer", "worker"], undefined],
    resolver: [3, ["binder", "server-1", "server-2"], undefined],
  });
  // A server registering with binders given by address (not of the file) is ready on sys.ping.
  const alone = parseTopology(
    '[[server]]\nport = 0\nservice = "x"\nbinders = ["10.0.0.9:7000"]\n',
    {
      file: "a.toml",
      roles: REAL_ROLES,
    },
  );
  assert.equal(makePlan(alone, { roles: REAL_ROLES }).instances[0].readyLine, undefined);
});

// ---- restart policy ----

Deno.test("parseTopology() takes a role's own restart default unless the file says otherwise", () => {
  const roles = { ...ROLES, client: { ...ROLES.client, restart: "no" as const } };
  const text = '[[client]]\n[[client]]\nname = "again"\nrestart = "always"\n[[server]]\n';
  const restart = parseTopology(text, { file: "t.toml", roles }).instances.map((i) => i.restart);
  assert.deepEqual(restart, ["no", "always", "on-failure"]);
});

Deno.test("decideRestart() follows the policy: no, on-failure (non-zero or a signal), always", () => {
  const ok = { code: 0, signal: null, ranMs: 60_000 };
  const bad = { code: 1, signal: null, ranMs: 60_000 };
  const killed = { code: 137, signal: "SIGKILL", ranMs: 60_000 };
  assert.equal(decideRestart("no", bad, 0).restart, false);
  assert.equal(decideRestart("on-failure", ok, 0).restart, false);
  assert.equal(decideRestart("on-failure", bad, 0).restart, true);
  assert.equal(decideRestart("on-failure", killed, 0).restart, true);
  assert.equal(decideRestart("always", ok, 0).restart, true);
});

Deno.test("decideRestart() restarts at once, then backs off 1 s doubling to 32 s, and calls it a crash loop", () => {
  const quick = { code: 1, signal: null, ranMs: 200 };
  let streak = 0;
  const delays: number[] = [];
  const loops: boolean[] = [];
  for (let i = 0; i < 9; i++) {
    const d = decideRestart("on-failure", quick, streak);
    streak = d.streak;
    delays.push(d.delayMs);
    loops.push(d.crashLoop);
  }
  assert.deepEqual(delays, [0, 1000, 2000, 4000, 8000, 16000, 32000, 32000, 32000]);
  assert.deepEqual(loops, [false, false, true, true, true, true, true, true, true]);
  // A run long enough starts the count over.
  const stable = decideRestart("on-failure", { ...quick, ranMs: 30_000 }, streak);
  assert.deepEqual(stable, { restart: true, delayMs: 0, streak: 0, crashLoop: false });
  assert.equal(backoffMs(1), 0);
});

// ---- output ----

Deno.test("LineSplitter joins lines split across chunks, drops \\r, and cuts over-long lines", () => {
  const s = new LineSplitter();
  assert.deepEqual(s.push("one\r\ntw"), ["one"]);
  assert.deepEqual(s.push("o\nthree"), ["two"]);
  assert.deepEqual(s.end(), ["three"]);
  assert.deepEqual(s.end(), []);
  const long = s.push("x".repeat(MAX_LINE * 2 + 5));
  assert.deepEqual(long.map((l) => l.length), [MAX_LINE, MAX_LINE]);
  assert.deepEqual(s.end(), ["xxxxx"]);
});

Deno.test("Output pads instance names to one width and sets the launcher's lines apart", () => {
  let text = "";
  const out = new Output(["broker", "server-10"], { write: (t) => text += t });
  out.line("broker", "hello");
  out.line("server-10", "world");
  out.say("All 2 ready");
  assert.equal(text, "broker    | hello\nserver-10 | world\ndist up: All 2 ready\n");
  let coloured = "";
  const colour = new Output(["a", "b"], { colour: true, write: (t) => coloured += t });
  colour.line("a", "x");
  colour.line("b", "y");
  assert.equal(coloured, "\x1b[36ma |\x1b[0m x\n\x1b[33mb |\x1b[0m y\n");
});

// ---- the commands' flags ----

Deno.test("parseLauncherArgs() reads a file and the flags of dist up", () => {
  const args = parseLauncherArgs(
    ["cluster.toml", "--only", "a,b", "--on=10.0.0.2", "--duration", "10s", "--dry-run"],
    UP,
  );
  assert.equal(args.file, "cluster.toml");
  assert.deepEqual(args.options, {
    only: ["a", "b"],
    on: "10.0.0.2",
    duration: 10_000,
    dryRun: true,
    grace: 5000,
    readyTimeout: 15_000,
    maxInstances: 256,
  });
  assert.equal(parseLauncherArgs([], UP).file, undefined);
  assert.equal(parseLauncherArgs(["--json", "--no-json"], STATUS).options.json, false);
});

Deno.test("parseLauncherArgs() rejects unknown flags, bad values and a second file", () => {
  throwsUsage(
    () => parseLauncherArgs(["--dry-rn"], UP),
    /Unknown flag --dry-rn for up \(did you mean --dry-run\?\)/,
  );
  throwsUsage(
    () => parseLauncherArgs(["--grace", "soon"], UP),
    /--grace: "soon" is not a duration/,
  );
  throwsUsage(() => parseLauncherArgs(["--on"], UP), "--on needs a value");
  throwsUsage(() => parseLauncherArgs(["a.toml", "b.toml"], STATUS), /takes one topology file/);
  assert.match(formatLauncherHelp(UP), /--grace DURATION +On shutdown.*\(default: 5s\)/);
  assert.match(formatMainHelp(ROLES, "1.0.0"), /^ {2}dist up \[FILE\] +Launch and supervise/m);
});

Deno.test("Interrupts takes the first signal to stop, an echo within REPEAT_MS as nothing, a later one to kill", () => {
  let now = 1000;
  const interrupts = new Interrupts(() => now);
  assert.equal(interrupts.take(), "stop");
  now += 1; // deno task forwarding the terminal's Ctrl-C
  assert.equal(interrupts.take(), "echo");
  now += REPEAT_MS - 2;
  assert.equal(interrupts.take(), "echo");
  now = 1000 + REPEAT_MS;
  assert.equal(interrupts.take(), "kill");
  assert.ok(REPEAT_MS < 500, "a person's second Ctrl-C half a second later kills");
});

// ---- status ----

Deno.test("formatUptime() writes seconds, minutes, hours and days", () => {
  assert.deepEqual([4_200, 61_000, 3_723_000, 200_000_000].map(formatUptime), [
    "4s",
    "1m01s",
    "1h02m",
    "2d07h",
  ]);
});

Deno.test("formatFigures() shows the key figures a role has, else all; lists by length, no tables", () => {
  assert.equal(
    formatFigures({ connections: 3, requests: 20, healthy: 4, backends: [1, 2], nested: { a: 1 } }),
    "requests=20 healthy=4 backends=2",
  );
  assert.equal(
    formatFigures({ ready: true, policy: "p2c", queues: [1], nested: { a: 1 } }),
    "ready=true policy=p2c queues=1",
  );
});

Deno.test("formatFigures() leaves out what could forge the table: control characters, spaces, odd keys, non-finite numbers", () => {
  assert.equal(
    formatFigures({
      requests: "1\u001b[2J\nserver2  server",
      errors: 1e308 * 10,
      instances: 3,
    }),
    "instances=3",
  );
  assert.equal(
    formatFigures({ "a\nb": 1, policy: "p2c", note: "two words", bidi: "x\u202ey" }),
    "policy=p2c",
  );
});

Deno.test("formatStatusTable() aligns one row per instance", () => {
  const lines = formatStatusTable([
    {
      instance: "server-1",
      role: "server",
      address: "127.0.0.1:5557",
      state: "up",
      pid: 4242,
      uptime_ms: 5000,
      restarts: 1,
      rss_bytes: 50 * 1024 * 1024,
      figures: { requests: 3 },
    },
    {
      instance: "client",
      role: "client",
      address: null,
      state: "exited",
      pid: null,
      uptime_ms: null,
      restarts: 0,
      rss_bytes: null,
      figures: {},
      last_exit: "exit code 0",
    },
  ]);
  assert.deepEqual(lines, [
    "INSTANCE  ROLE    ADDRESS         STATE                 PID   UPTIME  RESTARTS  RSS       FIGURES",
    "server-1  server  127.0.0.1:5557  up                    4242  5s      1         50.0 MiB  requests=3",
    "client    client  -               exited (exit code 0)  -     -       0         -",
  ]);
});

// ---- state files ----

Deno.test("StateWriter keeps a file that readStates() finds by topology, until removed", async () => {
  const file = `/nonexistent/state-test-${crypto.randomUUID()}.toml`;
  const writer = new StateWriter({
    file,
    instances: { server: { role: "server", state: "waiting", restarts: 0 } },
  });
  try {
    await writer.flush();
    writer.update("server", { state: "ready", restarts: 2, address: "127.0.0.1:1" });
    await writer.flush();
    const [state, ...others] = await readStates(file);
    assert.equal(others.length, 0);
    assert.equal(state.pid, Deno.pid);
    assert.deepEqual(state.instances.server, {
      role: "server",
      state: "ready",
      restarts: 2,
      address: "127.0.0.1:1",
    });
  } finally {
    await writer.remove();
  }
  assert.deepEqual(await readStates(file), []);
});

Deno.test({
  name:
    "launcherAlive() takes a live pid as the file's launcher only if it started when the file says",
  ignore: Deno.build.os !== "linux",
  fn() {
    const now = Date.now();
    const self = new StateWriter({ file: "x", instances: {} }).state;
    assert.ok(launcherAlive(self));
    // Another process start (the same pid reused): not this launcher.
    assert.ok(!launcherAlive({ ...self, start_ticks: self.start_ticks! + 1 }));
    // A file without start_ticks: the process must have started by its started_ms.
    assert.ok(launcherAlive({ pid: Deno.pid, started_ms: now }));
    assert.ok(!launcherAlive({ pid: Deno.pid, started_ms: now - 3_600_000 }));
  },
});

// ---- copies of this executable ----

Deno.test("selfCommand() runs main.ts with deno from source, and the binary itself when compiled", () => {
  assert.ok(runsFromSource("/usr/local/bin/deno"));
  assert.ok(!runsFromSource("/opt/bin/dist"));
  assert.deepEqual(selfCommand("/opt/bin/dist"), { exe: "/opt/bin/dist", args: [] });
  const source = selfCommand("/usr/bin/deno");
  assert.deepEqual(source.args.slice(0, 2), ["run", "-A"]);
  assert.equal(source.args[2], fileURLToPath(new URL("../main.ts", import.meta.url)));
  assert.ok(Deno.statSync(source.args[2]).isFile);
});

// ---- the default topology and examples ----

Deno.test("the embedded default topology has every role and plans", () => {
  const topology = parseTopology(DEFAULT_TOPOLOGY, {
    file: DEFAULT_TOPOLOGY_FILE,
    roles: REAL_ROLES,
  });
  const plan = makePlan(topology, { roles: REAL_ROLES, text: DEFAULT_TOPOLOGY });
  const roles = new Set(plan.instances.map((p) => p.instance.role));
  assert.deepEqual([...roles].sort(), [
    "balancer",
    "binder",
    "broker",
    "client",
    "consumer",
    "producer",
    "server",
    "worker",
  ]);
  assert.equal(topology.instances.find((i) => i.role === "client")!.restart, "no");
});

Deno.test("every topology in examples/ loads and plans, on each of its hosts", async () => {
  const dir = fileURLToPath(new URL("../examples/", import.meta.url));
  const files = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".toml"));
  assert.ok(files.length >= 2);
  const copies = await Deno.makeTempDir({ prefix: "dist-examples-" });
  for (const { name } of files) {
    let path = `${dir}${name}`;
    if (name === "secure.toml" && (Deno.statSync(path).mode! & 0o077) !== 0) {
      // It holds its token inline, and git keeps no 0600: refused as checked out (README says to
      // chmod 600 it first), then taken once only its owner may read it (h48b V4).
      await assert.rejects(readTopology(path, REAL_ROLES), /holds a token inline.*chmod 600/);
      path = `${copies}/${name}`;
      await Deno.writeTextFile(path, await Deno.readTextFile(`${dir}${name}`), { mode: 0o600 });
    }
    const { topology, text } = await readTopology(path, REAL_ROLES);
    const hosts = new Set(topology.instances.map((i) => i.host));
    for (const on of hosts.size > 1 ? hosts : [undefined]) {
      const plan = makePlan(topology, { roles: REAL_ROLES, text, on });
      assert.ok(plan.instances.length > 0, `${name} on ${on}`);
    }
  }
  await Deno.remove(copies, { recursive: true });
});
