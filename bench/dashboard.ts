/**
 * `deno task bench dashboard`: what an open dashboard costs the cluster.
 * Runs the default topology (its ports moved off the fixed ones), lets its
 * batch clients finish, then measures the CPU time of the launcher and
 * every instance (utime + stime from /proc) over equal windows with the
 * page closed and open, alternating which comes first each round. The page
 * is a real headless chromium when there is one (its own CPU is the
 * viewer's, not the cluster's, and is not counted), else a plain reader of
 * the event stream. Target: ≤ 1 % of a core more with the page open.
 */
import { chromiumPath, launchBrowser, type TestBrowser } from "../tests/helpers/browser.ts";
import { alive, movedTopology, startUp, topologyFile } from "../tests/helpers/up.ts";
import { type BenchFlags, Rounds, type Suite } from "./_common.ts";

/** Clock ticks per second of /proc's CPU times. */
async function clockTicks(): Promise<number> {
  try {
    const out = await new Deno.Command("getconf", { args: ["CLK_TCK"] }).output();
    const n = Number(new TextDecoder().decode(out.stdout).trim());
    return n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

/** CPU time a process has used (ticks), or undefined when it is gone. */
function cpuTicks(pid: number): number | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime, stime
  } catch {
    return undefined;
  }
}

/** CPU seconds of `pids` over `ms` (processes alive at both ends only), per part. */
async function cpuOver(
  parts: Record<string, number[]>,
  ms: number,
  ticks: number,
): Promise<Record<string, number>> {
  const before = Object.fromEntries(
    Object.entries(parts).map(([k, pids]) => [k, pids.map(cpuTicks)]),
  );
  await new Promise((r) => setTimeout(r, ms));
  return Object.fromEntries(
    Object.entries(parts).map(([k, pids]) => {
      let sum = 0;
      pids.forEach((pid, i) => {
        const a = before[k][i];
        const b = cpuTicks(pid);
        if (a !== undefined && b !== undefined) sum += b - a;
      });
      return [k, sum / ticks];
    }),
  );
}

/** A page open on the dashboard: chromium, or a reader of /events. */
interface Viewer {
  kind: string;
  open(url: string): Promise<void>;
  close(): Promise<void>;
  end(): Promise<void>;
}

async function viewer(): Promise<Viewer> {
  const chromium = chromiumPath();
  if (chromium !== undefined) {
    const browser: TestBrowser = await launchBrowser(chromium);
    let page: Awaited<ReturnType<TestBrowser["browser"]["newPage"]>> | undefined;
    return {
      kind: "chromium",
      async open(url) {
        page = await browser.browser.newPage();
        await page.goto(url, { waitUntil: "load" });
        await page.waitForFunction(`document.querySelector("#live")?.dataset.live === "live"`);
      },
      async close() {
        await page?.close();
        page = undefined;
      },
      end: () => browser.close(),
    };
  }
  let abort: AbortController | undefined;
  let reading: Promise<void> | undefined;
  return {
    kind: "event-stream reader (no chromium)",
    async open(url) {
      abort = new AbortController();
      const res = await fetch(new URL("/events", url), { signal: abort.signal });
      reading = res.body!.pipeTo(new WritableStream(), { signal: abort.signal }).catch(() => {});
    },
    async close() {
      abort?.abort();
      await reading;
    },
    end: async () => {},
  };
}

export const run: Suite = async (flags: BenchFlags) => {
  const ticks = await clockTicks();
  const windowMs = flags.quick ? 3000 : 15_000;
  const file = await topologyFile(movedTopology());
  const up = startUp([file, "--dashboard", "127.0.0.1:0"]);
  const view = await viewer();
  const rounds = new Rounds();
  try {
    const [, count, url] = await up.waitFor(
      /All (\d+) ready in [\d.]+ s; dashboard at (\S+)/,
      60_000,
    );
    // The batch clients (client, resolver) end within seconds; measure the cluster that stays.
    await new Promise((r) => setTimeout(r, 5000));
    const parts = {
      launcher: [up.child.pid],
      instances: up.pids().filter(alive),
    };
    console.log(
      `dashboard: ${count} instances (${parts.instances.length} running after their batches), ` +
        `windows of ${windowMs / 1000} s, page: ${view.kind}`,
    );
    const measure = async (open: boolean) => {
      if (open) {
        await view.open(url);
        await new Promise((r) => setTimeout(r, 2000)); // connections dialed, rounds steady
      }
      const cpu = await cpuOver(parts, windowMs, ticks);
      if (open) {
        await view.close();
        await new Promise((r) => setTimeout(r, 6000)); // the polls' connections linger 5 s
      }
      const pct = (s: number) => s / (windowMs / 1000) * 100;
      const tag = open ? "open" : "closed";
      rounds.add(`${tag}_launcher_pct`, pct(cpu.launcher));
      rounds.add(`${tag}_instances_pct`, pct(cpu.instances));
      rounds.add(`${tag}_cluster_pct`, pct(cpu.launcher + cpu.instances));
    };
    for (let i = 1; i <= flags.runs; i++) {
      // Alternate which side goes first, so a drift of the machine's load favours neither.
      if (i % 2) {
        await measure(false);
        await measure(true);
      } else {
        await measure(true);
        await measure(false);
      }
      rounds.add(
        "extra_pct",
        rounds.rows.open_cluster_pct.at(-1)! - rounds.rows.closed_cluster_pct.at(-1)!,
      );
      rounds.printRound("dashboard", i);
    }
  } finally {
    await view.end();
    await up.stop();
    await Deno.remove(file);
  }
  const m = rounds.medians();
  const target = m.extra_pct <= 1 ? "✔" : "✘";
  console.log(
    `dashboard medians: the cluster uses ${m.closed_cluster_pct.toFixed(2)} % of a core with ` +
      `the page closed, ${m.open_cluster_pct.toFixed(2)} % with it open ` +
      `(launcher ${m.closed_launcher_pct.toFixed(2)} → ${m.open_launcher_pct.toFixed(2)} %, ` +
      `instances ${m.closed_instances_pct.toFixed(2)} → ${m.open_instances_pct.toFixed(2)} %); ` +
      `extra ${m.extra_pct.toFixed(2)} % of a core (target ≤ 1 % ${target})`,
  );
  return m;
};
