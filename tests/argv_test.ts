import assert from "node:assert/strict";
import {
  convertValue,
  defaultsOf,
  formatAddress,
  formatDuration,
  formatMainHelp,
  formatRoleHelp,
  mergeOptions,
  optionsToArgv,
  parseAddress,
  parseArgv,
  parseCommand,
  parseDuration,
  parseTopology,
  roleSpec,
  suggest,
} from "../config/mod.ts";
import { ROLES, throwsUsage } from "./helpers/fake_roles.ts";

function parse(line: string) {
  return parseArgv(line === "" ? [] : line.split(" "), ROLES);
}

/** Asserts that parsing `line` throws a UsageError with this message. */
function rejects(line: string, expected: string | RegExp): void {
  throwsUsage(() => parse(line), expected);
}

Deno.test("parseArgv() reads dist <role> and dist --role <role> the same way", () => {
  const expected = {
    role: "server",
    help: false,
    version: false,
    options: { port: 5558, service: "compute" },
    positionals: [],
  };
  assert.deepEqual(parse("server --port 5558 --service compute"), expected);
  assert.deepEqual(parse("--role server --port 5558 --service compute"), expected);
  assert.deepEqual(parse("--port 5558 --role=server --service compute"), expected);
});

Deno.test("parseArgv() accepts --flag=value and kebab-case flags", () => {
  const parsed = parse(
    "balancer --worker-port=9000 --backends=:5557,server-host:5558 --policy=p2c",
  );
  assert.deepEqual(parsed.options, {
    workerPort: 9000,
    backends: ["127.0.0.1:5557", "server-host:5558"],
    policy: "p2c",
  });
});

Deno.test("parseArgv() accepts short aliases", () => {
  assert.deepEqual(parse("server -p 5557").options, { port: 5557 });
  assert.deepEqual(parse("server -p5559").options, { port: 5559 });
  assert.deepEqual(parse("client -c :5556 ping").options, { connect: "127.0.0.1:5556" });
});

Deno.test("parseArgv() reads booleans as --x, --no-x and --x=value", () => {
  assert.equal(parse("server --json").options.json, true);
  assert.equal(parse("server --no-json").options.json, false);
  assert.equal(parse("server --json=false").options.json, false);
  assert.equal(parse("server --json=yes").options.json, true);
  rejects("server --no-json=1", "--no-json takes no value");
  rejects("server --no-port", /^Unknown flag --no-port for server/);
});

Deno.test("parseArgv() converts durations and collects repeated list flags", () => {
  assert.equal(parse("client --timeout 1.5s ping").options.timeout, 1500);
  assert.equal(parse("server --heartbeat 250").options.heartbeat, 250);
  assert.deepEqual(parse("balancer --backends :1 --backends :2,:3").options.backends, [
    "127.0.0.1:1",
    "127.0.0.1:2",
    "127.0.0.1:3",
  ]);
});

Deno.test("parseArgv() takes negative numbers after the first positional as positionals", () => {
  assert.deepEqual(parse("client add 3 -4").positionals, ["add", "3", "-4"]);
  assert.deepEqual(parse("client sub -2.5 -1 --json").positionals, ["sub", "-2.5", "-1"]);
  assert.equal(parse("client sub -2.5 -1 --json").options.json, true);
  rejects("client -4", /^Unknown flag -4 for client/);
});

Deno.test("parseArgv() takes a negative number as the value of a flag", () => {
  rejects("server --port -1", '--port: "-1" is not a port (0-65535)');
});

Deno.test("parseArgv() ends flags at --", () => {
  const parsed = parse("client echo -- --json -x");
  assert.deepEqual(parsed.positionals, ["echo", "--json", "-x"]);
  assert.deepEqual(parsed.options, {});
});

Deno.test("parseArgv() rejects an unknown flag with a suggestion", () => {
  rejects(
    "balancer --bakends :5557",
    "Unknown flag --bakends for balancer (did you mean --backends?)",
  );
  rejects("server --zzz", "Unknown flag --zzz for server");
  rejects("server -x", "Unknown flag -x for server");
});

Deno.test("parseArgv() rejects a role flag before any role", () => {
  rejects("--port 5557", "Unknown flag --port: give a role first, as in dist <role> --port");
  rejects("--hepl", "Unknown flag --hepl (did you mean --help?)");
});

Deno.test("parseArgv() rejects a flag without its value", () => {
  rejects("server --port", "--port needs a value");
  rejects("server --port --json", "--port needs a value");
  rejects("server -p", "--port needs a value");
  rejects("server --config", "--config needs a value");
  rejects("--role", "--role needs a value");
});

Deno.test("parseArgv() rejects a bad port", () => {
  rejects("server --port abc", '--port: "abc" is not a port (0-65535)');
  rejects("server --port=70000", '--port: "70000" is not a port (0-65535)');
});

Deno.test("parseArgv() rejects an unknown role with a suggestion", () => {
  rejects("sever --port 1", 'Unknown role "sever" (did you mean "server"?)');
  rejects("--role balancr", 'Unknown role "balancr" (did you mean "balancer"?)');
  rejects("xyz", 'Unknown role "xyz" (see dist --help)');
  rejects("--role server --role client", "--role given twice: server and client");
});

Deno.test("parseArgv() rejects positionals for a role that takes none", () => {
  rejects("server extra", 'Unexpected argument "extra": server takes none');
});

Deno.test("parseArgv() reads --help and --version with or without a role", () => {
  assert.deepEqual(parse("--help"), {
    role: undefined,
    help: true,
    version: false,
    options: {},
    positionals: [],
  });
  assert.equal(parse("-h").help, true);
  assert.equal(parse("").help, false);
  assert.equal(parse("").role, undefined);
  assert.equal(parse("--version").version, true);
  assert.equal(parse("-V").version, true);
  const role = parse("balancer --help");
  assert.equal(role.role, "balancer");
  assert.equal(role.help, true);
  assert.equal(parse("--help client").role, "client");
});

Deno.test("parseArgv() shows help even when other flags are wrong", () => {
  const parsed = parse("server --bogus --port abc --help");
  assert.equal(parsed.role, "server");
  assert.equal(parsed.help, true);
});

Deno.test("parseArgv() reads --config anywhere and then keeps instance names", () => {
  assert.equal(parse("server --config cluster.toml").config, "cluster.toml");
  assert.equal(parse("--config=cluster.toml server").config, "cluster.toml");
  const parsed = parse("--config cluster.toml client --connect server-1 ping");
  assert.equal(parsed.role, "client");
  assert.equal(parsed.options.connect, "server-1");
  assert.deepEqual(parsed.positionals, ["ping"]);
  rejects("client --connect server-1 ping", /instance names work only in a topology file/);
});

Deno.test("parseArgv() never takes the value of a flag for the role", () => {
  // README's own example: an instance named like a role.
  assert.equal(parse("--name client server").role, "server");
  assert.equal(parse("--name client server").options.name, "client");
  assert.equal(parse("--log-level debug --name server client add 1 2").role, "client");
  assert.deepEqual(parse("--json client add 1 2").positionals, ["add", "1", "2"]);
  // With a role from a topology instance, a first word that is no role is the operation.
  const fromInstance = parseArgv(["--name", "c", "add", "1", "2"], ROLES, { role: "client" });
  assert.equal(fromInstance.role, "client");
  assert.deepEqual(fromInstance.positionals, ["add", "1", "2"]);
});

Deno.test("parseArgv() rejects two different roles", () => {
  rejects("server --role client", "Two roles given: server and --role client: give one");
  assert.equal(parse("server --role server --port 1").role, "server");
});

Deno.test("parseArgv() says what to use instead of a flag the role does not take", () => {
  rejects(
    "client --port 5557 add 1 2",
    "Unknown flag --port for client: the client dials: give --connect HOST:PORT",
  );
  rejects("client --host 1.2.3.4", "Unknown flag --host for client");
});

/** A topology loader for parseCommand() tests: one server s1, one client c1. */
function fakeLoad(file: string) {
  return Promise.resolve(parseTopology(
    '[[server]]\nname = "s1"\nport = 6000\n[[client]]\nname = "c1"\nconnect = "s1"\n',
    { file, roles: ROLES },
  ));
}

Deno.test("parseCommand() takes the role and options of a topology instance", async () => {
  const command = (line: string) => parseCommand(line.split(" "), ROLES, { load: fakeLoad });
  const s1 = await command("--config c.toml --name s1 --port 0");
  assert.equal(s1.role, "server");
  assert.equal(s1.resolved.port, 0);
  assert.equal(s1.resolved.name, "s1");
  assert.equal(s1.instance?.name, "s1");
  const c1 = await command("--config c.toml --name c1 add 1 2");
  assert.equal(c1.role, "client");
  assert.equal(c1.resolved.connect, "127.0.0.1:6000");
  assert.deepEqual(c1.positionals, ["add", "1", "2"]);
  const flagWins = await command("client --config c.toml --name c1 --connect s1 --timeout 1s");
  assert.equal(flagWins.resolved.timeout, 1000);
  await assert.rejects(command("--config c.toml"), {
    message: "--config needs --name INSTANCE: one of s1, c1",
  });
  await assert.rejects(command("server --config c.toml --name c1"), {
    message: "Instance c1 in c.toml is a client, not a server",
  });
  await assert.rejects(command("--config c.toml --name s2"), {
    message: 'No instance "s2" in c.toml (did you mean "s1"?)',
  });
  assert.equal((await command("--config c.toml --name c1 --help")).help, true);
  const plain = await parseCommand(["server", "-p", "1"], ROLES);
  assert.equal(plain.resolved.port, 1);
  assert.equal(plain.resolved.host, "127.0.0.1");
});

Deno.test("optionsToArgv() writes flags that parseArgv() reads back", () => {
  const spec = roleSpec(ROLES.balancer);
  const options = {
    port: 6000,
    backends: ["127.0.0.1:5557", "[::1]:5558"],
    json: false,
    heartbeat: 250,
    unknown: 1,
    policy: undefined,
  };
  const argv = optionsToArgv(options, spec);
  assert.deepEqual(argv, [
    "--port=6000",
    "--backends=127.0.0.1:5557,[::1]:5558",
    "--no-json",
    "--heartbeat=250",
  ]);
  assert.deepEqual(parseArgv(["balancer", ...argv], ROLES).options, {
    port: 6000,
    backends: ["127.0.0.1:5557", "[::1]:5558"],
    json: false,
    heartbeat: 250,
  });
});

// ---- values and help ----

Deno.test("parseDuration() reads units, fractions, sums and bare milliseconds", () => {
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("2s"), 2000);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("1.1s"), 1100);
  assert.equal(parseDuration("1m"), 60_000);
  assert.equal(parseDuration("1h"), 3_600_000);
  assert.equal(parseDuration("1m30s"), 90_000);
  assert.equal(parseDuration("250"), 250);
  assert.equal(parseDuration(250), 250);
  assert.equal(parseDuration("0"), 0);
});

Deno.test("parseDuration() rejects negative, empty and junk values", () => {
  for (const bad of ["-5s", "abc", "", "5 parsecs", "1d", "s", -1, NaN, Infinity]) {
    throwsUsage(() => parseDuration(bad), /^Invalid duration .*: e\.g\. 500ms/);
  }
});

Deno.test("formatDuration() writes the shortest usual unit", () => {
  assert.equal(formatDuration(1000), "1s");
  assert.equal(formatDuration(1500), "1.5s");
  assert.equal(formatDuration(250), "250ms");
  assert.equal(formatDuration(60_000), "1m");
  assert.equal(formatDuration(3_600_000), "1h");
  assert.equal(formatDuration(0), "0ms");
});

Deno.test("parseAddress() reads host:port, [IPv6]:port, :port and a bare port", () => {
  assert.deepEqual(parseAddress("example.com:80"), { host: "example.com", port: 80 });
  assert.deepEqual(parseAddress("[::1]:5557"), { host: "::1", port: 5557 });
  assert.deepEqual(parseAddress(":5557"), { host: "127.0.0.1", port: 5557 });
  assert.deepEqual(parseAddress(":5557", "0.0.0.0"), { host: "0.0.0.0", port: 5557 });
  assert.deepEqual(parseAddress("5557"), { host: "127.0.0.1", port: 5557 });
  assert.deepEqual(parseAddress("10.0.0.1:0"), { host: "10.0.0.1", port: 0 });
});

Deno.test("parseAddress() rejects a missing or bad port and bare IPv6", () => {
  throwsUsage(() => parseAddress("localhost"), 'Invalid address "localhost": missing port');
  throwsUsage(() => parseAddress("h:70000"), 'Invalid address "h:70000": port must be 0-65535');
  throwsUsage(() => parseAddress("h:abc"), /port must be 0-65535/);
  throwsUsage(() => parseAddress("::1:80"), /IPv6 host needs brackets/);
  throwsUsage(() => parseAddress(""), /empty/);
});

Deno.test("formatAddress() brackets IPv6 hosts", () => {
  assert.equal(formatAddress({ host: "127.0.0.1", port: 80 }), "127.0.0.1:80");
  assert.equal(formatAddress({ host: "::1", port: 80 }), "[::1]:80");
});

Deno.test("convertValue() checks numbers, ports and ranges with the given label", () => {
  const port = ROLES.server.options.port;
  assert.equal(convertValue("--port", port, "5557"), 5557);
  assert.equal(convertValue("server.port", port, 0), 0);
  throwsUsage(() => convertValue("--port", port, "abc"), '--port: "abc" is not a port (0-65535)');
  throwsUsage(
    () => convertValue("server.port", port, 70000),
    "server.port: 70000 is not a port (0-65535)",
  );
  const liveness = roleSpec(ROLES.server).liveness;
  throwsUsage(
    () => convertValue("--liveness", liveness, "0"),
    "--liveness: must be at least 1, got 0",
  );
  throwsUsage(() => convertValue("--liveness", liveness, "1.5"), /is not an integer/);
  const ratio = { type: "number", description: "", min: 0, max: 1 } as const;
  assert.equal(convertValue("--ratio", ratio, "0.25"), 0.25);
  throwsUsage(() => convertValue("--ratio", ratio, "2"), "--ratio: must be between 0 and 1, got 2");
  throwsUsage(() => convertValue("--ratio", ratio, "x"), '--ratio: "x" is not a number');
});

Deno.test("convertValue() reads booleans from TOML and from words", () => {
  const json = roleSpec(ROLES.server).json;
  for (const yes of [true, "true", "yes", "1", "TRUE"]) {
    assert.equal(convertValue("--json", json, yes), true);
  }
  for (const no of [false, "false", "no", "0"]) {
    assert.equal(convertValue("--json", json, no), false);
  }
  throwsUsage(() => convertValue("--json", json, "maybe"), /^--json: "maybe" is not a boolean/);
});

Deno.test("convertValue() checks choices with a suggestion", () => {
  const policy = ROLES.balancer.options.policy;
  assert.equal(convertValue("--policy", policy, "p2c"), "p2c");
  throwsUsage(
    () => convertValue("--policy", policy, "randon"),
    '--policy: "randon" is not one of round-robin, least-loaded, p2c, random (did you mean "random"?)',
  );
});

Deno.test("convertValue() reads lists and addresses from comma strings and arrays", () => {
  const list = { type: "list", description: "" } as const;
  assert.deepEqual(convertValue("--tags", list, "a, b,,c"), ["a", "b", "c"]);
  assert.deepEqual(convertValue("tags", list, ["a", "b"]), ["a", "b"]);
  const backends = ROLES.balancer.options.backends;
  assert.deepEqual(convertValue("--backends", backends, ":5557,[::1]:5558"), [
    "127.0.0.1:5557",
    "[::1]:5558",
  ]);
  throwsUsage(() => convertValue("--backends", backends, 5), /is not a list/);
});

Deno.test("convertValue() keeps instance names only where a topology can resolve them", () => {
  const connect = ROLES.client.options.connect;
  assert.equal(convertValue("client.connect", connect, "server-1", { names: true }), "server-1");
  assert.equal(convertValue("--connect", connect, "localhost:80"), "localhost:80");
  throwsUsage(
    () => convertValue("--connect", connect, "server-1"),
    '--connect: "server-1" is not host:port (instance names work only in a topology file)',
  );
  const plain = { type: "address", description: "" } as const;
  throwsUsage(
    () => convertValue("--to", plain, "server-1", { names: true }),
    /is not a host:port address \(missing port\)/,
  );
});

Deno.test("mergeOptions() puts built-in defaults first and lets later layers win", () => {
  const spec = roleSpec(ROLES.balancer);
  const merged = mergeOptions(spec, { port: 1, policy: "p2c" }, { port: 2, policy: undefined });
  assert.equal(merged.port, 2);
  assert.equal(merged.policy, "p2c");
  assert.equal(merged.workerPort, 8889);
  assert.equal(merged.heartbeat, 1000);
  assert.deepEqual(defaultsOf(ROLES.client.options), { connect: "127.0.0.1:5556", timeout: 5000 });
});

Deno.test("suggest() finds near misses and prefixes, not unrelated words", () => {
  assert.equal(suggest("bakends", ["backends", "port"]), "backends");
  assert.equal(suggest("work", ["worker-port", "port"]), "worker-port");
  assert.equal(suggest("zzz", ["backends", "port"]), undefined);
});

// ---- help ----

Deno.test("formatMainHelp() lists usage, roles and global flags", () => {
  const text = formatMainHelp(ROLES, "1.2.3");
  assert.match(text, /dist 1\.2\.3/);
  assert.match(text, /dist <role> \[flags\]/);
  assert.match(text, /dist --role <role> \[flags\]/);
  assert.match(text, /balancer\s+Spreads requests over backends/);
  assert.match(text, /--version/);
});

Deno.test("formatRoleHelp() shows every flag with its default", () => {
  const text = formatRoleHelp("balancer", ROLES.balancer);
  assert.match(text, /dist balancer \[flags\]/);
  assert.match(text, /--worker-port PORT\s+Port workers dial \(default: 8889\)/);
  assert.match(text, /-p, --port PORT/);
  assert.match(text, /--heartbeat DURATION\s+.*\(default: 1s\)/);
  assert.match(text, /--policy round-robin\|least-loaded\|p2c\|random/);
});
