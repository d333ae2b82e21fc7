/**
 * Who retained a value, kept across a restart (hostile review 35 H11): with
 * `--users --data-dir` a retained value's user is stored with its row and
 * is its user's again when read back, so the protection of one user's
 * values from another's new topics (review 34 Z6) and each user's share of
 * `--retain-bytes` hold after a restart as before it. And a data file made
 * before rows had a user (the old schema) still opens with every value.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { BrokerCore } from "../roles/broker/core.ts";
import { BROKER_FILE, DurableBroker } from "../roles/broker/durable.ts";
import { Store } from "../store/mod.ts";
import { RawJson } from "../roles/broker/raw_json.ts";
import { DistError } from "../wire/mod.ts";
import { ALICE, MALLORY, USERS, usersBroker } from "./helpers/users_broker.ts";
import { distCommand, startDist } from "./helpers/dist.ts";
import { canMountTmpfs } from "./helpers/tmpfs.ts";
import { dial } from "../wire/mod.ts";
import { parseAddress } from "../config/mod.ts";
import { waitUntil } from "./helpers/binder.ts";

const MIB = 1024 * 1024;
const TOKEN = "shared-token-0123456789";

Deno.test({
  name: "broker --users --data-dir: after a restart another user's new topics still pass over " +
    "alice's retained value",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dist-owner" });
    const flags = ["--data-dir", dir, "--token", TOKEN, "--max-topics", "1000"];
    try {
      let b = await usersBroker(USERS, flags);
      try {
        const alice = await b.as(ALICE);
        await alice.call("broker.publish", { topic: "/a/config", value: { mode: "safe" } });
        // 900 more retained topics of the shared token's holders: the tree near its limit.
        const shared = await b.as(TOKEN);
        for (let i = 0; i < 900; i += 100) {
          await Promise.all(
            Array.from(
              { length: 100 },
              (_, k) => shared.call("broker.publish", { topic: `/f/${i + k}`, value: i + k }),
            ),
          );
        }
      } finally {
        await b.stop();
      }
      b = await usersBroker(USERS, flags);
      try {
        // mallory (publish under /m only) makes new topics past --max-topics.
        const mallory = await b.as(MALLORY);
        let made = 0;
        for (let i = 0; i < 200; i++) {
          try {
            await mallory.call("broker.publish", { topic: `/m/${i}`, value: i, retain: false });
            made++;
          } catch (e) {
            assert.ok(e instanceof DistError && e.code === "OVERLOADED", String(e));
          }
        }
        assert.ok(made > 100, `${made} of mallory's topics made`);
        // Before the fix: forgotten (alice's subscribe of /a: no topics, no value).
        assert.deepEqual(await b.firstValue(ALICE, "/a/config"), { mode: "safe" });
      } finally {
        await b.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

function open(
  dir: string,
  retainBytes: number,
  readBeforeListen?: number,
  fsync: "always" | "batch" = "batch",
): { c: BrokerCore; d: DurableBroker } {
  const c = new BrokerCore({ retainBytes, maxPending: 8 * MIB, maxTopics: 1e6 });
  const d = new DurableBroker(c, dir, {
    fsync,
    moveCorruptAside: false,
    warn: (m) => {
      throw new Error(`unexpected warning: ${m}`);
    },
    readBeforeListen,
    readChunk: 1,
    readTurnMs: 0,
  });
  return { c, d };
}

Deno.test("broker --data-dir: a user's values read back are that user's pool and share again", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-owner" });
  // Each user's share: an eighth of 8,000 bytes; a value below costs 5 + 102 + 64 bytes.
  const v = "x".repeat(100);
  try {
    // (Under always, each row is written while its value is set: its user is known by then.)
    let { c, d } = open(dir, 8000, undefined, "always");
    try {
      for (let i = 0; i < 5; i++) c.publish(`/a/${i}`, v, true, 0, undefined, "alice");
      c.publish("/n/x", v, true, 0);
      c.publish("/t/x", v, true, 0, undefined, "token");
      await d.committed();
    } finally {
      d.close();
    }
    ({ c, d } = open(dir, 8000));
    try {
      assert.equal(c.retained.count, 7);
      assert.equal(c.topics.peek("/a/0")?.retainedBy, "alice");
      assert.equal(c.topics.peek("/n/x")?.retainedBy, undefined);
      assert.equal(c.topics.peek("/t/x")?.retainedBy, "token");
      // A sixth value of alice's: past her share, her own least recently updated goes.
      c.publish("/a/5", v, true, 0, undefined, "alice");
      assert.equal(c.retained.ownerEvicted, 1);
      assert.equal(c.topics.peek("/a/0")?.retained, undefined, "her oldest went");
      for (const t of ["/a/1", "/a/5", "/n/x", "/t/x"]) {
        assert.equal((c.topics.peek(t)?.retained as RawJson).text, JSON.stringify(v), t);
      }
      // A value of no one replacing hers is no one's on disk too.
      c.publish("/a/1", "mine", true, 0);
      await d.committed();
    } finally {
      d.close();
    }
    // Read back while serving (nothing before): a lookup and a walk read their rows at once.
    ({ c, d } = open(dir, 8000, 0));
    try {
      assert.ok(d.loading);
      assert.equal(c.topics.get("/a/5")?.retainedBy, "alice", "a lookup's row");
      c.topics.need(["t"]);
      assert.equal(c.topics.peek("/t/x")?.retainedBy, "token", "a walk's rows");
      await waitUntil(() => !d.loading, "the file read back", 5000);
      assert.equal(c.topics.peek("/a/1")?.retainedBy, undefined);
      assert.equal(c.topics.peek("/a/4")?.retainedBy, "alice");
      assert.equal(c.topics.peek("/a/0"), undefined);
    } finally {
      d.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A broker.db as the broker wrote it before rows had a user: `/old/0..49` = `{"i": i}`. */
function writeOldFile(path: string): void {
  const old = new DatabaseSync(path);
  old.exec("PRAGMA auto_vacuum = INCREMENTAL");
  old.exec("PRAGMA journal_mode = WAL");
  old.exec("PRAGMA application_id = 1684632436"); // "dist"
  old.exec('CREATE TABLE IF NOT EXISTS "retained" (k TEXT PRIMARY KEY NOT NULL, v BLOB NOT NULL)');
  const now = Math.floor(Date.now() / 1000);
  const put = old.prepare('INSERT INTO "retained" (k, v) VALUES (?, ?)');
  for (let i = 0; i < 50; i++) put.run(`/old/${i}`, `${now} {"i":${i}}`);
  old.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get();
  old.close();
}

Deno.test({
  name: "broker --data-dir: a data file of the schema before owners opens with every value",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dist-owner" });
    const path = `${dir}/${BROKER_FILE}`;
    try {
      writeOldFile(path);

      const users = await Deno.makeTempFile({ suffix: ".toml" });
      await Deno.writeTextFile(users, USERS, { mode: 0o600 });
      const args = ["broker", "--port", "0", "--data-dir", dir, "--users", users];
      let broker = await startDist(args);
      const got = new Map<string, unknown>();
      try {
        const alice = await dial(parseAddress(broker.address), {
          role: "client",
          name: "c",
          credentials: { token: ALICE },
        });
        await alice.call("broker.publish", { topic: "/a/new", value: 1 });
        alice.close();
      } finally {
        await broker.stop();
      }
      // The column was added; the old rows have no user, alice's new row has hers.
      const db = new DatabaseSync(path);
      const rows = db.prepare('SELECT k, owner FROM "retained" ORDER BY rowid').all() as {
        k: string;
        owner: string | null;
      }[];
      db.close();
      assert.equal(rows.length, 51);
      assert.ok(rows.filter((r) => r.k.startsWith("/old/")).every((r) => r.owner === null));
      assert.equal(rows.find((r) => r.k === "/a/new")?.owner, "alice");

      // Read back by a broker without --users (anyone may subscribe to /): every value is there.
      broker = await startDist(["broker", "--port", "0", "--data-dir", dir]);
      try {
        const reader = await dial(parseAddress(broker.address), {
          role: "client",
          name: "c",
          onNotification: (method, params) => {
            const m = params as { topic: string; value: unknown };
            if (method === "broker.message") got.set(m.topic, m.value);
          },
        });
        await reader.call("broker.subscribe", { topic: "/" });
        await waitUntil(() => got.size >= 51, "51 retained values", 5000);
        reader.close();
      } finally {
        await broker.stop();
      }
      for (let i = 0; i < 50; i++) assert.deepEqual(got.get(`/old/${i}`), { i });
      assert.equal(got.get("/a/new"), 1);
      await Deno.remove(users);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("store: a table with owners keeps each row's owner, read back by page, key and range", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dist-owner" });
  const options = { fsync: "off" as const, tables: ["t"], owned: ["t"] };
  try {
    let store = new Store(`${dir}/x.db`, options);
    store.put("t", "/a/1", { value: "one", owner: "alice" });
    store.put("t", "/a/2", () => ({ value: new Uint8Array([2]), owner: "bob" }));
    store.put("t", "/a/3", "three");
    store.put("t", "/b/1", { value: "b", owner: "alice" });
    await store.commit();
    assert.deepEqual(store.reads.row("t", "/a/1")?.slice(1), ["/a/1", "one", "alice"]);
    assert.equal(store.reads.read("t", "/a/1"), "one");
    assert.deepEqual(
      store.reads.under("t", "/a", 10).map((r) => [r[1], r[3]]),
      [["/a/1", "alice"], ["/a/2", "bob"], ["/a/3", null]],
    );
    // A value put without an owner replaces the row: no owner then.
    store.put("t", "/a/1", "again");
    await store.commit();
    store.close();
    store = new Store(`${dir}/x.db`, options);
    assert.deepEqual(
      store.reads.page("t", 0, 10).map((r) => [r[1], r[3]]),
      [["/a/2", "bob"], ["/a/3", null], ["/b/1", "alice"], ["/a/1", null]],
    );
    store.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("broker --data-dir: on a full disk a sound file is refused, never moved aside as corrupt", async (t) => {
  if (!await canMountTmpfs()) {
    t.step({ name: "skipped: unshare -rm cannot mount a tmpfs here", ignore: true, fn() {} });
    return;
  }
  // An old file on a 1 MiB tmpfs filled up but for FREE bytes, then a broker with
  // --move-corrupt-aside: with no room for the WAL's index, the WAL, or the new owner column, it
  // is refused (before: "moved it to …corrupt-…" and started empty); with room it starts. Each
  // run's directory listing and file are copied out of the namespace.
  const work = await Deno.makeTempDir({ prefix: "dist-full" });
  const mnt = `${work}/mnt`;
  try {
    await Deno.mkdir(mnt);
    writeOldFile(`${work}/old.db`);
    const { exe, args } = distCommand([
      "broker",
      "--port",
      "0",
      "--data-dir",
      `${mnt}/d`,
      "--move-corrupt-aside",
    ]);
    const run = [exe, ...args].map((w) => `'${w}'`).join(" ");
    const frees = [0, 16, 32, 36, 40, 44, 48, 64, 128].map((k) => k * 1024);
    const script = `mount -t tmpfs -o size=1m none '${mnt}' || exit 9
for free in ${frees.join(" ")}; do
  rm -rf '${mnt}'/*; mkdir '${mnt}/d'; cp '${work}/old.db' '${mnt}/d/broker.db'
  head -c 2m /dev/zero > '${mnt}/filler' 2>/dev/null; truncate -s -$free '${mnt}/filler'
  ${run} > '${work}/out-'$free 2>&1 & pid=$!
  for i in $(seq 100); do grep -q 'Listening on' '${work}/out-'$free && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  kill $pid 2>/dev/null; wait $pid
  ls '${mnt}/d' > '${work}/ls-'$free; cp '${mnt}/d/broker.db' '${work}/db-'$free 2>/dev/null
done`;
    const out = await new Deno.Command("unshare", {
      args: ["-rm", "sh", "-c", script],
      stdin: "null",
      env: { NO_COLOR: "1" },
    }).output();
    const said = new TextDecoder().decode(out.stderr);
    assert.ok(out.success, said);
    let refused = 0;
    for (const free of frees) {
      const log = await Deno.readTextFile(`${work}/out-${free}`);
      const ls = await Deno.readTextFile(`${work}/ls-${free}`);
      assert.doesNotMatch(ls, /corrupt/, `${free} bytes free: ${log}`);
      if (!log.includes("Listening on")) {
        assert.match(
          log,
          /dist: Cannot .*(database or disk is full|disk I\/O error)/,
          `${free}: ${log}`,
        );
        refused++;
      }
      const db = new DatabaseSync(`${work}/db-${free}`);
      const n = (db.prepare('SELECT count(*) AS n FROM "retained"').get() as { n: number }).n;
      db.close();
      assert.equal(n, 50, `${free} bytes free: the values are all there`);
    }
    assert.ok(refused > 0 && refused < frees.length, `${refused} of ${frees.length} refused`);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
