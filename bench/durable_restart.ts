/**
 * Restart of a broker holding many retained values (issue 19): a data
 * directory is filled with N retained values (1,000,000; 100,000 with
 * --quick) written as the broker writes them (JSON text rows, topics of
 * three segments under 100 sites, unicode values), then a broker is started
 * on it and timed: until it listens (it reads the first rows back before
 * its port opens, the rest while it serves: roles/broker/durable.ts); until
 * a client that dialed at that moment has the retained value of the last
 * topic written (an exact subscription, answered from the file while the
 * rest is read: "ready to answer"); until every value is read back
 * (sys.stats `store.loading` false); until the topic tree is built (no
 * topic left to place). Against a broker started on an empty directory,
 * alternating; medians. Also the store's read of the rows alone,
 * in-process.
 */
import { parseAddress } from "../config/mod.ts";
import { dial } from "../wire/mod.ts";
import { type DistProcess, startDist } from "../tests/helpers/dist.ts";
import { BROKER_FILE } from "../roles/broker/durable.ts";
import { Store } from "../store/mod.ts";
import { type BenchFlags, Rounds } from "./_common.ts";

async function startTimed(dir: string): Promise<[number, DistProcess]> {
  const t0 = performance.now();
  const b = await startDist(
    [
      "broker",
      "--port",
      "0",
      "--data-dir",
      dir,
      "--max-topics",
      "2000000",
      "--max-topic-bytes",
      "4294967296",
      "--retain-bytes",
      "2147483648",
      // The collector's pauses while a million values are read back, on a loaded machine, can
      // pass the 3 s of the default heartbeat (measured at load 10): the bench's client stays to
      // measure them (slowest_answer_ms).
      "--heartbeat",
      "5s",
    ],
    { timeoutMs: 300_000 },
  );
  return [performance.now() - t0, b];
}

export async function run(flags: BenchFlags): Promise<Record<string, number>> {
  const n = flags.quick ? 100_000 : 1_000_000;
  const dir = await Deno.makeTempDir();
  const rounds = new Rounds();
  try {
    await Deno.mkdir(`${dir}/full`);
    const store = new Store(`${dir}/full/${BROKER_FILE}`, { fsync: "off", tables: ["retained"] });
    await Deno.mkdir(`${dir}/empty`);
    const now = Math.floor(Date.now() / 1000);
    for (let i = 0; i < n; i++) {
      const value = i % 2
        ? `{"t":${i / 10},"city":"Chișinău","tag":"東京 ✓"}`
        : `{"tag":"Zoë","t":${i}}`;
      store.put("retained", `/site${i % 100}/dev${i}/temp`, `${now} ${value}`);
    }
    await store.commit();
    store.close();
    for (let r = 1; r <= flags.runs; r++) {
      for (const side of r % 2 ? ["empty", "full"] : ["full", "empty"]) {
        const t0 = performance.now();
        const [ms, b] = await startTimed(`${dir}/${side}`);
        if (side === "full") {
          const last = `/site${(n - 1) % 100}/dev${n - 1}/temp`;
          const answered = Promise.withResolvers<void>();
          const peer = await dial(parseAddress(b.address), {
            role: "client",
            name: "bench",
            heartbeatMs: 5000, // the shorter side's counts: as the broker's, see startTimed
            onNotification: (method, params) => {
              if (method === "broker.message" && (params as { topic: string }).topic === last) {
                answered.resolve();
              }
            },
          });
          await peer.call("broker.subscribe", { topic: last });
          await answered.promise;
          rounds.add("first_answer_ms", performance.now() - t0);
          type Stats = {
            retained: { count: number };
            store: { loading: boolean; unplaced: number };
          };
          // Polled every 20 ms while the rest is read back: the slowest answer is the longest
          // a client waited meanwhile.
          let slowest = 0;
          const poll = async () => {
            const t = performance.now();
            const stats = await peer.call("sys.stats") as Stats;
            slowest = Math.max(slowest, performance.now() - t);
            return stats;
          };
          let stats = await poll();
          while (stats.store.loading) {
            await new Promise((resolve) => setTimeout(resolve, 20));
            stats = await poll();
          }
          rounds.add("loaded_ms", performance.now() - t0);
          rounds.add("slowest_answer_ms", slowest);
          if (stats.retained.count !== n) throw new Error(`${stats.retained.count} of ${n} back`);
          // The topic tree is built after the values are read back, in slices: until when.
          while (stats.store.unplaced > 0) {
            await new Promise((resolve) => setTimeout(resolve, 20));
            stats = await peer.call("sys.stats") as Stats;
          }
          rounds.add("tree_built_ms", performance.now() - t0);
          peer.close();
        }
        await b.stop();
        rounds.add(`start_${side}_ms`, ms);
      }
      const reader = new Store(`${dir}/full/${BROKER_FILE}`, {
        fsync: "off",
        tables: ["retained"],
      });
      const t0 = performance.now();
      let rows = 0;
      for (const _ of reader.rows("retained")) rows++;
      rounds.add("read_rows_ms", performance.now() - t0);
      reader.close();
      if (rows !== n) throw new Error(`${rows} rows read of ${n}`);
      rounds.printRound("durable-restart", r);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const m = rounds.medians();
  const sec = (ms: number) => (ms / 1000).toFixed(2);
  console.log(
    `durable-restart medians: ${n} retained values: listening in ${sec(m.start_full_ms)} s ` +
      `(empty directory ${sec(m.start_empty_ms)} s), the last value answered to a client at ` +
      `${sec(m.first_answer_ms)} s, all read back at ${sec(m.loaded_ms)} s (slowest answer ` +
      `meanwhile ${Math.round(m.slowest_answer_ms)} ms), the topic tree ` +
      `built at ${sec(m.tree_built_ms)} s (from the spawn); the rows alone read in ` +
      `${sec(m.read_rows_ms)} s`,
  );
  return m;
}
