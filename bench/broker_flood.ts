/**
 * The broker under the two floods of issue 17, at full scale, as a hostile
 * user would make them, with well-behaved clients on the same broker:
 *
 * - `subs`: 20 connections × 10,000 `drop-oldest` subscriptions to `/`,
 *   heartbeating and never reading (the write timeout set long, so that
 *   they stay), then 50 small confirmed
 *   publishes, each fanned out to 200,000 subscriptions. Reported: RSS
 *   growth after subscribing and after the publishes (its peak, and once
 *   the fan-out is done) against the bytes the broker counts; confirmation
 *   latency; broker CPU per publish; the round-trip of another client's
 *   pings meanwhile (the longest stall); and what a subscriber of `/` that
 *   subscribed after the flood (the last of 200,001 in the fan-out) got.
 * - `deep`: retained publishes to 60,000 new topics of 60 segments each
 *   (pipelined, confirmed), while a well-behaved subscriber gets a steady
 *   stream on its own topic. Reported: RSS peak against the count (and
 *   against what the topics and retained values count once, without V8's
 *   headroom), CPU per publish, and what the subscriber got and how late.
 *
 *   deno task bench broker-flood [--quick]       (quick: a tenth of the counts)
 *
 * One round each (each takes a minute or so and most of a core); the
 * figures are ratios within the run.
 */
import { type BenchFlags, cpuUs, median, mib, round3, rssOf } from "./_common.ts";
import { startDist } from "../tests/helpers/dist.ts";
import { BrokerClient } from "../tests/helpers/broker.ts";
import { sleep } from "../tests/helpers/raw.ts";
import { flood } from "../tests/helpers/flood.ts";

const MIB = 1024 * 1024;
/** FLOOD_DEBUG=1: the broker logs at debug level, and its collections are printed at the end. */
const DEBUG = Deno.env.get("FLOOD_DEBUG") === "1";
const LOG = DEBUG ? ["--log-level=debug"] : [];

function printCollections(stderr: string): void {
  if (!DEBUG) return;
  for (const line of stderr.split("\n")) {
    if (/Collected|Cut off|slow/i.test(line)) console.log(line);
  }
}

/** The broker's `memory` stats. */
interface Memory {
  bytes: number;
  budget: number | null;
  shed: number;
  collections: number;
}

/** Percentile of a list (p in 0..1). */
function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

/**
 * Samples the broker every 100 ms until stopped: RSS growth over `base`
 * and the bytes it counts at the same moment (asked of `client`).
 */
function sampler(pid: number, base: number, client: BrokerClient) {
  let peak = 0, peakCounted = 0, worst = 0;
  let running = true;
  const done = (async () => {
    while (running) {
      const stats = await client.stats();
      const counted = (stats.memory as Memory).bytes;
      const grown = rssOf(pid) - base;
      if (grown > peak) [peak, peakCounted] = [grown, counted];
      if (counted >= 32 * MIB) worst = Math.max(worst, grown / counted);
      await sleep(100);
    }
  })();
  return {
    /** Stops; the peak growth, what was counted then, and the worst ratio seen. */
    async stop() {
      running = false;
      await done;
      return { peak, peakCounted, worst };
    },
  };
}

/** Round trips of `sys.ping` one after another until stopped: the longest is the longest stall. */
function pinger(client: BrokerClient) {
  const rtts: number[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const t0 = performance.now();
      await client.peer.call("sys.ping");
      rtts.push(performance.now() - t0);
      await sleep(5);
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return rtts;
    },
  };
}

async function statsSettled(client: BrokerClient, ms: number) {
  const end = performance.now() + ms;
  let stats = await client.stats();
  while ((stats.fanout_waiting as number) > 0 && performance.now() < end) {
    await sleep(50);
    stats = await client.stats();
  }
  return stats;
}

/** The flood of never-reading subscriptions. */
async function subsFlood(quick: boolean): Promise<Record<string, number>> {
  const conns = 20, perConn = quick ? 1000 : 10_000, publishes = 50;
  const b = await startDist(["broker", "--port=0", "--write-timeout=300000", ...LOG]);
  const pid = b.child.pid;
  const cleanup: (() => void)[] = [];
  try {
    const watch = await BrokerClient.connect(b.port, "json", "watch");
    cleanup.push(() => watch.close());
    await sleep(300);
    const base = rssOf(pid);
    const t0 = performance.now();
    const f = await flood(b.port, conns, perConn, { batch: 1000, parallel: true });
    cleanup.push(() => f.stop());
    const subscribeS = (performance.now() - t0) / 1000;
    // The well-behaved subscriber comes after the flood: the last of the fan-out's targets.
    const good = await BrokerClient.connect(b.port, "json", "good");
    cleanup.push(() => good.close());
    await good.subscribe("/", {});
    await sleep(1000);
    let stats = await watch.stats();
    const subscribed = { grown: rssOf(pid) - base, counted: (stats.memory as Memory).bytes };
    console.log(
      `subs: ${conns}×${perConn} subscriptions in ${subscribeS.toFixed(1)} s ` +
        `(${f.refused} refused): RSS +${mib(subscribed.grown)} for ${mib(subscribed.counted)} ` +
        `counted (${(subscribed.grown / subscribed.counted).toFixed(2)}×)`,
    );
    const pub = await BrokerClient.connect(b.port, "json", "pub");
    cleanup.push(() => pub.close());
    const probe = await BrokerClient.connect(b.port, "json", "probe");
    cleanup.push(() => probe.close());
    const samples = sampler(pid, base, watch);
    const pings = pinger(probe);
    const cpu0 = cpuUs(pid);
    const confirms: number[] = [];
    const sent: number[] = [];
    /** When each confirmation came: the broker sends it as it reads the publish. */
    const read: number[] = [];
    // When each delivery to the good subscriber arrives, seen every 2 ms from the first publish on.
    const arrivals: number[] = [];
    let watching = true;
    const arriving = (async () => {
      while (watching) {
        await sleep(2);
        while (arrivals.length < good.deliveries.length) arrivals.push(performance.now());
      }
    })();
    const tPub = performance.now();
    for (let i = 0; i < publishes; i++) {
      const t = performance.now();
      sent.push(t);
      await pub.confirm(`/t/${i % 5}`, { n: i, text: "x".repeat(60), ok: true }, false);
      confirms.push(performance.now() - t);
      read.push(performance.now());
    }
    const publishS = (performance.now() - tPub) / 1000;
    const end = performance.now() + 120_000;
    while (good.deliveries.length < publishes && performance.now() < end) await sleep(2);
    await sleep(4);
    watching = false;
    await arriving;
    stats = await statsSettled(watch, 120_000);
    const cpu = cpuUs(pid) - cpu0;
    const rtts = await pings.stop();
    await sleep(2000); // the guard's next look, after the fan-out
    const peak = await samples.stop();
    stats = await watch.stats();
    const memory = stats.memory as Memory;
    const settled = rssOf(pid) - base;
    const inOrder = good.deliveries.every((d, i) => (d.value as { n: number }).n === i);
    const late = arrivals.map((t, i) => t - sent[i]);
    // Behind its confirmation: the wait in the fan-out, without the publisher's (held back).
    const behind = arrivals.map((t, i) => t - read[i]);
    const out = {
      subs_rss_subscribed_ratio: subscribed.grown / subscribed.counted,
      subs_rss_peak_mib: peak.peak / MIB,
      subs_rss_peak_ratio: peak.peak / peak.peakCounted,
      subs_rss_worst_ratio: peak.worst,
      subs_rss_settled_ratio: settled / memory.bytes,
      subs_counted_mib: memory.bytes / MIB,
      subs_confirm_p50_ms: median(confirms),
      subs_confirm_max_ms: Math.max(...confirms),
      subs_cpu_ms_per_publish: cpu / 1000 / publishes,
      subs_ping_p50_ms: median(rtts),
      subs_ping_p99_ms: pct(rtts, 0.99),
      subs_ping_max_ms: Math.max(...rtts),
      subs_good_received: good.deliveries.length,
      subs_good_in_order: inOrder ? 1 : 0,
      subs_good_late_p50_ms: median(late),
      subs_good_late_max_ms: Math.max(...late),
      subs_good_behind_confirm_p50_ms: median(behind),
      subs_good_behind_confirm_max_ms: Math.max(...behind),
      subs_publish_s: publishS,
      subs_shed: memory.shed,
      subs_collections: memory.collections,
    };
    console.log(
      `subs: ${publishes} publishes × ${stats.subscriptions} subscriptions: ` +
        `RSS peak +${mib(peak.peak)} for ${mib(peak.peakCounted)} counted ` +
        `(${out.subs_rss_peak_ratio.toFixed(2)}×; worst sample ${peak.worst.toFixed(2)}×), ` +
        `settled +${mib(settled)} for ${mib(memory.bytes)} (${
          out.subs_rss_settled_ratio.toFixed(2)
        }×); ` +
        `queued ${
          mib(stats.queued_bytes as number)
        }, dropped ${stats.dropped}, shed ${memory.shed}, ` +
        `collections ${memory.collections}`,
    );
    console.log(
      `subs: confirm p50 ${out.subs_confirm_p50_ms.toFixed(1)} ms max ${
        out.subs_confirm_max_ms.toFixed(1)
      } ms; ` +
        `CPU ${out.subs_cpu_ms_per_publish.toFixed(1)} ms per publish ` +
        `(${(cpu / publishes / (Number(stats.subscriptions))).toFixed(2)} µs per delivery); ` +
        `other client's ping p50 ${out.subs_ping_p50_ms.toFixed(1)} ms p99 ${
          out.subs_ping_p99_ms.toFixed(1)
        } ms max ${out.subs_ping_max_ms.toFixed(1)} ms (${rtts.length} pings); ` +
        `good subscriber got ${good.deliveries.length}/${publishes}${
          inOrder ? " in order" : " OUT OF ORDER"
        }, ` +
        `late p50 ${out.subs_good_late_p50_ms.toFixed(0)} ms max ${
          out.subs_good_late_max_ms.toFixed(0)
        } ms (the publishes took ${publishS.toFixed(1)} s; behind the confirmation p50 ${
          out.subs_good_behind_confirm_p50_ms.toFixed(0)
        } ms max ${out.subs_good_behind_confirm_max_ms.toFixed(0)} ms)`,
    );
    return out;
  } finally {
    for (const c of cleanup.reverse()) c();
    printCollections((await b.stop()).stderr);
  }
}

/** A topic of `depth` segments, each new (nothing shared with another topic's). */
function deepTopic(i: number, depth: number): string {
  let name = "";
  for (let k = 0; k < depth; k++) name += `/d${i}s${k}`;
  return name;
}

/** The flood of deep retained topics. */
async function deepFlood(quick: boolean): Promise<Record<string, number>> {
  const topics = quick ? 6000 : 60_000, depth = 60, batch = 200;
  const b = await startDist(["broker", "--port=0", ...LOG]);
  const pid = b.child.pid;
  const cleanup: (() => void)[] = [];
  try {
    const watch = await BrokerClient.connect(b.port, "json", "watch");
    cleanup.push(() => watch.close());
    const good = await BrokerClient.connect(b.port, "json", "good");
    cleanup.push(() => good.close());
    await good.subscribe("/w", {});
    const steady = await BrokerClient.connect(b.port, "json", "steady");
    cleanup.push(() => steady.close());
    const pub = await BrokerClient.connect(b.port, "json", "pub");
    cleanup.push(() => pub.close());
    await sleep(300);
    const base = rssOf(pid);
    const samples = sampler(pid, base, watch);
    // The steady stream: 1,000 messages a second, each stamped with its send time.
    let running = true;
    let sentSteady = 0;
    const stream = (async () => {
      while (running) {
        steady.publish("/w/x", { n: sentSteady++, t: performance.now() }, false);
        await sleep(1);
      }
    })();
    // How late each arrives (read every few ms: a bound on the resolution).
    const late: number[] = [];
    let seen = 0;
    let watching = true;
    const lateness = (async () => {
      while (watching) {
        await sleep(2);
        for (; seen < good.deliveries.length; seen++) {
          late.push(performance.now() - (good.deliveries[seen].value as { t: number }).t);
        }
      }
    })();
    const cpu0 = cpuUs(pid);
    const t0 = performance.now();
    for (let i = 0; i < topics; i += batch) {
      const calls = [];
      for (let k = i; k < Math.min(topics, i + batch); k++) {
        calls.push(pub.confirm(deepTopic(k, depth), k, true));
      }
      await Promise.all(calls);
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cpuUs(pid) - cpu0;
    running = false;
    await stream;
    const last = sentSteady;
    const end = performance.now() + 10_000;
    while (good.deliveries.length < last && performance.now() < end) await sleep(10);
    watching = false;
    await lateness;
    await sleep(2000);
    const peak = await samples.stop();
    const stats = await watch.stats();
    const memory = stats.memory as Memory;
    const settled = rssOf(pid) - base;
    const got = good.deliveries.map((d) => d.value as { n: number; t: number });
    const inOrder = got.every((v, i) => v.n === i);
    // What the topics and their retained values count once (memory.bytes counts them with
    // V8's headroom: roles/broker/memory.ts HEAP_HEADROOM).
    const data = (stats.topic_bytes as number) + (stats.retained as { bytes: number }).bytes;
    const out = {
      deep_publishes_per_s: topics / seconds,
      deep_rss_peak_mib: peak.peak / MIB,
      deep_rss_peak_ratio: peak.peak / peak.peakCounted,
      deep_rss_worst_ratio: peak.worst,
      deep_rss_settled_ratio: settled / memory.bytes,
      deep_counted_mib: memory.bytes / MIB,
      deep_topic_data_mib: data / MIB,
      deep_rss_peak_per_data: peak.peak / data,
      deep_topics_kept: stats.topics as number,
      deep_topics_evicted: stats.topics_evicted as number,
      deep_cpu_us_per_publish: cpu / topics,
      deep_good_sent: last,
      deep_good_received: got.length,
      deep_good_in_order: inOrder ? 1 : 0,
      deep_good_late_p50_ms: median(late),
      deep_good_late_p99_ms: pct(late, 0.99),
      deep_good_late_max_ms: Math.max(...late),
      deep_collections: memory.collections,
    };
    console.log(
      `deep: ${topics} retained topics of ${depth} segments in ${seconds.toFixed(1)} s ` +
        `(${out.deep_cpu_us_per_publish.toFixed(0)} µs CPU each): ${stats.topics} kept, ` +
        `${stats.topics_evicted} evicted; RSS peak +${mib(peak.peak)} for ${
          mib(peak.peakCounted)
        } counted ` +
        `(${out.deep_rss_peak_ratio.toFixed(2)}×; worst sample ${peak.worst.toFixed(2)}×), ` +
        `settled +${mib(settled)} for ${mib(memory.bytes)} (${
          out.deep_rss_settled_ratio.toFixed(2)
        }×); topics and retained values count ${mib(data)} once (peak ${
          out.deep_rss_peak_per_data.toFixed(2)
        }× that), ` +
        `collections ${memory.collections}; steady subscriber got ${got.length}/${last}${
          inOrder ? " in order" : " OUT OF ORDER"
        }, late p50 ${out.deep_good_late_p50_ms.toFixed(1)} ms p99 ${
          out.deep_good_late_p99_ms.toFixed(1)
        } ms max ${out.deep_good_late_max_ms.toFixed(1)} ms`,
    );
    return out;
  } finally {
    for (const c of cleanup.reverse()) c();
    printCollections((await b.stop()).stderr);
  }
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const which = Deno.env.get("FLOOD") ?? "subs,deep";
  const out: Record<string, number> = {};
  if (which.includes("subs")) Object.assign(out, await subsFlood(flags.quick));
  if (which.includes("deep")) Object.assign(out, await deepFlood(flags.quick));
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, round3(v)]));
}
