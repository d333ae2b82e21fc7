/**
 * The `eval` operation (the broker lab's remote `conn.eval('2*math.pi')`), as
 * a user meets it: one shot and in the shell, on a server, through a
 * balancer to a server and to a worker, and with hostile expressions that
 * must come back as BAD_REQUEST while the process carries on.
 */
import assert from "node:assert/strict";
import { type DistProcess, lines, runDist, startDist } from "./helpers/dist.ts";
import { assertUserError } from "./helpers/cli.ts";
import { startBalancer, startWorker, type WorkerProcess } from "./helpers/balancer.ts";
import { ptyUnavailable, startPty } from "./helpers/pty.ts";

const NO_PTY = await ptyUnavailable();
if (NO_PTY) console.warn(`eval_test: the pseudo-terminal test is skipped: ${NO_PTY}`);

/** A server, a balancer over it, and a balancer whose only backend is a worker. */
async function cluster(): Promise<{
  server: DistProcess;
  overServer: DistProcess;
  overWorker: DistProcess & { workerAddress: string };
  worker: WorkerProcess;
  stop(): Promise<void>;
}> {
  const server = await startDist(["server", "--port", "0", "--name", "s1"]);
  const [overServer, overWorker] = await Promise.all([
    startBalancer([server]),
    startBalancer([]),
  ]);
  const worker = await startWorker(overWorker.workerAddress, ["--name", "w1"]);
  return {
    server,
    overServer,
    overWorker,
    worker,
    stop: async () => {
      await Promise.all([overServer.stop(), overWorker.stop(), worker.stop()]);
      await server.stop();
    },
  };
}

const HOSTILE: [string, RegExp][] = [
  ["1+(2*3))", /^BAD_REQUEST: Unexpected "\)" at 7$/],
  ["(".repeat(200) + "1" + ")".repeat(200), /^BAD_REQUEST: Expression nested deeper than 64/],
  ["1+".repeat(50_000), /^BAD_REQUEST: Expression of 100000 characters: at most 1000/],
  ["constructor", /^BAD_REQUEST: Unknown name "constructor" at 0/],
  ["__proto__", /^BAD_REQUEST: Unknown name "__proto__" at 0/],
  ["process.exit()", /^BAD_REQUEST: Unknown name "process.exit" at 0/],
  ["toString()", /^BAD_REQUEST: Unknown name "toString" at 0/],
  ["1/0", /^BAD_REQUEST: Division by zero at 1$/],
  ["10^400", /^BAD_REQUEST: Result of \^ at 2 is out of range$/],
];

Deno.test("dist client eval prints the value, from a server, through a balancer and from a worker", async () => {
  const c = await cluster();
  try {
    const targets: [string, string][] = [
      [c.server.address, "s1"],
      [c.overServer.address, "s1"],
      [c.overWorker.address, "w1"],
    ];
    const plain = await runDist(["client", "-c", c.overWorker.address, "eval", "2*pi"]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stdout, "6.283185307179586\n");
    const runs = await Promise.all(
      targets.map(([address]) => runDist(["client", "-c", address, "--json", "eval", "2*math.pi"])),
    );
    targets.forEach(([address, by], i) => {
      assert.equal(runs[i].code, 0, `${address}: ${runs[i].stderr}`);
      const answer = JSON.parse(runs[i].stdout);
      assert.equal(answer.result, 6.283185307179586);
      assert.equal(answer.by, by, `${address} answered by ${by}`);
    });
  } finally {
    await c.stop();
  }
});

Deno.test("one JSON object or array after an operation is its params (issue 13 item 10)", async () => {
  const server = await startDist(["server", "--port", "0"]);
  try {
    const c = ["client", "-c", server.address];
    const [add, sum, array, broken] = await Promise.all([
      runDist([...c, "add", '{"a":3,"b":4}']),
      runDist([...c, "sum", '{"values":[1,2,3]}']),
      runDist([...c, "mul", "[6,7]"]),
      runDist([...c, "add", "{a:3}"]),
    ]);
    assert.deepEqual([add.stdout, sum.stdout, array.stdout], ["7\n", "6\n", "42\n"]);
    assert.equal(
      assertUserError(broken, 2, "broken JSON"),
      "dist: Parameters are not valid JSON: {a:3}",
    );
  } finally {
    await server.stop();
  }
});

Deno.test("hostile expressions are a BAD_REQUEST with the cause, and every process carries on", async () => {
  const c = await cluster();
  try {
    for (const address of [c.server.address, c.overServer.address, c.overWorker.address]) {
      // From a pipe: one answer per line, the same code as the shell's.
      const script = HOSTILE.map(([expr]) => `eval ${expr}`).join("\n") + "\neval 2*pi\n";
      const piped = await runDist(["client", "-c", address], { stdin: script });
      const out = lines(piped.stdout);
      assert.equal(out.length, HOSTILE.length + 1, piped.stdout.slice(0, 2000));
      HOSTILE.forEach(([, expected], i) => {
        assert.match(out[i].replace(/^error /, ""), expected, `${address}: line ${i + 1}`);
      });
      assert.equal(out.at(-1), "6.283185307179586", "the process answers after all of them");
      assert.equal(piped.code, 1, "lines failed");
    }
    // One shot: `dist: CODE: message` and exit 1.
    const one = await runDist(["client", "-c", c.overWorker.address, "eval", "1+(2*3))"]);
    assert.equal(
      assertUserError(one, 1, "one-shot syntax error"),
      'dist: BAD_REQUEST: Unexpected ")" at 7',
    );
    // Params that are not text: refused, not evaluated.
    const wrong = await runDist(["client", "-c", c.server.address, "eval", '{"expr":{"a":1}}']);
    assert.match(assertUserError(wrong, 1, "object expr"), /eval takes an expression "expr"/);
    // Nothing crashed: each still answers.
    for (const p of [c.server, c.overServer, c.overWorker]) {
      assert.doesNotMatch(p.stderr(), /\[(ERR|FTL)\]|INTERNAL/, p.stderr());
    }
  } finally {
    await c.stop();
  }
});

Deno.test({
  name: "the shell: eval through a balancer to a worker; bare random says it sends 10",
  ignore: NO_PTY !== undefined,
  async fn() {
    const c = await cluster();
    const shell = startPty(["client", "--connect", c.overWorker.address]);
    try {
      await shell.waitFor(/dist> $/);
      let from = shell.screen().length;
      await shell.type("eval 2*pi\r");
      await shell.waitFor(/\s6\.283185307179586\r\n[\s\S]*dist> /, { from });
      from = shell.screen().length;
      await shell.type("eval 1+(2*3))\r");
      await shell.waitFor(/error BAD_REQUEST: Unexpected "\)" at 7\r\n[\s\S]*dist> /, { from });
      from = shell.screen().length;
      await shell.type("random\r");
      await shell.waitFor(
        /random: 10 requests \(random N sends N\)[\s\S]*10 requests: 10 ok, 0 errors; by: w1 ×10\r\n[\s\S]*dist> /,
        { from },
      );
      await shell.type("\x04");
      assert.equal(await shell.status, 1, "a line failed; " + shell.screen());
    } finally {
      await shell.kill();
      await c.stop();
    }
  },
});
