// Workbench tracker UI. Plain JS, no build step, no CDN: works offline and under any URL prefix
// because every URL here is relative to the page (api/..., run.html?id=...).
"use strict";

const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
// The API sends NaN/Infinity as strings (JSON has no literal for them); null also means NaN.
const num = (v) => (v === null || v === undefined ? NaN : Number(v));
const params = new URLSearchParams(location.search);

async function api(path) {
  const resp = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error((body.error && body.error.message) || `HTTP ${resp.status}`);
  return body;
}

function showError(err) {
  const box = $("#error");
  if (!box) return;
  box.hidden = false;
  box.textContent = String(err.message || err);
}

function fmt(v) {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(5)));
  if (v === "NaN" || v === "Infinity" || v === "-Infinity") return v;
  if (typeof v === "object" && v !== null) return JSON.stringify(v);
  return String(v ?? "");
}

function kvRows(obj) {
  const keys = Object.keys(obj || {}).sort();
  if (!keys.length) return '<tr><td class="muted">none</td></tr>';
  return keys.map((k) => `<tr><th>${esc(k)}</th><td class="num">${esc(fmt(obj[k]))}</td></tr>`).join("");
}

// TensorBoard-style debiased exponential moving average.
function smooth(values, weight) {
  if (!weight) return values;
  const out = new Array(values.length);
  let last = 0, n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) { out[i] = v; continue; }
    last = last * weight + (1 - weight) * v;
    n++;
    out[i] = last / (1 - Math.pow(weight, n));
  }
  return out;
}

// ---------------------------------------------------------------------------------- runs page
async function runsPage() {
  let offset = 0;
  const limit = 50;
  try {
    const projects = await api("api/projects");
    const sel = $("#f-project");
    for (const p of projects.projects) {
      const o = document.createElement("option");
      o.value = p.name; o.textContent = `${p.name} (${p.run_count})`;
      sel.appendChild(o);
    }
  } catch (e) { showError(e); }
  for (const [k, v] of params) {
    const el = $(`#f-${k}`);
    if (el) el.value = v;
  }
  async function load() {
    const q = new URLSearchParams();
    for (const k of ["project", "status", "tag", "sort"]) {
      const v = $(`#f-${k}`).value.trim();
      if (v) q.set(k, v);
    }
    for (const part of $("#f-config").value.split(",")) {
      const [k, ...rest] = part.split("=");
      if (k && k.trim() && rest.length) q.append(`config.${k.trim()}`, rest.join("=").trim());
    }
    q.set("limit", limit); q.set("offset", offset);
    try {
      const data = await api(`api/runs?${q}`);
      $("#error").hidden = true;
      const body = $("#runs tbody");
      body.innerHTML = data.runs.map((r) => `
        <tr data-run-id="${esc(r.id)}">
          <td><input type="checkbox" class="pick" value="${esc(r.id)}"></td>
          <td><a href="run.html?id=${encodeURIComponent(r.id)}">${esc(r.name)}</a><div class="muted">${esc(r.id)}</div></td>
          <td>${esc(r.project)}</td>
          <td class="status-${esc(r.status)}">${esc(r.status)}</td>
          <td>${esc((r.created_at || "").replace("T", " ").slice(0, 19))}</td>
          <td>${r.tags.map((t) => `<span class="tag">${esc(t)}</span>`).join("")}</td>
          <td>${Object.entries(r.config).slice(0, 4).map(([k, v]) => `${esc(k)}=${esc(fmt(v))}`).join("<br>")}</td>
          <td>${Object.entries(r.summary).slice(0, 4).map(([k, v]) => `${esc(k)}=${esc(fmt(v))}`).join("<br>")}</td>
        </tr>`).join("") || '<tr><td colspan="8" class="muted">no runs match</td></tr>';
      $("#page-info").textContent = `${data.total ? offset + 1 : 0}–${offset + data.runs.length} of ${data.total}`;
      $("#prev").disabled = offset === 0;
      $("#next").disabled = offset + data.runs.length >= data.total;
    } catch (e) { showError(e); }
  }
  $("#filters").addEventListener("submit", (ev) => { ev.preventDefault(); offset = 0; load(); });
  $("#prev").addEventListener("click", () => { offset = Math.max(0, offset - limit); load(); });
  $("#next").addEventListener("click", () => { offset += limit; load(); });
  $("#compare-btn").addEventListener("click", () => {
    const ids = [...document.querySelectorAll(".pick:checked")].map((c) => c.value);
    if (ids.length) location.href = `compare.html?runs=${encodeURIComponent(ids.join(","))}`;
  });
  await load();
  setInterval(load, 10000);
}

// ------------------------------------------------------------------------------- chart helper
// Plotly's default colorway, set explicitly so a run's band and its line share one colour.
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const BAND_BUCKETS = 500;
const finiteOrNull = (v) => (Number.isFinite(v) ? v : null);

function rgba(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
}

// Plotly pads a flat series by +/-1 around its value, so a constant 0.01 (a learning rate)
// is drawn as a line at "0" on a -1..1 axis. A flat chart gets a range scaled to its value.
function flatRange(traces, logy) {
  let lo = Infinity, hi = -Infinity;
  for (const t of traces) for (const v of t.y) if (Number.isFinite(v) && (!logy || v > 0)) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (lo !== hi) return { autorange: true };
  if (logy) return { autorange: false, range: [Math.log10(lo) - 0.5, Math.log10(lo) + 0.5] };
  const pad = Math.abs(lo) * 0.1 || 1;
  return { autorange: false, range: [lo - pad, lo + pad] };
}

class ChartSet {
  constructor(container) {
    this.container = container;
    // key -> {div, series: Map(label -> {steps, values, times, runId, env})}; env is the
    // min/max envelope from /series?envelope=true, fetched when the band is switched on.
    this.charts = new Map();
    this.smoothing = 0; this.logy = false; this.xaxis = "step"; this.band = false;
    this.pending = new Set();
  }
  ensure(key) {
    if (this.charts.has(key)) return this.charts.get(key);
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.key = key;
    card.innerHTML = `<div><strong>${esc(key)}</strong> <span class="muted count"></span></div><div class="chart"></div>`;
    this.container.appendChild(card);
    const entry = { card, div: card.querySelector(".chart"), series: new Map() };
    this.charts.set(key, entry);
    return entry;
  }
  set(key, label, s, runId) {
    const e = this.ensure(key);
    e.series.set(label, { steps: s.steps.slice(), values: s.values.map(num), times: (s.times || []).slice(), runId, env: null });
    this.schedule(key);
  }
  // Fetch every series' min/max envelope (the series part of the answer is one point: limit=1).
  // Points that arrive live afterwards are drawn as a line only, until the band is re-fetched.
  async loadBands() {
    const jobs = [];
    for (const [key, e] of this.charts) {
      for (const s of e.series.values()) {
        if (!s.runId) continue;
        const q = `key=${encodeURIComponent(key)}&method=none&limit=1&envelope=true&buckets=${BAND_BUCKETS}`;
        jobs.push(api(`api/runs/${encodeURIComponent(s.runId)}/series?${q}`).then((body) => {
          const env = body.envelope;
          s.env = { steps: env.steps, lastSteps: env.last_steps, times: env.times, lastTimes: env.last_times, min: env.min.map(num), max: env.max.map(num) };
        }));
      }
    }
    await Promise.all(jobs);
    this.renderAll();
  }
  // The band as two traces: max, then min filled up to it ("tonexty"). Each bucket is a flat
  // segment from its first to its last step, so the band covers exactly the span it summarises.
  bandTraces(label, s, color) {
    const env = s.env;
    const asTime = this.xaxis === "time" && env.times.length === env.steps.length && env.times.length;
    const t0 = s.times.length ? s.times[0] : env.times[0];
    const x = [], lo = [], hi = [];
    for (let i = 0; i < env.steps.length; i++) {
      if (asTime) x.push(env.times[i] - t0, env.lastTimes[i] - t0);
      else x.push(env.steps[i], env.lastSteps[i]);
      const mn = finiteOrNull(env.min[i]), mx = finiteOrNull(env.max[i]);
      lo.push(mn, mn); hi.push(mx, mx);
    }
    const common = { x, mode: "lines", line: { width: 0, color }, showlegend: false, hoverinfo: "skip", meta: "band" };
    return [
      { ...common, y: hi, name: `${label} (max)` },
      { ...common, y: lo, name: `${label} (min)`, fill: "tonexty", fillcolor: rgba(color, 0.2) },
    ];
  }
  append(key, label, s) {
    const e = this.ensure(key);
    const cur = e.series.get(label) || { steps: [], values: [], times: [] };
    // Points at or before the last step held are already drawn (a reconnect may resend them).
    const lastStep = cur.steps.length ? cur.steps[cur.steps.length - 1] : -Infinity;
    for (let i = 0; i < s.steps.length; i++) {
      if (s.steps[i] <= lastStep) continue;
      cur.steps.push(s.steps[i]); cur.values.push(num(s.values[i]));
      if (s.times && s.times.length) cur.times.push(s.times[i]);
    }
    e.series.set(label, cur);
    this.schedule(key);
  }
  schedule(key) {
    if (this.pending.size === 0) requestAnimationFrame(() => this.flush());
    this.pending.add(key);
  }
  flush() {
    const keys = [...this.pending];
    this.pending.clear();
    for (const k of keys) this.render(k);
  }
  renderAll() { for (const k of this.charts.keys()) this.render(k); }
  render(key) {
    const e = this.charts.get(key);
    const traces = [];
    const bands = []; // drawn first, so every line stays on top of every band
    let points = null; // the page's own run (the first series); overlays are not counted
    let index = 0;
    for (const [label, s] of e.series) {
      const color = COLORS[index++ % COLORS.length];
      if (points === null) points = s.steps.length;
      if (this.band && s.env && s.env.steps.length) bands.push(...this.bandTraces(label, s, color));
      let x = s.steps;
      if (this.xaxis === "time" && s.times.length === s.steps.length && s.times.length) {
        const t0 = s.times[0];
        x = s.times.map((t) => t - t0);
      }
      const y = smooth(s.values, this.smoothing);
      if (this.smoothing) {
        traces.push({ x, y: s.values, name: `${label} (raw)`, mode: "lines", line: { width: 1, color }, opacity: 0.25, showlegend: false, hoverinfo: "skip" });
      }
      traces.push({ x, y, name: label, mode: s.steps.length < 2 ? "markers" : "lines", line: { color }, marker: { color } });
    }
    traces.unshift(...bands);
    points = points || 0;
    e.card.dataset.points = String(points);
    e.card.querySelector(".count").textContent = `${points} points`;
    if (typeof Plotly === "undefined") return;
    Plotly.react(e.div, traces, {
      margin: { l: 50, r: 10, t: 10, b: 35 },
      xaxis: { title: { text: this.xaxis === "time" ? "seconds" : "step" } },
      yaxis: { type: this.logy ? "log" : "linear", ...flatRange(traces, this.logy) },
      showlegend: e.series.size > 1,
      legend: { orientation: "h" },
    }, { displaylogo: false, responsive: true });
  }
  bindControls(chartsRef) {
    const sm = $("#smoothing");
    if (sm) sm.addEventListener("input", () => { this.smoothing = Number(sm.value); $("#smoothing-val").textContent = sm.value; this.renderAll(); });
    const lg = $("#logy");
    if (lg) lg.addEventListener("change", () => { this.logy = lg.checked; this.renderAll(); });
    const xa = $("#xaxis");
    if (xa) xa.addEventListener("change", () => { this.xaxis = xa.value; this.renderAll(); });
    const bd = $("#band");
    if (bd) bd.addEventListener("change", () => {
      this.band = bd.checked;
      if (this.band) this.loadBands().catch(showError);
      else this.renderAll();
    });
  }
}

// ----------------------------------------------------------------------------------- run page
async function runPage() {
  const id = params.get("id");
  if (!id) { showError(new Error("id: missing ?id= in the URL")); return; }
  const charts = new ChartSet($("#charts"));
  charts.bindControls();
  const rid = encodeURIComponent(id);
  let run;
  try { run = await api(`api/runs/${rid}`); } catch (e) { showError(e); return; }
  const renderMeta = (r) => {
    document.title = `${r.name} · Workbench tracker`;
    $("#run-title").textContent = r.name;
    $("#run-meta").innerHTML = `<span class="status-${esc(r.status)}" id="run-status">${esc(r.status)}</span> · ${esc(r.project)} · ${esc(r.id)} · ${esc((r.created_at || "").slice(0, 19))} ${r.tags.map((t) => `<span class="tag">${esc(t)}</span>`).join("")}${r.notes ? `<div>${esc(r.notes)}</div>` : ""}`;
    $("#config tbody").innerHTML = kvRows(r.config);
    $("#summary tbody").innerHTML = kvRows(r.summary);
    if (r.traceback || r.error) { $("#traceback").textContent = r.traceback || r.error; $("#traceback").classList.remove("muted"); }
    $("#environment").textContent = JSON.stringify({ ...r.environment, packages: r.environment.packages ? `${Object.keys(r.environment.packages).length} packages` : undefined }, null, 2);
  };
  renderMeta(run);

  const last = {};
  const keys = (await api(`api/runs/${rid}/metrics`)).keys;
  await Promise.all(Object.keys(keys).map(async (k) => {
    const s = await api(`api/runs/${rid}/series?key=${encodeURIComponent(k)}&points=1000`);
    charts.set(k, run.name, s, id);
    if (s.steps.length) last[k] = s.steps[s.steps.length - 1];
  }));

  async function loadAlerts() {
    try {
      const a = await api(`api/runs/${rid}/alerts`);
      $("#alerts").innerHTML = a.alerts.map((x) => `<div class="alert"><strong>${esc(x.kind)}</strong> ${esc(x.key)} ${x.step !== null ? `@ step ${esc(x.step)}` : ""}: ${esc(x.message)}</div>`).join("");
    } catch (e) { showError(e); }
  }
  async function loadImages() {
    try {
      const m = await api(`api/runs/${rid}/media`);
      if (!m.media.length) return;
      $("#images").innerHTML = m.media.map((x) => `<figure><img src="api/media/${x.id}" alt="${esc(x.key)}"><figcaption>${esc(x.key)} @ ${x.step}${x.caption ? ` — ${esc(x.caption)}` : ""}</figcaption></figure>`).join("");
    } catch (e) { showError(e); }
  }
  loadAlerts(); loadImages();

  async function overlay() {
    const ids = $("#overlay").value.split(",").map((s) => s.trim()).filter(Boolean);
    for (const [k, e] of charts.charts) for (const label of [...e.series.keys()]) if (label !== run.name) e.series.delete(label);
    for (const other of ids) {
      try {
        const info = await api(`api/runs/${encodeURIComponent(other)}`);
        for (const k of charts.charts.keys()) {
          const s = await api(`api/runs/${encodeURIComponent(other)}/series?key=${encodeURIComponent(k)}&points=1000`);
          if (s.steps.length) charts.set(k, `${info.name} (${other})`, s, other);
        }
      } catch (e) { showError(e); }
    }
    if (charts.band) await charts.loadBands().catch(showError);
    charts.renderAll();
  }
  $("#overlay").value = params.get("overlay") || "";
  $("#overlay").addEventListener("change", overlay);
  if ($("#overlay").value) overlay();

  // Live: the server pushes new points; reconnect with the steps we already hold.
  function connect() {
    const url = new URL(`api/runs/${rid}/ws`, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url);
    ws.onopen = () => { $("#live").textContent = "live"; ws.send(JSON.stringify({ after: last, all: true })); };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "points") {
        charts.append(msg.key, run.name, msg);
        last[msg.key] = msg.steps[msg.steps.length - 1];
      } else if (msg.type === "status" && msg.status !== run.status) {
        api(`api/runs/${rid}`).then((r) => { run = r; renderMeta(r); loadAlerts(); loadImages(); });
      }
    };
    ws.onclose = () => { $("#live").textContent = "reconnecting…"; setTimeout(connect, 2000); };
  }
  connect();
  setInterval(loadAlerts, 5000);
}

// ------------------------------------------------------------------------------- compare page
async function comparePage() {
  const ids = params.get("runs") || "";
  $("#compare-ids").value = ids;
  $("#compare-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.href = `compare.html?runs=${encodeURIComponent($("#compare-ids").value.replace(/\s+/g, ""))}`;
  });
  if (!ids) return;
  const charts = new ChartSet($("#charts"));
  charts.bindControls();
  try {
    const data = await api(`api/compare?runs=${encodeURIComponent(ids)}`);
    const names = Object.fromEntries(data.runs.map((r) => [r.id, `${r.name} (${r.id})`]));
    $("#diff thead").innerHTML = `<tr><th>config</th>${data.runs.map((r) => `<th><a href="run.html?id=${encodeURIComponent(r.id)}">${esc(names[r.id])}</a></th>`).join("")}</tr>`;
    const keys = Object.keys(data.config_diff).sort();
    $("#diff tbody").innerHTML = keys.map((k) => `<tr><th>${esc(k)}</th>${data.runs.map((r) => `<td class="changed">${esc(fmt(data.config_diff[k][r.id]))}</td>`).join("")}</tr>`).join("") || '<tr><td class="muted">configs are identical</td></tr>';
    for (const [runId, series] of Object.entries(data.series)) {
      for (const [k, s] of Object.entries(series)) if (s.steps.length) charts.set(k, names[runId], s, runId);
    }
  } catch (e) { showError(e); }
}

const page = document.body.dataset.page;
({ runs: runsPage, run: runPage, compare: comparePage }[page] || (() => {}))();
