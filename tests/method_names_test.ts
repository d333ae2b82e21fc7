/**
 * Issue 13 item 16: a method name is looked up in a table of the role's own
 * methods, never as a key of a plain object, so `constructor`, `toString`,
 * `valueOf` or `__proto__` find nothing: UNKNOWN_METHOD from every role that
 * answers requests, as a user sees it with `dist client`.
 */
import assert from "node:assert/strict";
import { type DistProcess, lines, runDist, startDist } from "./helpers/dist.ts";
import { startBalancer, startWorker } from "./helpers/balancer.ts";

const NAMES = ["constructor", "toString", "valueOf", "__proto__", "hasOwnProperty"];

/** Sends every name in NAMES (from a pipe, one per line) and returns the answers. */
async function ask(address: string): Promise<{ ok: boolean; error?: { code: string } }[]> {
  const r = await runDist(["client", "-c", address, "--json"], {
    stdin: NAMES.join("\n") + "\n",
  });
  const answers = lines(r.stdout).map((l) => JSON.parse(l));
  assert.equal(answers.length, NAMES.length, `one answer per line; stderr:\n${r.stderr}`);
  assert.equal(r.code, 1, "every line failed");
  return answers;
}

function assertUnknown(answers: { ok: boolean; error?: { code: string } }[], who: string): void {
  answers.forEach((a, i) => {
    assert.equal(a.ok, false, `${who}: ${NAMES[i]}`);
    assert.equal(a.error?.code, "UNKNOWN_METHOD", `${who}: ${NAMES[i]}: ${JSON.stringify(a)}`);
  });
}

Deno.test("every listening role answers constructor, toString, valueOf, __proto__ with UNKNOWN_METHOD", async () => {
  const started: { stop(): Promise<unknown> }[] = [];
  try {
    const [server, broker, binder] = await Promise.all([
      startDist(["server", "--port", "0", "--name", "s1"]),
      startDist(["broker", "--port", "0"]),
      startDist(["binder", "--port", "0"]),
    ]);
    started.push(server, broker, binder);
    const overServer = await startBalancer([server]);
    started.push(overServer);
    // A balancer with a worker as its only backend: what it forwards, the worker answers.
    const overWorker = await startBalancer([] as DistProcess[]);
    started.push(overWorker);
    const worker = await startWorker(overWorker.workerAddress, ["--name", "w1"]);
    started.push(worker);

    const targets: [string, string][] = [
      ["server", server.address],
      ["broker", broker.address],
      ["binder", binder.address],
      ["balancer (forwarded to a server)", overServer.address],
      ["balancer's worker port", overServer.workerAddress],
      ["worker (through a balancer)", overWorker.address],
    ];
    const answers = await Promise.all(targets.map(([, address]) => ask(address)));
    targets.forEach(([who], i) => assertUnknown(answers[i], who));
  } finally {
    await Promise.all(started.map((p) => p.stop()));
  }
});
