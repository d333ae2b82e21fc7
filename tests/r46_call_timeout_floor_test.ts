/**
 * r46 R5: `--timeout 1ms` was taken, and every call to a server then failed `TIMEOUT`, as asked.
 * A call timeout under 10 ms is refused at start (`dist: …`, exit 2) naming the flag and the
 * floor, in every role that takes one, on the command line and in a topology file.
 */
import assert from "node:assert/strict";
import { parseTopology } from "../config/mod.ts";
import { ROLES } from "../roles/mod.ts";
import { runDist } from "./helpers/dist.ts";

const REFUSED: string[][] = [
  ["client", "--connect", "127.0.0.1:1", "--timeout", "1ms", "add", "1", "2"],
  ["producer", "--broker", "127.0.0.1:1", "--timeout", "9ms", "--topic", "t"],
  ["consumer", "--broker", "127.0.0.1:1", "--timeout", "1ms", "--topic", "t"],
  ["balancer", "--port", "0", "--backends", "127.0.0.1:1", "--timeout", "1ms"],
  ["binder", "--port", "0", "--verify-timeout", "5ms"],
  ["status", "--timeout", "1ms"],
];

for (const args of REFUSED) {
  const flag = args.find((a) => a.endsWith("timeout"))!;
  Deno.test(`dist ${args[0]} ${flag} under 10ms is refused at start, naming the flag`, async () => {
    const r = await runDist(args, { timeoutMs: 20_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^dist: ${flag}: must be at least 10ms, got`, "m"));
  });
}

Deno.test("a client's --timeout of 10ms is taken (the call itself fails, not the flag)", async () => {
  const r = await runDist(["client", "--connect", "127.0.0.1:1", "--timeout", "10ms", "add", "1"], {
    timeoutMs: 20_000,
  });
  assert.doesNotMatch(r.stderr, /must be at least/);
});

Deno.test("a topology file's timeout under 10ms is refused, naming the key", () => {
  const load = (text: string) => parseTopology(text, { file: "cluster.toml", roles: ROLES });
  assert.throws(
    () => load('[[server]]\nname = "s"\nport = 6000\n[[client]]\nconnect = "s"\ntimeout = "2ms"\n'),
    /timeout: must be at least 10ms, got "2ms"/,
  );
  assert.throws(
    () => load('[[binder]]\nname = "b"\nport = 6001\nverify_timeout = 1\n'),
    /verify_timeout: must be at least 10ms, got 1/,
  );
  const ok = load(
    '[[server]]\nname = "s"\nport = 6000\n[[client]]\nconnect = "s"\ntimeout = "10ms"\n',
  );
  assert.equal(ok.instances.find((i) => i.role === "client")?.options.timeout, 10);
});
