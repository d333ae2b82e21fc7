/**
 * Scenario tests of `dist broker`, `dist producer` and `dist consumer` as
 * real processes on port 0: the original lab's scenario, the producer's
 * modes, the consumer's output, Ctrl-C, closed pipes, broker restarts and
 * the users' mistakes. Every process is stopped in `finally`.
 */
import assert from "node:assert/strict";
import { distCommand, type DistProcess, lines, runDist, startDist } from "./helpers/dist.ts";
import { sleep, waitFor } from "./helpers/raw.ts";
import { BrokerClient, statsUntil, streamDist } from "./helpers/broker.ts";
import { ptyUnavailable, startPty } from "./helpers/pty.ts";

async function withBrokerProcess(
  body: (broker: DistProcess) => Promise<void>,
  args: string[] = [],
): Promise<void> {
  const broker = await startDist(["broker", "--port", "0", ...args]);
  try {
    await body(broker);
  } finally {
    await broker.stop();
  }
}

const SUBSCRIBED = /Subscribed to/;

Deno.test("the lab's scenario: a consumer on / gets telephony and msg from two producers", async () => {
  await withBrokerProcess(async (broker) => {
    const consumer = streamDist(["consumer", "--broker", broker.address, "--count", "4", "--json"]);
    try {
      await consumer.until("stderr", SUBSCRIBED);
      const [tel, msg] = await Promise.all([
        runDist(["producer", "-b", broker.address, "--type", "telephony", "--count", "1"]),
        runDist(["producer", "-b", broker.address, "--type", "msg", "--count", "1"]),
      ]);
      assert.equal(tel.code, 0, tel.stderr);
      assert.equal(msg.code, 0, msg.stderr);
      assert.equal(lines(tel.stdout).length, 3, "the producer prints what it publishes");
      assert.match(lines(msg.stdout)[0], /^\/msg \S.*\.$/);
      assert.equal(await consumer.exited(), 0, consumer.stderr());
      const got = lines(consumer.stdout()).map((l) => JSON.parse(l));
      assert.deepEqual(got.map((m) => m.topic).sort(), [
        "/msg",
        "/telephony/moldcell",
        "/telephony/orange",
        "/telephony/unite",
      ]);
      for (const m of got.filter((m) => m.topic.startsWith("/telephony/"))) {
        assert.equal(typeof m.value, "number");
        assert.equal(m.retained, false);
      }
    } finally {
      await consumer.stop();
    }
  });
});

Deno.test("the lab's own commands: consumer --type /, producer --type telephony --count 2 publishes two whole rounds", async () => {
  await withBrokerProcess(async (broker) => {
    const consumer = streamDist([
      "consumer",
      "--broker",
      broker.address,
      "--type",
      "/",
      "--count",
      "6",
    ]);
    try {
      await consumer.until("stderr", /Subscribed to \/:/);
      const tel = await runDist([
        "producer",
        "-b",
        broker.address,
        "--type",
        "telephony",
        "--count",
        "2",
      ]);
      assert.equal(tel.code, 0, tel.stderr);
      const published = lines(tel.stdout).map((l) => l.split(" ")[0]);
      const round = ["/telephony/orange", "/telephony/unite", "/telephony/moldcell"];
      assert.deepEqual(published, [...round, ...round]);
      assert.equal(await consumer.exited(), 0, consumer.stderr());
      const got = lines(consumer.stdout()).map((l) => l.split(" ")[0]);
      assert.deepEqual(got, [...round, ...round]);
    } finally {
      await consumer.stop();
    }
  });
});

Deno.test("consumer --type currency: --list first, the retained value marked, then live", async () => {
  await withBrokerProcess(async (broker) => {
    const first = await runDist([
      "producer",
      "-b",
      broker.address,
      "--topic",
      "/currency",
      "--value",
      "12",
    ]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, "/currency 12\n");
    const consumer = streamDist([
      "consumer",
      "--broker",
      broker.address,
      "--type",
      "currency",
      "--list",
      "--count",
      "2",
    ]);
    try {
      await consumer.until("stderr", SUBSCRIBED);
      const live = await runDist([
        "producer",
        "-b",
        broker.address,
        "--type",
        "currency",
        "--count",
        "1",
      ]);
      assert.equal(live.code, 0, live.stderr);
      assert.equal(await consumer.exited(), 0, consumer.stderr());
      const out = lines(consumer.stdout());
      assert.equal(out[0], "1 topic(s):");
      assert.match(
        out[1],
        /^\s+\/currency\s+retained\s+1 message\(s\)\s+0 subscriber\(s\)\s+last \d{4}-/,
      );
      assert.equal(out[2], "/currency 12 (retained)");
      assert.match(out[3], /^\/currency (\d|[1-3]\d|40)$/);
      assert.equal(out.length, 4);
    } finally {
      await consumer.stop();
    }
  });
});

Deno.test("producer --confirm prints deliveries; --no-retain keeps no retained value", async () => {
  await withBrokerProcess(async (broker) => {
    const consumer = streamDist(["consumer", "-b", broker.address, "--topic", "/news", "--json"]);
    try {
      await consumer.until("stderr", SUBSCRIBED);
      const args = ["producer", "-b", broker.address, "--topic", "/news/today"];
      const confirmed = await runDist([...args, "--value", '{"a":1}', "--confirm", "--no-retain"]);
      assert.equal(confirmed.code, 0, confirmed.stderr);
      assert.equal(confirmed.stdout, '/news/today {"a":1} (1 delivery)\n');
      const retainedNow = async () => {
        const c = await BrokerClient.connect(broker.port);
        try {
          const listing = await c.peer.call("broker.topics", {}) as {
            topics: { retained: boolean }[];
          };
          return listing.topics[0].retained;
        } finally {
          c.close();
        }
      };
      assert.equal(await retainedNow(), false, "--no-retain kept no retained value");
      const repeated = await runDist([
        ...args,
        "--value",
        "hi there",
        "--count",
        "2",
        "--interval",
        "10ms",
        "--json",
      ]);
      assert.equal(repeated.code, 0, repeated.stderr);
      assert.deepEqual(lines(repeated.stdout).map((l) => JSON.parse(l)), [
        { topic: "/news/today", value: "hi there" },
        { topic: "/news/today", value: "hi there" },
      ]);
      await consumer.until("stdout", (t) => lines(t).length === 3);
      assert.deepEqual(lines(consumer.stdout()).map((l) => JSON.parse(l).value), [
        { a: 1 },
        "hi there",
        "hi there",
      ]);
      assert.equal(await retainedNow(), true, "the later publishes were retained (the default)");
    } finally {
      await consumer.stop();
    }
  });
});

Deno.test("producer load mode publishes --count messages; a consumer receives them all", async () => {
  await withBrokerProcess(async (broker) => {
    const n = 3000;
    const consumer = streamDist([
      "consumer",
      "-b",
      broker.address,
      "--topic",
      "/load",
      "--count",
      String(n),
    ]);
    try {
      await consumer.until("stderr", SUBSCRIBED);
      const load = await runDist([
        "producer",
        "-b",
        broker.address,
        "--topic",
        "/load",
        "--payload",
        "100",
        "--count",
        String(n),
        "--json",
      ]);
      assert.equal(load.code, 0, load.stderr);
      const summary = JSON.parse(lines(load.stdout).at(-1)!);
      assert.equal(summary.sent, n);
      assert.deepEqual(summary.errors, {});
      assert.ok(summary.msgs_per_s > 0);
      assert.equal(await consumer.exited(), 0, consumer.stderr());
      const got = lines(consumer.stdout());
      assert.equal(got.length, n);
      assert.ok(got.every((l) => l === `/load ${"x".repeat(100)}`));
    } finally {
      await consumer.stop();
    }
  });
});

Deno.test("consumer on SIGINT unsubscribes and exits 0; the broker keeps nothing", async () => {
  await withBrokerProcess(async (broker) => {
    const consumer = streamDist([
      "consumer",
      "-b",
      broker.address,
      "--topic",
      "/a",
      "--group",
      "g",
    ]);
    const c = await BrokerClient.connect(broker.port);
    try {
      await consumer.until("stderr", SUBSCRIBED);
      assert.equal((await c.stats()).subscriptions, 1);
      assert.equal(await consumer.stop("SIGINT"), 0, consumer.stderr());
      await statsUntil(c, (s) => s.subscriptions === 0 && s.connections === 1);
    } finally {
      c.close();
      await consumer.stop();
    }
  });
});

Deno.test("consumer exits 0 when whoever reads its output goes away", async () => {
  await withBrokerProcess(async (broker) => {
    const { distCommand } = await import("./helpers/dist.ts");
    const { exe, args } = distCommand(["consumer", "-b", broker.address, "--topic", "/p"]);
    const child = new Deno.Command(exe, { args, stdout: "piped", stderr: "piped" }).spawn();
    const errText = new Response(child.stderr).text();
    const pub = await BrokerClient.connect(broker.port);
    try {
      const reader = child.stdout.getReader();
      // Wait for the subscription, then read one chunk and stop reading (`| head -1`).
      await statsUntil(pub, (s) => s.subscriptions === 1);
      pub.publish("/p", "first");
      await reader.read();
      await reader.cancel();
      for (let i = 0; i < 20; i++) {
        pub.publish("/p", `more ${i}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      const status = await Promise.race([
        child.status,
        new Promise<null>((r) => setTimeout(() => r(null), 10_000)),
      ]);
      assert.ok(status !== null, "the consumer exited by itself");
      assert.equal(status.code, 0);
      assert.doesNotMatch(await errText, /error|Error/);
    } finally {
      pub.close();
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited.
      }
      await child.status;
    }
  });
});

Deno.test("consumer resubscribes when the broker comes back on its port", async () => {
  let broker = await startDist(["broker", "--port", "0"]);
  const port = broker.port;
  const consumer = streamDist(["consumer", "-b", broker.address, "--topic", "/r", "--json"]);
  try {
    await consumer.until("stderr", SUBSCRIBED);
    await broker.stop();
    broker = await startDist(["broker", "--port", String(port)]);
    await consumer.until("stderr", (t) => t.split("Subscribed to").length === 3);
    const pub = await runDist([
      "producer",
      "-b",
      broker.address,
      "--topic",
      "/r",
      "--value",
      "back",
    ]);
    assert.equal(pub.code, 0, pub.stderr);
    await consumer.until("stdout", /"back"/);
  } finally {
    await consumer.stop();
    await broker.stop();
  }
});

Deno.test("producer and consumer mistakes are one `dist:` line and exit 2", async () => {
  const cases: [string[], RegExp][] = [
    [["producer"], /^dist: Give --type currency\|msg\|telephony, --topic T --value V/],
    [["producer", "--type", "weather"], /^dist: --type: "weather" is not one of currency, msg/],
    [["producer", "--type", "msg", "--topic", "/x"], /^dist: --type runs a generator/],
    [["producer", "--topic", "/a//b", "--value", "1"], /^dist: --topic: Invalid topic/],
    [["producer", "--topic", "/x", "--value", "1", "--payload", "5"], /^dist: --value is for one/],
    [["consumer", "--topic", "/a b"], /^dist: --topic: Invalid topic/],
    [
      ["consumer", "--topic", "/x", "--type", "currency"],
      /^dist: Give --topic or --type, not both/,
    ],
    [["consumer", "--policy", "never"], /^dist: --policy: "never" is not one of/],
    [["consumer", "--port", "8000"], /^dist: .*--broker HOST:PORT/],
  ];
  const results = await Promise.all(cases.map(([args]) => runDist(args)));
  results.forEach((r, i) => {
    const what = cases[i][0].join(" ");
    assert.equal(r.code, 2, `${what}: ${r.stderr}`);
    assert.match(lines(r.stderr)[0], cases[i][1], what);
  });
});

Deno.test("no broker yet: said at the first refusal; a consumer and a generator keep trying, a one-shot publish gives up", async () => {
  const { freePort } = await import("./helpers/dist.ts");
  const port = freePort();
  const address = `127.0.0.1:${port}`;
  const saidAtOnce = new RegExp(
    `\\[WRN\\] \\S+: No broker at ${address} \\(Connection refused[^)]*\\)\\); retrying until one answers\n`,
  );
  const consumer = streamDist(["consumer", "-b", address, "--count", "2", "--timeout", "500ms"]);
  const generator = streamDist([
    "producer",
    "-b",
    address,
    "--type",
    "currency",
    "--interval",
    "200ms",
  ]);
  let broker: DistProcess | undefined;
  try {
    const t0 = performance.now();
    await Promise.all([
      consumer.until("stderr", saidAtOnce),
      generator.until("stderr", saidAtOnce),
    ]);
    assert.ok(performance.now() - t0 < 5000, "said at the first refusal, not after a timeout");
    const oneShot = await runDist([
      "producer",
      "-b",
      address,
      "--topic",
      "/x",
      "--value",
      "1",
      "--timeout",
      "500ms",
    ]);
    assert.equal(oneShot.code, 1, oneShot.stderr);
    assert.match(
      oneShot.stderr,
      new RegExp(`No broker at ${address} \\(Connection refused.*\\); retrying for 500ms`),
    );
    assert.match(
      lines(oneShot.stderr).at(-1)!,
      new RegExp(`^dist: UNAVAILABLE: No broker at ${address} within 500 ms`),
    );
    // Still trying, well past --timeout: a broker that comes up gets both.
    broker = await startDist(["broker", "--port", String(port)]);
    await consumer.until("stderr", new RegExp(`Connected to the broker at ${address}`));
    assert.equal(await consumer.exited(), 0, consumer.stderr());
    assert.match(consumer.stdout(), /^\/currency \d+/m, "the generator's messages arrived");
  } finally {
    await consumer.stop();
    await generator.stop();
    await broker?.stop();
  }
});

const NO_PTY = await ptyUnavailable();
if (NO_PTY) console.warn(`broker_roles_test: the terminal test is skipped: ${NO_PTY}`);

Deno.test({
  name: "producer load mode draws a progress bar on a terminal, then its summary",
  ignore: NO_PTY !== undefined,
  fn: async () => {
    await withBrokerProcess(async (broker) => {
      const args = ["producer", "-b", broker.address, "--topic", "/p", "--payload", "16"];
      const term = startPty([...args, "--count", "20000"]);
      try {
        await term.waitFor(/\[#{30}\] 100% 20000 msgs \d+ msg\/s/);
        await term.waitFor(/20000 messages of 16 bytes to \/p in [\d.]+ s: \d+ msg\/s/);
        assert.equal(await term.status, 0, term.screen());
      } finally {
        await term.kill();
      }
    });
  },
});

Deno.test("a consumer cut off as slow is told SLOW_CONSUMER before the close, though it read nothing for 3 s", async () => {
  const broker = await startDist(["broker", "--port", "0"]); // --max-pending 8 MiB
  // A consumer whose output nobody reads for a while: its pipe fills, its
  // writes block, and it stops reading from the broker (a paused terminal).
  const { exe, args } = distCommand(["consumer", "-b", broker.address, "--topic", "/load"]);
  const consumer = new Deno.Command(exe, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let stderr = "";
  const errDone = (async () => {
    for await (const c of consumer.stderr.pipeThrough(new TextDecoderStream())) stderr += c;
  })();
  try {
    await waitFor(() => /Subscribed to \/load/.test(stderr), 10_000, "subscription");
    const load = await runDist([
      "producer",
      "-b",
      broker.address,
      "--topic",
      "/load",
      "--payload",
      "1000",
      "--count",
      "40000",
    ]);
    assert.equal(load.code, 0, load.stderr);
    await waitFor(() => /Cutting off consumer-/.test(broker.stderr()), 10_000, "the cut-off");
    await sleep(3000); // longer than the old 1 s the broker waited for its last bytes
    const outDone = consumer.stdout.pipeTo(new WritableStream()); // reading again
    await waitFor(() => /SLOW_CONSUMER/.test(stderr), 15_000, "the consumer to be told").catch(
      (e) => {
        throw new Error(`${e.message}; broker:\n${broker.stderr()}\nconsumer:\n${stderr}`);
      },
    );
    assert.match(
      stderr,
      /\[WRN\] consumer-\d+: Peer broker-\d+ reported: SLOW_CONSUMER: Subscriber of \/load \(sid 1\) fell behind/,
    );
    // Its heartbeats went on while its output was stuck: cut off for being slow, not for silence.
    assert.doesNotMatch(broker.stderr(), /heartbeat_timeout/);
    consumer.kill("SIGTERM");
    await Promise.all([consumer.status, outDone.catch(() => {}), errDone]);
  } finally {
    try {
      consumer.kill("SIGKILL");
    } catch {
      // Exited.
    }
    await consumer.status;
    await broker.stop();
  }
});
