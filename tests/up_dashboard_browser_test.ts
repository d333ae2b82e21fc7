/**
 * The dashboard in a real headless browser (Debian's chromium, driven by
 * npm puppeteer-core): the page loads from `dist up`, lists every instance
 * in the graph and as cards, shows a rate that rises under load, turns an
 * instance red within a second of its SIGKILL and green after its restart,
 * opens an instance's sys.stats on a click, and every request it makes goes
 * to the launcher. Screenshots are kept in `test-artifacts/dashboard/` at
 * the repository's root (`$DIST_TEST_ARTIFACTS` moves it).
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { Page } from "puppeteer-core";
import { chromiumPath, launchBrowser } from "./helpers/browser.ts";
import { runDist } from "./helpers/dist.ts";
import {
  alive,
  DASHBOARD_NAMES as NAMES,
  DASHBOARD_TOPOLOGY as TOPOLOGY,
  startUp,
  stopCleanly,
  topologyFile,
} from "./helpers/up.ts";

const CHROMIUM = chromiumPath();
const ARTIFACTS = Deno.env.get("DIST_TEST_ARTIFACTS") ??
  fileURLToPath(new URL("../test-artifacts/dashboard/", import.meta.url));

/**
 * Helpers that run in the page (as source text: this file is type-checked
 * without the DOM's types), installed as `window.t`: what a card and a
 * node show, and a log of every change of a node's health with its time.
 */
const PAGE_HELPERS = `
window.t = {
  card: (name) => document.querySelector('.card[data-instance="' + name + '"]'),
  node: (name) => document.querySelector('#graph .node[data-instance="' + name + '"]'),
  field: (name, key) => window.t.card(name)?.querySelector('[data-field="' + key + '"]'),
  rate: (name) => {
    const v = window.t.field(name, "rate")?.getAttribute("data-value");
    return v ? Number(v) : null;
  },
  shown: (name) => ({
    node: window.t.node(name)?.getAttribute("data-health") ?? null,
    card: window.t.card(name)?.getAttribute("data-health") ?? null,
    rate: window.t.rate(name),
    pid: Number(window.t.field(name, "pid")?.textContent),
    restarts: window.t.field(name, "restarts")?.textContent ?? null,
  }),
  log: [],
};
new MutationObserver((records) => {
  for (const r of records) {
    window.t.log.push({
      name: r.target.getAttribute("data-instance"),
      health: r.target.getAttribute("data-health"),
      at: Date.now(),
    });
  }
}).observe(document.querySelector("#graph"), {
  subtree: true,
  attributes: true,
  attributeFilter: ["data-health"],
});
`;

interface Shown {
  node: string | null;
  card: string | null;
  rate: number | null;
  pid: number;
  restarts: string | null;
}

/** What the page shows of one instance: its node's and its card's health, rate, pid, restarts. */
function shown(page: Page, name: string): Promise<Shown> {
  return page.evaluate(`window.t.shown(${JSON.stringify(name)})`) as Promise<Shown>;
}

async function screenshot(page: Page, name: string): Promise<void> {
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
}

Deno.test({
  name: CHROMIUM
    ? "the dashboard in chromium: every instance, a rate under load, red on SIGKILL, green again"
    : "the dashboard in chromium (skipped: no chromium; .ci/run installs Debian's chromium)",
  ignore: CHROMIUM === undefined,
  sanitizeResources: false, // puppeteer's pipes to chromium outlive the test's last await
  sanitizeOps: false,
  async fn() {
    const file = await topologyFile(TOPOLOGY);
    const up = startUp([file, "--dashboard", "127.0.0.1:0"]);
    const browser = await launchBrowser(CHROMIUM!);
    try {
      const [, url] = await up.waitFor(/All 5 ready in [\d.]+ s; dashboard at (\S+)$/m);
      const origin = new URL(url).origin;
      const page = await browser.browser.newPage();
      await page.setViewport({ width: 1300, height: 1000 });
      const requests: string[] = [];
      const problems: string[] = [];
      page.on("request", (r) => requests.push(r.url()));
      page.on("pageerror", (e) => problems.push(String(e)));
      page.on("console", (m) => {
        if (m.type() === "error") problems.push(m.text());
      });
      await page.goto(url, { waitUntil: "load", timeout: 20_000 });

      // Every instance, in the graph and as a card, all up; the references as arrows.
      await page.waitForFunction(
        `document.querySelectorAll("#graph .node[data-health='up']").length === ${NAMES.length} &&
         document.querySelector("#live")?.getAttribute("data-live") === "live"`,
        { timeout: 15_000 },
      );
      await page.evaluate(PAGE_HELPERS);
      const listed = await page.evaluate(
        `[...document.querySelectorAll(".card")].map((c) => c.getAttribute("data-instance"))`,
      );
      assert.deepEqual(listed, NAMES);
      const nodes = await page.evaluate(
        `[...document.querySelectorAll("#graph .node")].map((n) => n.getAttribute("data-instance"))`,
      ) as string[];
      assert.deepEqual(nodes.sort(), [...NAMES].sort());
      assert.equal(await page.evaluate(`document.querySelectorAll("#graph .edge").length`), 3);
      const charts = await page.evaluate(`document.querySelectorAll(".card .uplot").length`);
      assert.equal(charts, 4, "a chart for each instance that has a rate (not the consumer)");
      await page.waitForFunction(`window.t.rate("balancer") !== null`, { timeout: 10_000 });
      await screenshot(page, "1-loaded");

      // Load through the balancer: its rate rises, and each server's.
      const idle = (await shown(page, "balancer")).rate!;
      assert.ok(idle < 20, `idle balancer rate ${idle}`);
      const balancer = /balancer ready at (\S+) /.exec(up.stdout())![1];
      const bench = runDist(
        ["client", "--connect", balancer, "--bench", "--duration", "5s", "--rate", "300"],
        { timeoutMs: 30_000 },
      );
      try {
        await page.waitForFunction(
          `window.t.rate("balancer") >= 150 && window.t.rate("server-1") >= 60 &&
           window.t.rate("server-2") >= 60`,
          { timeout: 15_000, polling: 200 },
        );
        await screenshot(page, "2-under-load");
      } finally {
        const done = await bench;
        assert.equal(done.code, 0, done.stderr);
      }

      // SIGKILL server-2: red within a second, then green once its restart is ready.
      await page.evaluate(`window.t.log.length = 0`);
      const before = await shown(page, "server-2");
      assert.ok(alive(before.pid), `server-2's pid ${before.pid} on the page is the live process`);
      const killedAt = Date.now();
      Deno.kill(before.pid, "SIGKILL");
      await page.waitForFunction(
        `window.t.log.some((e) => e.name === "server-2" && e.health === "down")`,
        { timeout: 5000, polling: "mutation" },
      );
      await screenshot(page, "3-killed");
      const log = await page.evaluate(`window.t.log`) as {
        name: string;
        health: string;
        at: number;
      }[];
      const red = log.find((e) => e.name === "server-2" && e.health === "down")!;
      assert.ok(red.at - killedAt <= 1000, `red ${red.at - killedAt} ms after the SIGKILL`);
      await page.waitForFunction(
        `window.t.shown("server-2").card === "up" && window.t.shown("server-2").restarts === "1"`,
        { timeout: 20_000, polling: 100 },
      );
      const after = await shown(page, "server-2");
      assert.equal(after.node, "up");
      assert.notEqual(after.pid, before.pid);
      assert.ok(alive(after.pid));
      await screenshot(page, "4-restarted");

      // A click shows the instance's sys.stats.
      await page.click(`#graph .node[data-instance="server-1"]`);
      await page.waitForFunction(
        `/"name": "server-1"/.test(document.querySelector("#details-stats")?.textContent ?? "")`,
        { timeout: 10_000 },
      );
      const stats = JSON.parse(
        await page.evaluate(`document.querySelector("#details-stats").textContent`) as string,
      );
      assert.equal(stats.role, "server");
      assert.ok(stats.requests > 100, `server-1 answered ${stats.requests} requests`);
      await screenshot(page, "5-stats");

      // Nothing but the launcher was asked (the favicon is an inline data: URL).
      const elsewhere = requests.filter((r) =>
        !r.startsWith(`${origin}/`) && !r.startsWith("data:")
      );
      assert.deepEqual(elsewhere, []);
      assert.ok(requests.some((r) => r === `${origin}/assets/uplot.js`));
      assert.deepEqual(problems, []);
      await page.close();
    } finally {
      await browser.close();
      await stopCleanly(up);
      await Deno.remove(file);
    }
  },
});
