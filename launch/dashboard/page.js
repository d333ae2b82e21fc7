// The dashboard page of `dist up`: draws the cluster from the launcher's
// event stream (/events: "hello" with everything, then "instance" on each
// change and "round" after each poll) and never reloads. Everything it
// loads comes from the launcher. Text from instances is set as text, never
// as markup.
(() => {
  "use strict";

  const HISTORY_MS = 5 * 60 * 1000;
  /** Rounds further apart than this were not consecutive. */
  const GAP_MS = 3000;
  const SVG = "http://www.w3.org/2000/svg";
  const NODE_W = 200;
  const NODE_H = 64;
  const COL_GAP = 80;
  const ROW_GAP = 14;
  const PAD = 16;

  /** @type {Map<string, any>} */
  const views = new Map();
  /** @type {Map<string, {times: number[], values: (number|null)[]}>} */
  const series = new Map();
  /** @type {Map<string, any>} uPlot charts by instance */
  const charts = new Map();
  /** When each view arrived (Date.now()), to let its uptime tick. */
  const received = new Map();
  let selected = null;
  let fetching = false;

  const byId = (id) => document.getElementById(id);

  function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function formatRate(rate) {
    if (rate === null || rate === undefined) return "-";
    if (rate === 0) return "0";
    if (rate >= 100) return String(Math.round(rate));
    if (rate >= 10) return rate.toFixed(1).replace(/\.0$/, "");
    return rate.toFixed(2).replace(/\.?0+$/, "") || "0";
  }

  function formatUptime(ms) {
    if (ms === null || ms === undefined) return "-";
    const s = Math.floor(ms / 1000);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
    const h = Math.floor(s / 3600);
    if (h < 48) return `${h}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
    return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, "0")}h`;
  }

  function formatBytes(b) {
    return b === null || b === undefined ? "-" : `${(b / 1024 / 1024).toFixed(1)} MiB`;
  }

  function rateText(v) {
    if (v.rate_unit === null) return "no rate";
    return v.rate === null ? "-" : `${formatRate(v.rate)} ${v.rate_unit}`;
  }

  /** "down: signal SIGKILL", "down: not answering", "starting". */
  function healthText(v) {
    if (v.health !== "down") return v.health;
    if (v.note) return "down: not answering";
    return v.last_exit ? `down: ${v.last_exit}` : "down";
  }

  /** Text cut to `max` characters (an SVG line does not wrap). */
  function cut(text, max) {
    return text.length > max ? `${text.slice(0, max - 1)}…` : text;
  }

  function uptimeOf(v) {
    if (v.uptime_ms === null || v.health !== "up") return null;
    return v.uptime_ms + (Date.now() - (received.get(v.name) ?? Date.now()));
  }

  // ---- the graph ----

  function drawGraph(instances, edges, steps) {
    const graph = byId("graph");
    graph.replaceChildren();
    const columns = new Map();
    for (const v of instances) {
      const step = v.remote ? 0 : steps[v.name] ?? 1;
      if (!columns.has(step)) columns.set(step, []);
      columns.get(step).push(v.name);
    }
    const order = [...columns.keys()].sort((a, b) => a - b);
    const place = new Map();
    let rows = 0;
    order.forEach((step, c) => {
      const names = columns.get(step);
      rows = Math.max(rows, names.length);
      names.forEach((name, r) => {
        place.set(name, { x: PAD + c * (NODE_W + COL_GAP), y: PAD + r * (NODE_H + ROW_GAP), c });
      });
    });
    const width = PAD * 2 + order.length * NODE_W + (order.length - 1) * COL_GAP + 40;
    const height = PAD * 2 + rows * NODE_H + (rows - 1) * ROW_GAP;
    graph.setAttribute("width", String(width));
    graph.setAttribute("height", String(height));
    graph.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const defs = svg("defs");
    const marker = svg("marker", {
      id: "arrow",
      viewBox: "0 0 10 10",
      refX: 9,
      refY: 5,
      markerWidth: 7,
      markerHeight: 7,
      orient: "auto-start-reverse",
    });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#9aa0a6" }));
    defs.append(marker);
    graph.append(defs);
    const edgeLayer = svg("g");
    graph.append(edgeLayer);
    for (const e of edges) {
      const a = place.get(e.from);
      const b = place.get(e.to);
      if (!a || !b) continue;
      let d;
      if (a.c === b.c) {
        // Peers in one step: an arc on the right.
        const x = a.x + NODE_W;
        const y1 = a.y + NODE_H / 2 - 8;
        const y2 = b.y + NODE_H / 2 + 8;
        d = `M ${x} ${y1} C ${x + 36} ${y1}, ${x + 36} ${y2}, ${x + 2} ${y2}`;
      } else if (b.c < a.c) {
        const x1 = a.x;
        const y1 = a.y + NODE_H / 2;
        const x2 = b.x + NODE_W + 2;
        const y2 = b.y + NODE_H / 2;
        const mid = (x1 + x2) / 2;
        d = `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`;
      } else {
        const x1 = a.x + NODE_W;
        const y1 = a.y + NODE_H / 2;
        const x2 = b.x - 2;
        const y2 = b.y + NODE_H / 2;
        const mid = (x1 + x2) / 2;
        d = `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`;
      }
      const path = svg("path", {
        d,
        class: "edge",
        "marker-end": "url(#arrow)",
        "data-from": e.from,
        "data-to": e.to,
      });
      path.append(svg("title", {}, `${e.from} → ${e.to} (${e.key})`));
      edgeLayer.append(path);
    }
    for (const v of instances) {
      const p = place.get(v.name);
      const g = svg("g", {
        class: "node",
        "data-instance": v.name,
        transform: `translate(${p.x},${p.y})`,
        tabindex: 0,
      });
      g.append(svg("rect", { width: NODE_W, height: NODE_H, rx: 6 }));
      g.append(svg("text", { x: 10, y: 19, class: "name" }, v.name));
      g.append(svg("text", { x: 10, y: 36, class: "sub role" }, ""));
      g.append(svg("text", { x: 10, y: 54, class: "rate" }, ""));
      g.addEventListener("click", () => select(v.name));
      g.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter") select(v.name);
      });
      graph.append(g);
    }
  }

  // ---- the cards ----

  const FIELDS = [
    ["role", "Role"],
    ["address", "Address"],
    ["state", "State"],
    ["pid", "Pid"],
    ["uptime", "Uptime"],
    ["restarts", "Restarts"],
    ["rss", "RSS"],
    ["rate", "Rate"],
  ];

  function makeCard(v) {
    const card = el("article", { class: "card", "data-instance": v.name, tabindex: "0" });
    const header = el("header");
    header.append(el("h3", {}, v.name), el("span", { class: "badge" }, ""));
    const dl = el("dl");
    for (const [key, label] of FIELDS) {
      dl.append(el("dt", {}, label), el("dd", { "data-field": key }, "-"));
    }
    const note = el("p", { class: "note", hidden: "" }, "");
    const chart = el("div", { class: "chart" });
    card.append(header, dl, note, chart);
    card.addEventListener("click", () => select(v.name));
    card.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") select(v.name);
    });
    if (v.rate_unit === null) {
      chart.append(
        el("p", { class: "muted" }, `No rate: nothing asks a ${v.role} (it does not listen)`),
      );
    } else if (typeof uPlot === "function") {
      const opts = {
        width: 300,
        height: 110,
        legend: { show: false },
        cursor: { show: false },
        scales: {
          x: { time: true },
          y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.15)] },
        },
        series: [{}, {
          label: v.rate_unit,
          stroke: "#1a73e8",
          fill: "rgba(26,115,232,0.12)",
          width: 1.5,
          points: { show: false },
        }],
        axes: [{ size: 28, font: "11px system-ui" }, { size: 42, font: "11px system-ui" }],
      };
      // deno-lint-ignore no-undef
      charts.set(v.name, new uPlot(opts, chartData(v.name), chart));
    }
    return card;
  }

  function chartData(name) {
    const s = series.get(name) ?? { times: [], values: [] };
    return [s.times.map((t) => t / 1000), s.values];
  }

  // ---- updates ----

  function update(v) {
    views.set(v.name, v);
    received.set(v.name, Date.now());
    const node = document.querySelector(`#graph .node[data-instance="${CSS.escape(v.name)}"]`);
    if (node) {
      node.setAttribute("data-health", v.health);
      node.querySelector(".role").textContent = `${v.role} · ${v.address ?? "no port"}`;
      const rate = node.querySelector(".rate");
      rate.textContent = cut(v.health === "up" ? rateText(v) : healthText(v), 30);
      rate.setAttribute("data-value", v.rate === null ? "" : String(v.rate));
    }
    const card = document.querySelector(`.card[data-instance="${CSS.escape(v.name)}"]`);
    if (card) {
      card.setAttribute("data-health", v.health);
      card.querySelector(".badge").textContent = v.health;
      const set = (key, text) => card.querySelector(`[data-field="${key}"]`).textContent = text;
      set("role", v.role);
      set("address", v.address ?? "-");
      set("state", v.last_exit && v.health === "down" ? `${v.state} (${v.last_exit})` : v.state);
      set("pid", v.pid === null ? "-" : String(v.pid));
      set("uptime", formatUptime(uptimeOf(v)));
      set("restarts", v.restarts === null ? "-" : String(v.restarts));
      set("rss", formatBytes(v.rss_bytes));
      set("rate", rateText(v));
      card.querySelector('[data-field="rate"]').setAttribute(
        "data-value",
        v.rate === null ? "" : String(v.rate),
      );
      const note = card.querySelector(".note");
      note.textContent = v.note ?? "";
      note.hidden = !v.note;
    }
    summarize();
  }

  function summarize() {
    const counts = {};
    for (const v of views.values()) counts[v.health] = (counts[v.health] ?? 0) + 1;
    const parts = ["up", "down", "starting", "done", "stopped"]
      .filter((h) => counts[h])
      .map((h) => `${counts[h]} ${h}`);
    byId("summary").textContent = `${views.size} instances: ${parts.join(", ")}`;
  }

  function hello(snapshot) {
    byId("file").textContent = `${snapshot.file} (launcher pid ${snapshot.launcher.pid})`;
    document.title = `dist up: ${snapshot.file}`;
    views.clear();
    series.clear();
    for (const chart of charts.values()) chart.destroy();
    charts.clear();
    for (const [name, h] of Object.entries(snapshot.history)) series.set(name, h);
    drawGraph(snapshot.instances, snapshot.edges, snapshot.steps);
    const cards = byId("cards");
    cards.replaceChildren(...snapshot.instances.map(makeCard));
    for (const v of snapshot.instances) update(v);
    markSelected();
  }

  function round(message) {
    const cutoff = message.at - HISTORY_MS;
    for (const v of message.instances) {
      update(v);
      if (v.rate_unit === null) continue;
      const s = series.get(v.name) ?? { times: [], values: [] };
      const last = s.times[s.times.length - 1];
      if (last !== undefined && message.at - last > GAP_MS) {
        // Nobody watched (or the launcher was away): a gap, not a line across it.
        s.times.push(last + 1);
        s.values.push(null);
      }
      s.times.push(message.at);
      s.values.push(v.rate);
      let drop = 0;
      while (drop < s.times.length && s.times[drop] < cutoff) drop++;
      if (drop > 0) {
        s.times.splice(0, drop);
        s.values.splice(0, drop);
      }
      series.set(v.name, s);
      charts.get(v.name)?.setData(chartData(v.name));
    }
    if (selected !== null) showStats(selected);
  }

  // ---- details ----

  function markSelected() {
    for (const node of document.querySelectorAll(".node, .card")) {
      node.classList.toggle("selected", node.getAttribute("data-instance") === selected);
    }
  }

  function select(name) {
    selected = name;
    byId("details").hidden = false;
    byId("details-name").textContent = name;
    byId("details-stats").textContent = "Asking…";
    byId("details-when").textContent = "";
    markSelected();
    showStats(name);
  }

  async function showStats(name) {
    if (fetching) return;
    fetching = true;
    try {
      const res = await fetch(`/api/stats/${encodeURIComponent(name)}`, { cache: "no-store" });
      const body = await res.json();
      if (selected !== name) return;
      const when = new Date(body.at).toLocaleTimeString();
      byId("details-when").textContent = body.ok
        ? `sys.stats at ${when}`
        : `No answer at ${when}: ${body.error ?? "unknown"}`;
      byId("details-stats").textContent = body.ok ? JSON.stringify(body.stats, null, 2) : "";
    } catch (err) {
      if (selected === name) byId("details-stats").textContent = `Cannot ask: ${err}`;
    } finally {
      fetching = false;
    }
  }

  function closeDetails() {
    selected = null;
    byId("details").hidden = true;
    markSelected();
  }

  byId("details-close").addEventListener("click", closeDetails);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") closeDetails();
  });

  // ---- the stream ----

  function setLive(state, text) {
    const live = byId("live");
    live.setAttribute("data-live", state);
    live.textContent = text;
  }

  const source = new EventSource("/events");
  source.addEventListener("hello", (e) => hello(JSON.parse(e.data)));
  source.addEventListener("round", (e) => round(JSON.parse(e.data)));
  source.addEventListener("instance", (e) => update(JSON.parse(e.data)));
  source.addEventListener("open", () => setLive("live", "Live"));
  // The browser reconnects by itself; "hello" then redraws everything.
  source.addEventListener(
    "error",
    () => setLive("reconnecting", "Launcher not reachable: retrying…"),
  );

  // Uptimes tick between rounds.
  setInterval(() => {
    for (const v of views.values()) {
      const card = document.querySelector(`.card[data-instance="${CSS.escape(v.name)}"]`);
      const cell = card?.querySelector('[data-field="uptime"]');
      if (cell) cell.textContent = formatUptime(uptimeOf(v));
    }
  }, 1000);
})();
