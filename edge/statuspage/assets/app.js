// ferry status page: polls the admin API and draws tiles, charts (inline SVG) and tables.
// Plain script, no build step, nothing loaded from elsewhere.
"use strict";

(function () {
  const TOKEN_KEY = "ferry.adminToken";
  const HOUR = 3600 * 1000;
  const state = { interval: 5, timer: 0, history: null, charts: {}, needToken: false, lastOk: 0, devices: null };

  // ---- formatting ----------------------------------------------------------------------------
  const nf = new Intl.NumberFormat("en-US");
  const nf1 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
  const int = (v) => nf.format(Math.round(v || 0));
  function rate(v) {
    v = v || 0;
    if (v === 0) return "0";
    if (v < 10) return nf1.format(v);
    return int(v);
  }
  function compact(v) {
    v = v || 0;
    const a = Math.abs(v);
    if (a >= 1e9) return nf1.format(v / 1e9) + "G";
    if (a >= 1e6) return nf1.format(v / 1e6) + "M";
    if (a >= 1e4) return nf1.format(v / 1e3) + "k";
    return nf1.format(v);
  }
  function bytes(v) {
    v = v || 0;
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(Math.round(v)) : v < 10 ? v.toFixed(1) : String(Math.round(v))) + " " + units[i];
  }
  function duration(sec) {
    sec = Math.max(0, Math.round(sec));
    if (sec < 60) return sec + " s";
    if (sec < 3600) return Math.round(sec / 60) + " min";
    if (sec < 86400) return nf1.format(sec / 3600) + " h";
    return nf1.format(sec / 86400) + " d";
  }
  function ago(ms) {
    const s = (Date.now() - ms) / 1000;
    return s < 5 ? "just now" : duration(s) + " ago";
  }
  const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const hhmm = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  function port(addr) {
    if (!addr) return "";
    const i = addr.lastIndexOf(":");
    const host = addr.slice(0, i);
    return host === "" || host === "[::]" || host === "0.0.0.0" ? addr.slice(i) : addr;
  }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  const $ = (sel, root) => (root || document).querySelector(sel);
  function set(key, text) {
    const el = $('[data-k="' + key + '"]');
    if (el) el.textContent = text;
    return el;
  }

  // ---- the admin API -------------------------------------------------------------------------
  function token() {
    try { return localStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }
  // api returns {status, body}: status 0 when the node could not be reached.
  async function api(path) {
    const headers = { Accept: "application/json" };
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    let res;
    try {
      res = await fetch(path, { headers, cache: "no-store" });
    } catch (e) {
      return { status: 0, body: null };
    }
    let body = null;
    try { body = await res.json(); } catch (e) { /* not JSON: an endpoint this node lacks */ }
    if (res.status === 401) state.needToken = true;
    return { status: res.status, body };
  }

  function showTokenForm(show) {
    const f = $("#token-form");
    f.hidden = !show;
    if (show) $("#token-input").value = token();
  }
  $("#token-btn").addEventListener("click", () => showTokenForm($("#token-form").hidden));
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    try { localStorage.setItem(TOKEN_KEY, $("#token-input").value.trim()); } catch (err) { /* private mode */ }
    showTokenForm(false);
    refreshNow();
  });
  $("#token-clear").addEventListener("click", () => {
    try { localStorage.removeItem(TOKEN_KEY); } catch (err) { /* private mode */ }
    $("#token-input").value = "";
    refreshNow();
  });

  // ---- tiles ---------------------------------------------------------------------------------
  function renderTiles(h) {
    const s = h.samples[h.samples.length - 1];
    if (!s) return;
    set("in_rate", rate(s.in_per_sec));
    set("in_total", int(s.records_in));
    const mqttOn = (h.node.mqtt_addrs || []).length > 0;
    set("out_rate", rate(s.out_per_sec));
    set("out_sub", int(s.kafka_records_out) + " Kafka" + (mqttOn ? " · " + int(s.mqtt_messages_out) + " MQTT" : "")).title = mqttOn
      ? "since the node started: records returned by Kafka fetches, messages delivered to MQTT subscribers"
      : "since the node started: records returned by Kafka fetches";

    set("disk", bytes(s.disk_bytes));
    const bar = $('[data-k="disk_bar"]');
    if (s.disk_budget_bytes > 0) {
      const pct = Math.min(100, (100 * s.disk_bytes) / s.disk_budget_bytes);
      bar.hidden = false;
      bar.className = "bar" + (s.appends_blocked || pct >= 95 ? " full" : pct >= 80 ? " warn" : "");
      bar.firstElementChild.style.width = pct.toFixed(1) + "%";
      set("disk_sub", (s.appends_blocked ? "appends blocked · " : "") + Math.round(pct) + "% of " + bytes(s.disk_budget_bytes) + " budget");
    } else {
      bar.hidden = true;
      set("disk_sub", "no disk budget set");
    }

    // A node without MQTT (a center) has no devices: no tile for them.
    $('[data-tile="devices"]').hidden = !mqttOn;
    set("devices", mqttOn ? int(s.devices_online) : "—");
    let dsub = mqttOn ? "MQTT clients connected" : "MQTT is off";
    if (mqttOn && state.devices && state.devices.length) dsub = int(state.devices.length) + " registered";
    set("devices_sub", dsub);

    set("lag", int(s.consumer_lag));
    const groups = Object.keys(s.group_lag || {}).length;
    set("lag_sub", groups ? "over " + groups + (groups === 1 ? " group" : " groups") : "no committed offsets");

    // A center that mirrors nothing further shows its edges instead.
    $('[data-tile="mirror"]').hidden = !s.mirror && !!s.fleet;
    $('[data-tile="fleet"]').hidden = !s.fleet;
    if (s.fleet) {
      const f = s.fleet;
      set("fleet", int(f.connected) + " / " + int(f.edges));
      const pill = $('[data-k="fleet_pill"]');
      const down = f.edges - f.connected;
      pill.textContent = f.edges === 0 ? "no edge yet" : down === 0 ? "all connected" : down + " gone";
      pill.className = "pill" + (f.edges === 0 ? "" : down === 0 ? " up" : " down");
      set("fleet_sub", "copy lag " + int(f.lag_records) + " records");
    }
    const tiles = document.querySelectorAll(".tiles .tile:not([hidden])").length;
    $(".tiles").style.setProperty("--tiles", String(Math.max(1, tiles)));

    const link = $('[data-k="link"]');
    if (s.mirror) {
      const m = s.mirror;
      set("mirror", int(m.backlog_records));
      set("mirror_unit", "records behind");
      link.textContent = m.link_up ? "link up" : "link down";
      link.className = "pill " + (m.link_up ? "up" : "down");
      set("mirror_sub", m.backlog_records > 0 ? bytes(m.backlog_bytes) + " · oldest " + duration(m.oldest_unshipped_age_seconds) : "all shipped");
    } else {
      set("mirror", "off");
      set("mirror_unit", "");
      link.textContent = "not mirroring";
      link.className = "pill";
      set("mirror_sub", "");
    }
  }

  function renderHeader(h) {
    const n = h.node || {};
    $("#mode").textContent = n.mode || "edge";
    $("#mode").hidden = false;
    const parts = [];
    if (n.kafka_addr) parts.push("Kafka <b>" + esc(port(n.kafka_addr)) + "</b>");
    (n.mqtt_addrs || []).forEach((a, i) => parts.push((i ? "MQTT/TLS " : "MQTT ") + "<b>" + esc(port(a)) + "</b>"));
    if (n.mirror_addr) parts.push("mirror receiver <b>" + esc(port(n.mirror_addr)) + "</b>");
    if (n.mirror_to) parts.push("mirror → <b>" + esc(n.mirror_to) + "</b>" + (n.edge_id ? " as <b>" + esc(n.edge_id) + "</b>" : ""));
    $("#where").innerHTML = parts.join(" · ");
    $("#interval").textContent = duration(h.interval_seconds);
    document.title = "ferry " + (n.mode || "edge") + (n.edge_id ? " " + n.edge_id : "") + " · status";
  }

  // ---- charts --------------------------------------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  function el(name, attrs, parent) {
    const e = document.createElementNS(SVG, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function niceStep(max, ticks) {
    const raw = max / ticks;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
  }
  const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  // chart draws series [{name, color, values[]}] against times[] over the last hour ending at end.
  // spec: {times, series, fmt, bands (indexes of samples to shade), empty (message when no data)}.
  function chart(id, spec) {
    state.charts[id] = spec;
    const fig = document.getElementById(id);
    const plot = $(".plot", fig);
    $("[data-legend]", fig).innerHTML = spec.series.length > 1 || spec.legendAlways
      ? spec.series.map((s) => '<span><i style="background:' + s.color + '"></i>' + esc(s.name) + "</span>").join("")
      : "";
    const W = Math.max(plot.clientWidth, 200), H = Math.max(plot.clientHeight, 120);
    plot.textContent = "";
    const svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": fig.querySelector("h2").textContent });
    plot.appendChild(svg);
    // the last hour, or since the node started when that is shorter (at least five minutes)
    const end = spec.times.length ? spec.times[spec.times.length - 1] : Date.now();
    const span = Math.min(HOUR, Math.max(5 * 60000, end - (spec.times.length ? spec.times[0] : end)));
    const start = end - span;
    let max = 0;
    spec.series.forEach((s) => s.values.forEach((v) => { if (v > max) max = v; }));
    const step = Math.max(1, niceStep(max > 0 ? max : 1, 4)); // counts: whole steps
    const top = Math.max(step, Math.ceil(max / step) * step);
    const labels = [];
    for (let v = 0; v <= top + step / 2; v += step) labels.push(v);
    const left = 8 + Math.max(...labels.map((v) => spec.fmt(v).length)) * 6.2;
    const pad = { l: left, r: 8, t: 6, b: 20 };
    const iw = W - pad.l - pad.r, ih = H - pad.t - pad.b;
    const x = (t) => pad.l + ((t - start) / span) * iw;
    const y = (v) => pad.t + ih - (v / top) * ih;

    (spec.bands || []).forEach(([a, b]) => {
      const x0 = Math.max(pad.l, x(a)), x1 = Math.min(pad.l + iw, x(b));
      if (x1 > x0) el("rect", { x: x0, y: pad.t, width: x1 - x0, height: ih, fill: cssVar("--bad"), opacity: 0.08 }, svg);
    });
    labels.forEach((v) => {
      el("line", { x1: pad.l, x2: pad.l + iw, y1: y(v), y2: y(v), class: "gridline" }, svg);
      el("text", { x: pad.l - 6, y: y(v) + 3.5, "text-anchor": "end", class: "axis" }, svg).textContent = spec.fmt(v);
    });
    const spanMin = span / 60000;
    const every = [1, 2, 5, 10, 15, 20, 30].find((m) => spanMin / m <= 4) || 30;
    for (let m = Math.floor(spanMin / every) * every; m >= 0; m -= every) {
      const t = end - m * 60000;
      const near = x(t) - pad.l < 24;
      const tx = el("text", { x: x(t), y: H - 4, "text-anchor": near ? "start" : m === 0 ? "end" : "middle", class: "axis" }, svg);
      tx.textContent = m === 0 ? "now" : "−" + m + " min";
    }
    if (spec.empty) {
      el("text", { x: pad.l + iw / 2, y: pad.t + ih / 2, "text-anchor": "middle", class: "nodata" }, svg).textContent = spec.empty;
      return;
    }
    spec.series.forEach((s) => {
      let d = "", points = 0, last = -1;
      spec.times.forEach((t, i) => {
        if (t < start || s.values[i] == null) return;
        d += (d ? "L" : "M") + x(t).toFixed(1) + " " + y(s.values[i]).toFixed(1);
        points++;
        last = i;
      });
      if (!d) return;
      if (points === 1) { // a line needs two samples: show the one as a dot
        el("circle", { cx: x(spec.times[last]), cy: y(s.values[last]), r: 2.5, fill: s.color }, svg);
        return;
      }
      if (s.fill) {
        const first = spec.times.findIndex((t) => t >= start);
        el("path", { d: d + "L" + x(end).toFixed(1) + " " + y(0) + "L" + x(spec.times[first]).toFixed(1) + " " + y(0) + "Z", class: "area", fill: s.color }, svg);
      }
      el("path", { d, class: "series", stroke: s.color }, svg);
    });

    // hover: a cursor and the values of the nearest sample
    const cursor = el("line", { y1: pad.t, y2: pad.t + ih, class: "cursor", visibility: "hidden" }, svg);
    const dots = spec.series.map((s) => el("circle", { r: 3.2, fill: s.color, visibility: "hidden" }, svg));
    const tip = $("#tip");
    function hide() { cursor.setAttribute("visibility", "hidden"); dots.forEach((d) => d.setAttribute("visibility", "hidden")); tip.hidden = true; }
    svg.addEventListener("pointerleave", hide);
    svg.addEventListener("pointermove", (ev) => {
      const r = svg.getBoundingClientRect();
      const t = start + ((ev.clientX - r.left) * (W / r.width) - pad.l) / iw * span;
      let best = -1, bd = Infinity;
      spec.times.forEach((st, i) => { const dd = Math.abs(st - t); if (st >= start && dd < bd) { bd = dd; best = i; } });
      if (best < 0) return hide();
      const cx = x(spec.times[best]);
      cursor.setAttribute("x1", cx); cursor.setAttribute("x2", cx); cursor.setAttribute("visibility", "visible");
      spec.series.forEach((s, k) => {
        const v = s.values[best];
        if (v == null) { dots[k].setAttribute("visibility", "hidden"); return; }
        dots[k].setAttribute("cx", cx); dots[k].setAttribute("cy", y(v)); dots[k].setAttribute("visibility", "visible");
      });
      tip.innerHTML = "<b>" + clock(spec.times[best]) + "</b>" + spec.series.map((s) =>
        '<br><i style="background:' + s.color + '"></i>' + esc(s.name) + ": " + (s.values[best] == null ? "—" : esc(spec.tipFmt(s.values[best])))).join("");
      tip.hidden = false;
      const tx = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
      tip.style.left = tx + "px";
      tip.style.top = (ev.clientY - tip.offsetHeight - 12 < 4 ? ev.clientY + 16 : ev.clientY - tip.offsetHeight - 12) + "px";
    });
  }

  function renderCharts(h) {
    const ss = h.samples;
    const times = ss.map((s) => s.t);
    const perSec = (v) => rate(v) + "/s";
    chart("chart-throughput", {
      times, fmt: compact, tipFmt: perSec, legendAlways: true,
      series: [
        { name: "in", color: cssVar("--in"), values: ss.map((s, i) => (i ? s.in_per_sec : null)), fill: true },
        { name: "out", color: cssVar("--out"), values: ss.map((s, i) => (i ? s.out_per_sec : null)) },
      ],
    });

    // the total, and the groups with the most lag now (up to four) when there are several
    const latest = ss.length ? ss[ss.length - 1].group_lag || {} : {};
    const names = Object.keys(latest).sort((a, b) => latest[b] - latest[a] || a.localeCompare(b)).slice(0, 4);
    const palette = ["#0ea5e9", "#e11d48", "#16a34a", "#9333ea"];
    const lagSeries = [{ name: "total", color: cssVar("--lag"), values: ss.map((s) => s.consumer_lag), fill: true }];
    if (names.length > 1) {
      names.forEach((g, i) => lagSeries.push({ name: g, color: palette[i], values: ss.map((s) => (s.group_lag || {})[g] ?? null) }));
    }
    const anyGroup = ss.some((s) => s.group_lag && Object.keys(s.group_lag).length);
    chart("chart-lag", {
      times, fmt: compact, tipFmt: (v) => int(v) + " records", series: lagSeries,
      empty: anyGroup ? "" : "no consumer group has committed offsets",
    });

    const mirrored = ss.some((s) => s.mirror);
    const bands = [];
    let from = -1;
    ss.forEach((s, i) => {
      const down = s.mirror && !s.mirror.link_up;
      if (down && from < 0) from = i;
      if ((!down || i === ss.length - 1) && from >= 0) { bands.push([ss[from].t, s.t]); from = -1; }
    });
    const fleet = ss.some((s) => s.fleet);
    $("#chart-mirror").hidden = fleet && !mirrored;
    $("#chart-fleet").hidden = !fleet;
    if (fleet) renderFleetChart(ss, times, palette);
    if ($("#chart-mirror").hidden) return;
    chart("chart-mirror", {
      times, fmt: compact, tipFmt: (v) => int(v) + " records", bands,
      series: [{ name: "backlog", color: cssVar("--mirror"), values: ss.map((s) => (s.mirror ? s.mirror.backlog_records : null)), fill: true }],
      empty: mirrored ? "" : "this node mirrors nothing (no --mirror-to)",
    });
    $("#chart-mirror [data-legend]").innerHTML = mirrored && bands.length
      ? '<span><i style="background:' + cssVar("--bad") + ';opacity:.35"></i>link down</span>' : "";
  }

  // a center's edges: their copy lag in total and for those furthest behind now (up to four), shaded
  // while some edge is gone
  function renderFleetChart(ss, times, palette) {
    const latest = ss.length && ss[ss.length - 1].fleet ? ss[ss.length - 1].fleet.edge_lag || {} : {};
    const names = Object.keys(latest).sort((a, b) => latest[b] - latest[a] || a.localeCompare(b)).slice(0, 4);
    const series = [{ name: "total", color: cssVar("--mirror"), values: ss.map((s) => (s.fleet ? s.fleet.lag_records : null)), fill: true }];
    names.forEach((e, i) => series.push({ name: e, color: palette[i], values: ss.map((s) => (s.fleet && s.fleet.edge_lag ? s.fleet.edge_lag[e] ?? null : null)) }));
    const bands = [];
    let from = -1;
    ss.forEach((s, i) => {
      const gone = s.fleet && s.fleet.connected < s.fleet.edges;
      if (gone && from < 0) from = i;
      if ((!gone || i === ss.length - 1) && from >= 0) { bands.push([ss[from].t, s.t]); from = -1; }
    });
    const any = ss.some((s) => s.fleet && s.fleet.edges > 0);
    chart("chart-fleet", {
      times, fmt: compact, tipFmt: (v) => int(v) + " records", bands, series, legendAlways: names.length > 0,
      empty: any ? "" : "no edge has connected yet",
    });
    if (bands.length) {
      $("#chart-fleet [data-legend]").innerHTML += '<span><i style="background:' + cssVar("--bad") + ';opacity:.35"></i>an edge gone</span>';
    }
  }

  // ---- tables --------------------------------------------------------------------------------
  function tableMessage(id, res, what) {
    const card = document.getElementById(id);
    const cols = card.querySelectorAll("thead th").length;
    let msg = what + " not available";
    if (res.status === 401) msg = "the admin API needs a token: use Token above";
    else if (res.status === 0) msg = "node not reachable";
    else if (res.status === 404 && res.body && res.body.error) msg = res.body.error;
    $(".count", card).textContent = "";
    $("tbody", card).innerHTML = '<tr class="empty"><td colspan="' + cols + '">' + esc(msg) + "</td></tr>";
  }
  function fillTable(id, rows, emptyText) {
    const card = document.getElementById(id);
    const cols = card.querySelectorAll("thead th").length;
    $(".count", card).textContent = rows.length ? rows.length : "";
    $("tbody", card).innerHTML = rows.length ? rows.join("") : '<tr class="empty"><td colspan="' + cols + '">' + esc(emptyText) + "</td></tr>";
  }
  function retention(cfg) {
    const v = cfg && cfg["retention.ms"];
    if (v == null || v === "") return '<span style="color:var(--faint)">default</span>';
    const ms = Number(v);
    return ms < 0 ? "forever" : duration(ms / 1000);
  }

  function renderEdges(res) {
    if (res.status !== 200 || !res.body || !Array.isArray(res.body.edges)) return tableMessage("table-edges", res, "edges");
    fillTable("table-edges", res.body.edges.map((e) => {
      const chunk = e.last_chunk ? Date.parse(e.last_chunk) : NaN;
      const since = Date.parse(e.since);
      const status = e.connected ? '<span class="state on">connected</span>'
        : '<span class="state" title="' + esc(new Date(since).toLocaleString()) + '">gone ' + esc(ago(since)) + "</span>";
      const lag = e.lag_known ? int(e.lag_records) : '<span title="the edge does not report its ends (protocol 3)">—</span>';
      const age = e.lag_known ? (e.lag_records > 0 ? duration(e.lag_seconds) : "0 s") : "—";
      const topics = (e.topics || []).map((t) => esc(t.topic) + (e.lag_known ? " " + int(t.lag_records) + (t.lag_records > 0 ? " (" + duration(t.lag_seconds) + ")" : "") : "")).join(" · ");
      const err = e.last_error ? ' title="' + esc(e.last_error.reason + ": " + e.last_error.message + " (" + ago(Date.parse(e.last_error.at)) + ")") + '"' : "";
      return '<tr><td class="name">' + esc(e.edge) + "</td><td>" + status + '</td><td title="' + (isNaN(chunk) ? "" : esc(new Date(chunk).toLocaleString())) + '">' +
        (isNaN(chunk) ? "never" : esc(ago(chunk))) + '</td><td class="num">' + rate(e.records_per_second) + '</td><td class="num">' + lag +
        '</td><td class="num">' + age + '</td><td class="wide">' + topics + '</td><td class="num">' + int(e.gap_records) +
        '</td><td class="num"' + err + ">" + int(e.errors) + "</td></tr>";
    }), "no edge has connected yet");
  }

  // renderCluster fills the cluster card of a full node in a cluster
  // (GET /api/cluster); a node alone answers 404 and the card stays hidden.
  function renderCluster(res) {
    const card = $("#table-cluster");
    if (res.status === 404) { card.hidden = true; return; }
    card.hidden = false;
    if (res.status !== 200 || !res.body || !Array.isArray(res.body.brokers)) return tableMessage("table-cluster", res, "the cluster");
    const c = res.body, off = (c.offline_partitions || []).length, rep = c.replication || {};
    const urp = int(rep.under_replicated_partitions), underMin = int(rep.under_min_isr_partitions);
    $("#cluster-summary").textContent = "node " + c.node + " · controller " + (c.controller >= 0 ? "node " + c.controller : "none") +
      " · raft term " + int(c.raft_term) + " · " + int(c.partitions) + " partitions" + (off ? " · " + off + " offline" : "") +
      " · " + urp + " under-replicated" + (underMin ? " · " + underMin + " under min ISR (acks=all refused)" : "");
    fillTable("table-cluster", c.brokers.map((b) => '<tr><td class="name">' + int(b.id) + (b.id === c.controller ? " (controller)" : "") + "</td><td>" +
      (b.fenced ? '<span class="state warn">fenced</span>' : '<span class="state on">live</span>') + "</td><td>" + esc((b.endpoints || {}).kafka || "—") +
      '</td><td class="num">' + int(b.replicas) + '</td><td class="num">' + int(b.leads) + "</td><td>" + esc(b.rack || "—") + "</td></tr>"), "no broker registered yet");
  }

  async function renderTables() {
    const node = (state.history && state.history.node) || {};
    const mqttOn = (node.mqtt_addrs || []).length > 0, center = !!node.mirror_addr;
    $("#table-devices").hidden = !mqttOn && !!state.history;
    $("#table-edges").hidden = !center;
    const none = Promise.resolve({ status: 0, body: null });
    const [topics, groups, devices, edges, cluster] = await Promise.all([api("api/topics"), api("api/groups"),
      $("#table-devices").hidden ? none : api("api/devices"), center ? api("api/mirror/edges") : none,
      node.mode === "full" ? api("api/cluster") : none]);
    if (center) renderEdges(edges);
    if (node.mode === "full") renderCluster(cluster);
    if (topics.status === 200 && Array.isArray(topics.body)) {
      const internal = (t) => t.internal || t.name.startsWith("__");
      const list = topics.body.slice().sort((a, b) => (internal(a) - internal(b)) || a.name.localeCompare(b.name));
      fillTable("table-topics", list.map((t) => {
        const ps = t.partitions || [];
        let recs = 0, endOff = 0, size = 0;
        ps.forEach((p) => { recs += Math.max(0, p.end_offset - p.start_offset); endOff += p.end_offset; size += p.size_bytes || 0; });
        // A partition holding a corrupt batch (/readyz says not ready):
        // where, and the way out.
        const damaged = ps.filter((p) => p.damaged).map((p) => '<span class="state warn" title="' +
          esc(p.damaged.reason + " · " + p.damaged.segment + " · ferry log truncate cuts the partition there") + '">partition ' +
          p.partition + " damaged at " + int(p.damaged.offset) + "</span>").join(" ");
        return "<tr" + (internal(t) ? ' style="color:var(--muted)"' : "") + '><td class="name">' + esc(t.name) + (damaged ? " " + damaged : "") + '</td><td class="num">' + ps.length +
          '</td><td class="num">' + int(recs) + '</td><td class="num wide">' + int(endOff) + '</td><td class="num">' + bytes(size) +
          '</td><td class="num wide">' + retention(t.configs) + "</td></tr>";
      }), "no topics yet");
    } else tableMessage("table-topics", topics, "topics");

    if (groups.status === 200 && Array.isArray(groups.body)) {
      fillTable("table-groups", groups.body.slice().sort((a, b) => a.group.localeCompare(b.group)).map((g) => {
        const cls = g.state === "Stable" ? "on" : /Rebalance/.test(g.state || "") ? "warn" : "";
        const members = Array.isArray(g.members) ? g.members.length : g.members;
        return '<tr><td class="name">' + esc(g.group) + '</td><td><span class="state ' + cls + '">' + esc(g.state || "—") +
          '</span></td><td class="num">' + int(members) + '</td><td class="num">' + int(g.lag) + "</td></tr>";
      }), "no consumer groups");
    } else tableMessage("table-groups", groups, "groups");

    if ($("#table-devices").hidden) {
      state.devices = null;
    } else if (devices.status === 200 && Array.isArray(devices.body)) {
      state.devices = devices.body;
      const list = devices.body.slice().sort((a, b) => (b.online - a.online) || a.id.localeCompare(b.id));
      fillTable("table-devices", list.map((d) => {
        const seen = d.last_seen ? Date.parse(d.last_seen) : NaN;
        return '<tr><td class="name">' + esc(d.id) + '</td><td><span class="state ' + (d.online ? "on" : "") + '">' + (d.online ? "online" : "offline") +
          "</span></td><td>" + (d.enabled ? "yes" : "disabled") + '</td><td title="' + (isNaN(seen) ? "" : esc(new Date(seen).toLocaleString())) + '">' +
          (d.online ? "now" : isNaN(seen) || seen <= 0 ? "never" : ago(seen)) + "</td></tr>";
      }), "no devices registered");
    } else {
      state.devices = null;
      tableMessage("table-devices", devices, "devices");
    }
  }

  // ---- the refresh loop ----------------------------------------------------------------------
  function setLive(ok, text) {
    const live = $("#live");
    live.className = "live " + (ok ? "ok" : "bad");
    $("#live-text").textContent = text;
  }

  async function refresh() {
    state.needToken = false;
    const h = await api("api/history");
    if (h.status === 200 && h.body && Array.isArray(h.body.samples)) {
      state.history = h.body;
      state.interval = Math.min(10, Math.max(1, h.body.interval_seconds || 5));
      state.lastOk = Date.now();
      renderHeader(h.body);
      renderCharts(h.body);
    } else if (!state.history) {
      const why = h.status === 401 ? "no figures without the admin token" : "no figures: the node is not answering";
      document.querySelectorAll(".plot").forEach((p) => { p.innerHTML = '<p class="placeholder">' + esc(why) + "</p>"; });
    }
    await renderTables();
    if (state.history) renderTiles(state.history); // after the tables: the devices tile uses the registry's count
    if (h.status === 200) {
      setLive(true, "live · " + clock(state.lastOk));
      document.body.dataset.samples = String(state.history.samples.length);
    } else if (h.status === 401) {
      setLive(false, "admin token needed");
    } else {
      setLive(false, (h.status === 0 ? "node not reachable" : "error " + h.status) + (state.lastOk ? " · last " + clock(state.lastOk) : ""));
    }
    if (state.needToken) {
      $("#token-label").textContent = token()
        ? "This browser's admin token was refused: paste the one the node was started with (--admin-token)."
        : "This node's admin API asks for a bearer token (--admin-token).";
      if ($("#token-form").hidden) showTokenForm(true);
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    state.timer = setTimeout(refreshNow, state.interval * 1000);
  }
  async function refreshNow() {
    clearTimeout(state.timer);
    try { await refresh(); } finally { if (!document.hidden) schedule(); }
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshNow(); });
  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (state.history) renderCharts(state.history); }, 120);
  });
  refreshNow();
})();
