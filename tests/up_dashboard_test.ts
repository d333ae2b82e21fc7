/**
 * The dashboard of `dist up` over HTTP (the browser test is
 * up_dashboard_browser_test.ts): the URL on the "All ready" line, the page and
 * its assets from the launcher, the cluster as JSON with every instance and
 * the references as edges, one instance's sys.stats, the event stream
 * (hello, then rounds), the refusals (other methods, a foreign Host, unknown
 * paths), `--no-dashboard`, a taken `--dashboard` port, and the default
 * address falling back to a free port.
 */
import assert from "node:assert/strict";
import { parseTopology } from "../config/mod.ts";
import { ASSETS, openDashboard } from "../launch/dashboard/mod.ts";
import { makePlan } from "../launch/plan.ts";
import { StateWriter } from "../launch/state.ts";
import { ROLES } from "../roles/mod.ts";
import { runDist } from "./helpers/dist.ts";
import {
  DASHBOARD_NAMES as NAMES,
  DASHBOARD_TOPOLOGY as TOPOLOGY,
  startUp,
  stopCleanly,
  topologyFile,
} from "./helpers/up.ts";

/** Reads server-sent events from `url` until `enough` says so (bounded by `ms`). */
async function readEvents(
  url: string,
  enough: (events: { event: string; data: unknown }[]) => boolean,
  ms = 10_000,
): Promise<{ event: string; data: unknown }[]> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ms);
  const events: { event: string; data: unknown }[] = [];
  try {
    const res = await fetch(url, { signal: abort.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/event-stream/);
    let buffer = "";
    for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event !== undefined && data !== undefined) {
          events.push({ event, data: JSON.parse(data) });
        }
      }
      if (enough(events)) break;
    }
  } catch (err) {
    if (!abort.signal.aborted) throw err;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  return events;
}

Deno.test("dist up serves its dashboard: page, assets, cluster, stats and events", async () => {
  const file = await topologyFile(TOPOLOGY);
  const up = startUp([file, "--dashboard", "127.0.0.1:0"]);
  try {
    const [, url] = await up.waitFor(/^dist up: All 5 ready in [\d.]+ s; dashboard at (\S+)$/m);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);

    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-security-policy")!, /default-src 'self'/);
    const html = await page.text();
    assert.match(html, /<script src="\/assets\/page\.js">/);
    assert.doesNotMatch(html, /https?:\/\//, "the page names no other site");
    for (const path of ASSETS.keys()) {
      const res = await fetch(new URL(path, url));
      assert.equal(res.status, 200, path);
      const body = await res.text();
      assert.ok(body.length > 100, path);
    }
    const uplot = await fetch(new URL("/assets/uplot.js", url));
    assert.match(uplot.headers.get("content-type")!, /javascript/);
    const etag = uplot.headers.get("etag")!;
    await uplot.body?.cancel();
    const again = await fetch(new URL("/assets/uplot.js", url), {
      headers: { "if-none-match": etag },
    });
    assert.equal(again.status, 304);
    await again.body?.cancel();

    const cluster = await (await fetch(new URL("/api/cluster", url))).json();
    assert.deepEqual(cluster.instances.map((i: { name: string }) => i.name), NAMES);
    const edges = cluster.edges.map((e: { from: string; to: string }) => `${e.from}->${e.to}`);
    assert.deepEqual(edges.sort(), [
      "balancer->server-1",
      "balancer->server-2",
      "consumer->broker",
    ]);
    assert.equal(cluster.steps.balancer, 2);
    for (const i of cluster.instances) assert.equal(i.health, "up", `${i.name}: ${i.state}`);

    const stats = await (await fetch(new URL("/api/stats/server-1", url))).json();
    assert.equal(stats.ok, true, stats.error);
    assert.equal(stats.stats.name, "server-1");
    assert.equal(typeof stats.stats.requests, "number");
    const missing = await fetch(new URL("/api/stats/nobody", url));
    assert.equal(missing.status, 404);
    await missing.body?.cancel();

    const events = await readEvents(
      new URL("/events", url).href,
      (es) => es.filter((e) => e.event === "round").length >= 2,
    );
    assert.equal(events[0].event, "hello");
    const round = events.filter((e) => e.event === "round").at(-1)!.data as {
      instances: { name: string; rate: number | null; rate_unit: string | null }[];
    };
    const server = round.instances.find((i) => i.name === "server-1")!;
    assert.equal(server.rate_unit, "requests/s");
    assert.equal(typeof server.rate, "number", "a rate from the second round on");

    // What a status table tells of the launcher.
    const status = await runDist(["status", file]);
    assert.match(status.stdout, new RegExp(`dashboard at ${url.replace(/[.]/g, "\\.")}`));
  } finally {
    await stopCleanly(up);
    await Deno.remove(file);
  }
});

Deno.test("the dashboard refuses writes, foreign Host names and unknown paths", async () => {
  const file = await topologyFile(TOPOLOGY);
  const up = startUp([file, "--dashboard", "127.0.0.1:0"]);
  try {
    const [, url] = await up.waitFor(/dashboard at (\S+)$/m);
    const post = await fetch(new URL("/api/cluster", url), { method: "POST", body: "x" });
    assert.equal(post.status, 405);
    await post.body?.cancel();
    const notFound = await fetch(new URL("/etc/passwd", url));
    assert.equal(notFound.status, 404);
    await notFound.body?.cancel();
    // DNS rebinding: a page of another site reaching 127.0.0.1 under its own name.
    const { port } = new URL(url);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
    try {
      await conn.write(
        new TextEncoder().encode(
          "GET /api/cluster HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n",
        ),
      );
      const answer = await new Response(conn.readable).text();
      assert.match(answer, /^HTTP\/1\.1 403/);
    } catch (err) {
      conn.close();
      throw err;
    }
    const local = await fetch(url.replace("127.0.0.1", "localhost"));
    assert.equal(local.status, 200);
    await local.body?.cancel();
  } finally {
    await stopCleanly(up);
    await Deno.remove(file);
  }
});

Deno.test("--no-dashboard serves none; a taken --dashboard port stops dist up", async () => {
  const file = await topologyFile(TOPOLOGY);
  const up = startUp([file, "--no-dashboard"]);
  try {
    const [line] = await up.waitFor(/^dist up: All 5 ready in [\d.]+ s$/m);
    assert.doesNotMatch(line, /dashboard/);
  } finally {
    await stopCleanly(up);
  }
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = held.addr.port;
    const res = await runDist(["up", file, "--dashboard", `127.0.0.1:${port}`]);
    assert.equal(res.code, 1);
    assert.match(
      res.stderr,
      new RegExp(`^dist: Cannot serve the dashboard on 127\\.0\\.0\\.1:${port}: .*in use`, "m"),
    );
    assert.doesNotMatch(res.stdout, /started/, "no instance was started");
  } finally {
    held.close();
    await Deno.remove(file);
  }
});

Deno.test("openDashboard() takes a free port when the default one is taken", async () => {
  const dir = await Deno.makeTempDir();
  Deno.env.set("DIST_STATE_DIR", dir);
  const topology = parseTopology(TOPOLOGY, { file: "t.toml", roles: ROLES });
  const plan = makePlan(topology, { roles: ROLES });
  const state = new StateWriter({
    file: "t.toml",
    instances: Object.fromEntries(
      plan.instances.map((
        p,
      ) => [p.instance.name, { role: p.instance.role, state: "waiting", restarts: 0 }]),
    ),
  });
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const address = `127.0.0.1:${held.addr.port}`;
  try {
    const byName = new Map(topology.instances.map((i) => [i.name, i]));
    const dashboard = openDashboard(plan, { address, fallback: true, byName, state });
    try {
      assert.notEqual(dashboard.url, `http://${address}/`);
      assert.equal(dashboard.note, `${address} is in use: the dashboard takes a free port`);
      assert.equal(state.state.dashboard, dashboard.url);
      const res = await fetch(new URL("/api/cluster", dashboard.url));
      assert.equal((await res.json()).instances.length, 5);
    } finally {
      await dashboard.close();
    }
    assert.throws(
      () => openDashboard(plan, { address, fallback: false, byName, state }),
      (err: Error) =>
        err instanceof Deno.errors.AddrInUse && /Cannot serve the dashboard/.test(err.message),
    );
  } finally {
    held.close();
    await state.remove();
    Deno.env.delete("DIST_STATE_DIR");
    await Deno.remove(dir, { recursive: true });
  }
});
