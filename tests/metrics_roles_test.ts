/**
 * The metrics issue 20 asked for beyond the shell's: the launcher's own
 * endpoint (each instance up or down, its restarts), the dialing roles'
 * counts (client, producer, consumer, worker), the balancer's time through
 * it, the broker's publish-to-delivery time and the binder's replication
 * lag; each endpoint passes `promtool check metrics` (Debian `prometheus`)
 * and its numbers follow what the test did.
 */
import assert from "node:assert/strict";
import { distCommand, freePort, startDist } from "./helpers/dist.ts";
import { connectTo, startBalancer } from "./helpers/balancer.ts";
import { waitFor } from "./helpers/raw.ts";
import { BrokerClient } from "./helpers/broker.ts";
import { withUp } from "./helpers/up.ts";
import {
  METRICS_LINE,
  metricsUrl as urlOf,
  promtoolCheck as check,
  sample,
  scrape,
} from "./helpers/metrics.ts";

const M = ["--metrics", "127.0.0.1:0"];

/** A process that runs until stopped (stdin piped, for the interactive client). */
function spawnDist(args: string[]) {
  const { exe, args: argv } = distCommand(args);
  const child = new Deno.Command(exe, {
    args: argv,
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let text = "";
  const reading = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) text += chunk;
  })();
  const writer = child.stdin.getWriter();
  return {
    stderr: () => text,
    write: (line: string) => writer.write(new TextEncoder().encode(line + "\n")),
    url: async () => {
      await waitFor(() => METRICS_LINE.test(text), 10_000, `Metrics at, from ${args[0]}`);
      return text.match(METRICS_LINE)![1];
    },
    stop: async () => {
      await writer.close().catch(() => {});
      try {
        child.kill("SIGTERM");
      } catch {
        // Exited already.
      }
      await child.status;
      await reading;
    },
  };
}

/** Scrapes until `series` is at least `min`; the text of that scrape. */
async function until(url: string, series: string, min: number): Promise<string> {
  let text = "";
  const end = performance.now() + 15_000;
  while (performance.now() < end) {
    text = await scrape(url);
    if ((sample(text, series) ?? -1) >= min) return text;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${series} did not reach ${min}:\n${text}`);
}

Deno.test("--metrics: the client, producer, consumer and worker count, and the balancer, broker and binder time", async () => {
  const started: { stop: () => Promise<unknown> }[] = [];
  try {
    // Two binders replicating: a registration on one reaches the other, whose lag is timed.
    const [pa, pb] = [freePort(), freePort()];
    const peers = ["--peers", `127.0.0.1:${pa},127.0.0.1:${pb}`];
    const binderA = await startDist(["binder", "--port", String(pa), ...peers]);
    started.push(binderA);
    const binderB = await startDist(["binder", "--port", String(pb), ...peers, ...M]);
    started.push(binderB);
    const reg = await connectTo(binderA.address);
    await reg.call("binder.register", {
      service: "svc",
      host: "127.0.0.1",
      port: 1,
      ttl_ms: 120_000,
    });
    reg.close();
    const b = await until(
      await urlOf(binderB.stderr),
      "dist_binder_replication_lag_seconds_count",
      1,
    );
    assert.equal(await check(b), "", b);
    // A change is stamped when made and merged a moment later: well under the lag's last bucket.
    assert.equal(
      sample(b, 'dist_binder_replication_lag_seconds_bucket{le="300"}'),
      sample(b, "dist_binder_replication_lag_seconds_count"),
    );

    // A balancer over a server and a worker; an interactive client through it.
    const server = await startDist(["server", "--port", "0"]);
    started.push(server);
    const balancer = await startBalancer([server], M);
    started.push(balancer);
    const worker = spawnDist(["worker", "--balancer", balancer.workerAddress, ...M]);
    started.push(worker);
    await waitFor(() => /Registered/i.test(worker.stderr()), 10_000, "the worker's registration");
    const client = spawnDist(["client", "--connect", balancer.address, ...M]);
    started.push(client);
    const clientUrl = await client.url();
    const n = 6;
    for (let i = 0; i < n; i++) await client.write(`add ${i} 1`);
    await client.write("div 1 0");
    // Both counts, whichever answer comes last (it was the OKs only: the div's could lag).
    const bad = 'dist_client_requests_total{class="ops",code="BAD_REQUEST"}';
    await until(clientUrl, bad, 1);
    const c = await until(clientUrl, 'dist_client_requests_total{class="ops",code="OK"}', n);
    assert.equal(await check(c), "", c);
    assert.equal(sample(c, bad), 1);
    assert.equal(sample(c, 'dist_client_request_duration_seconds_count{class="ops"}'), n + 1);
    const bal = await until(
      await urlOf(balancer.stderr),
      "dist_balancer_forward_duration_seconds_count",
      n + 1,
    );
    assert.equal(await check(bal), "", bal);
    assert.ok(sample(bal, "dist_balancer_forward_duration_seconds_sum")! > 0);
    const w = await scrape(await worker.url());
    assert.equal(await check(w), "", w);
    assert.ok(sample(w, 'dist_worker_tasks_total{outcome="ok"}')! >= 1, w);
    assert.equal(sample(w, "dist_worker_registrations_total"), 1);

    // A broker, a consumer, and a producer publishing one round.
    const broker = await startDist(["broker", "--port", "0", ...M]);
    started.push(broker);
    const consumer = spawnDist(["consumer", "--broker", broker.address, "--topic", "/", ...M]);
    started.push(consumer);
    await waitFor(() => /Subscribed/.test(consumer.stderr()), 10_000, "the subscription");
    const producer = spawnDist([
      "producer",
      "--broker",
      broker.address,
      "--type",
      "telephony",
      "--interval",
      "1h",
      ...M,
    ]);
    started.push(producer);
    const p = await until(
      await producer.url(),
      'dist_producer_messages_total{outcome="published"}',
      3,
    );
    assert.equal(await check(p), "", p);
    assert.equal(sample(p, 'dist_producer_messages_total{outcome="failed"}'), 0);
    const co = await until(await consumer.url(), "dist_consumer_messages_received_total", 3);
    assert.equal(await check(co), "", co);
    // Publishes are timed by a sample (obs/timings.ts' Sampler): 16 more give it two at least.
    const pub = await BrokerClient.connect(broker.port);
    for (let i = 0; i < 16; i++) await pub.confirm(`/t/${i}`, i);
    pub.close();
    const br = await until(
      await urlOf(broker.stderr),
      "dist_broker_publish_delivery_seconds_count",
      2,
    );
    assert.equal(await check(br), "", br);
  } finally {
    await Promise.all(started.map((s) => s.stop()));
  }
});

Deno.test("dist up --metrics: each instance up or down and its restarts, also at the dashboard's /metrics", async () => {
  const topology = `[[server]]\nname = "s"\nport = 0\nrestart = "always"\n\n` +
    `[[client]]\nname = "c"\nconnect = "s"\nrandom = 1\n`;
  const args = ["--metrics", "127.0.0.1:0", "--dashboard", "127.0.0.1:0"];
  await withUp(topology, args, async (up) => {
    const [, url] = await up.waitFor(/Launcher metrics at (\S+)$/m);
    const [, dashboard] = await up.waitFor(/dashboard at (\S+)$/m);
    const upSeries = 'dist_launcher_instance_up{instance="s",role="server"}';
    const restarts = 'dist_launcher_instance_restarts_total{instance="s",role="server"}';
    const first = await until(url, upSeries, 1);
    assert.equal(await check(first), "", first);
    assert.equal(sample(first, restarts), 0);
    assert.equal(sample(first, 'dist_info{role="launcher",name="dist up",version="0.1.0"}'), 1);
    // The client's batch ends: it is down, and the launcher counts it exited.
    const ended = await until(url, 'dist_launcher_instances{state="exited"}', 1);
    assert.equal(sample(ended, 'dist_launcher_instance_up{instance="c",role="client"}'), 0);
    const [pid] = up.pids();
    Deno.kill(pid, "SIGKILL");
    // Down, then up again with one restart.
    const again = await until(url, restarts, 1);
    const later = await until(url, upSeries, 1);
    assert.equal(sample(later, restarts), 1, again);
    const viaDashboard = await scrape(new URL("metrics", dashboard).href);
    assert.equal(sample(viaDashboard, restarts), 1);
    assert.equal(await check(viaDashboard), "", viaDashboard);
  });
});
