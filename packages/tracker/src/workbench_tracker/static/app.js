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
// Always a new array: Plotly.react only redraws a trace whose arrays are new objects.
function smooth(values, weight) {
  if (!weight) return values.slice();
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
// Dotted keys reach into nested config/summary dicts, like the API's config.x filters and sorts.
function dig(obj, dotted) {
  if (obj && Object.prototype.hasOwnProperty.call(obj, dotted)) return [true, obj[dotted]];
  let cur = obj;
  for (const part of dotted.split(".")) {
    if (cur === null || typeof cur !== "object" || !(part in cur)) return [false, undefined];
    cur = cur[part];
  }
  return [true, cur];
}

// The runs-table filters as query parameters, shared by the table, the group charts and the
// parameter plot so all three show the same runs.
function filterQuery() {
  const q = new URLSearchParams();
  for (const k of ["project", "status", "tag", "search"]) {
    const el = $(`#f-${k}`);
    const v = el ? el.value.trim() : "";
    if (v) q.set(k, v);
  }
  for (const part of $("#f-config").value.split(",")) {
    const [k, ...rest] = part.split("=");
    if (k && k.trim() && rest.length) q.append(`config.${k.trim()}`, rest.join("=").trim());
  }
  return q;
}

const BASE_COLUMNS = [
  { id: "project", label: "Project", sort: "project", cell: (r) => esc(r.project) },
  { id: "status", label: "Status", sort: "status", cell: (r) => `<span class="status-${esc(r.status)}">${esc(r.status)}</span>` },
  { id: "created_at", label: "Created", sort: "created_at", cell: (r) => esc((r.created_at || "").replace("T", " ").slice(0, 19)) },
  { id: "tags", label: "Tags", sort: null, cell: (r) => r.tags.map((t) => `<span class="tag">${esc(t)}</span>`).join("") },
];
const COLUMNS_KEY = "workbench.tracker.columns";

function columnDef(id) {
  const base = BASE_COLUMNS.find((c) => c.id === id);
  if (base) return base;
  const [source, ...rest] = id.split(".");
  const key = rest.join(".");
  return {
    id, sort: id, label: `<span class="muted">${esc(source)}.</span>${esc(key)}`,
    cell: (r) => { const [found, v] = dig(r[source], key); return found ? esc(fmt(v)) : ""; },
    numeric: true,
  };
}

async function runsPage() {
  let offset = 0;
  const limit = 50;
  let lastRuns = [];
  let keys = { config: [], summary: [], metrics: [] };
  let visible = null; // column ids; null until the user picks or the keys arrive
  try { visible = JSON.parse(localStorage.getItem(COLUMNS_KEY) || "null"); } catch (e) { visible = null; }
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
    if (!el) continue;
    if (el.tagName === "SELECT" && ![...el.options].some((o) => o.value === v)) el.add(new Option(v, v));
    el.value = v;
  }

  function setSort(value) {
    const sel = $("#f-sort");
    if (![...sel.options].some((o) => o.value === value)) sel.add(new Option(value.replace(/^-/, "") + (value.startsWith("-") ? " ↓" : " ↑"), value));
    sel.value = value;
  }
  function renderTable() {
    const cols = (visible || BASE_COLUMNS.map((c) => c.id)).map(columnDef);
    const sort = $("#f-sort").value;
    const head = (label, field) => {
      if (!field) return `<th>${label}</th>`;
      const state = sort === field ? "ascending" : sort === `-${field}` ? "descending" : "none";
      const arrow = state === "ascending" ? " ▲" : state === "descending" ? " ▼" : "";
      return `<th class="sortable" data-sort="${esc(field)}" aria-sort="${state}">${label}${arrow}</th>`;
    };
    $("#runs thead").innerHTML = `<tr><th></th>${head("Name", "name")}${cols.map((c) => head(c.label, c.sort)).join("")}</tr>`;
    $("#runs tbody").innerHTML = lastRuns.map((r) => `
      <tr data-run-id="${esc(r.id)}">
        <td><input type="checkbox" class="pick" value="${esc(r.id)}"></td>
        <td><a href="run.html?id=${encodeURIComponent(r.id)}">${esc(r.name)}</a><div class="muted">${esc(r.id)}</div></td>
        ${cols.map((c) => `<td data-col="${esc(c.id)}"${c.numeric ? ' class="num"' : ""}>${c.cell(r)}</td>`).join("")}
      </tr>`).join("") || `<tr><td colspan="${cols.length + 2}" class="muted">no runs match</td></tr>`;
  }
  function renderColumnPicker() {
    const ids = [...BASE_COLUMNS.map((c) => c.id), ...keys.config.map((k) => `config.${k}`), ...keys.summary.map((k) => `summary.${k}`)];
    for (const id of visible || []) if (!ids.includes(id)) ids.push(id);
    const shown = new Set(visible || []);
    $("#columns").innerHTML = ids.map((id) => `<label><input type="checkbox" class="col-pick" value="${esc(id)}"${shown.has(id) ? " checked" : ""}> ${esc(id)}</label>`).join("");
  }
  async function loadKeys() {
    try {
      keys = await api(`api/workspace/keys?${filterQuery()}`);
    } catch (e) { showError(e); return; }
    if (visible === null) {
      // First visit: the fixed columns plus a few config and summary values, like W&B's default.
      visible = [...BASE_COLUMNS.map((c) => c.id), ...keys.config.slice(0, 3).map((k) => `config.${k}`), ...keys.summary.slice(0, 3).map((k) => `summary.${k}`)];
      renderTable();
    }
    renderColumnPicker();
    fillSelect($("#g-by"), keys.config, "no grouping");
    fillSelect($("#g-keys"), keys.metrics);
    fillSelect($("#pc-metric"), keys.summary);
    fillSelect($("#pc-keys"), keys.config);
  }
  // A slower, older answer (the 10 s refresh, a keystroke ago) must not replace a newer one.
  let loadSeq = 0;
  async function load() {
    const seq = ++loadSeq;
    const q = filterQuery();
    q.set("sort", $("#f-sort").value);
    q.set("limit", limit); q.set("offset", offset);
    try {
      const data = await api(`api/runs?${q}`);
      if (seq !== loadSeq) return;
      $("#error").hidden = true;
      lastRuns = data.runs;
      renderTable();
      $("#page-info").textContent = `${data.total ? offset + 1 : 0}–${offset + data.runs.length} of ${data.total}`;
      $("#prev").disabled = offset === 0;
      $("#next").disabled = offset + data.runs.length >= data.total;
    } catch (e) { showError(e); }
  }
  const workspace = new Workspace();
  async function reloadAll() {
    await Promise.all([load(), loadKeys()]);
    await workspace.load();
  }
  $("#filters").addEventListener("submit", (ev) => { ev.preventDefault(); offset = 0; reloadAll(); });
  let typing = null;
  $("#f-search").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { offset = 0; reloadAll(); }, 250);
  });
  $("#f-sort").addEventListener("change", () => { offset = 0; load(); });
  $("#runs thead").addEventListener("click", (ev) => {
    const th = ev.target.closest("th[data-sort]");
    if (!th) return;
    const field = th.dataset.sort;
    const cur = $("#f-sort").value;
    setSort(cur === field ? `-${field}` : field);
    offset = 0; load();
  });
  $("#columns").addEventListener("change", () => {
    visible = [...document.querySelectorAll(".col-pick:checked")].map((c) => c.value);
    localStorage.setItem(COLUMNS_KEY, JSON.stringify(visible));
    renderTable();
  });
  $("#prev").addEventListener("click", () => { offset = Math.max(0, offset - limit); load(); });
  $("#next").addEventListener("click", () => { offset += limit; load(); });
  $("#compare-btn").addEventListener("click", () => {
    const ids = [...document.querySelectorAll(".pick:checked")].map((c) => c.value);
    if (ids.length) location.href = `compare.html?runs=${encodeURIComponent(ids.join(","))}`;
  });
  await Promise.all([load(), loadKeys()]);
  workspace.bind(keys);
  await workspace.load();
  setInterval(load, 10000);
  setInterval(() => workspace.load(), 30000);
}

// Options of a <select>, keeping what was selected (a multi-select keeps every selected value).
function fillSelect(sel, values, emptyLabel) {
  if (!sel) return;
  const chosen = new Set([...sel.selectedOptions].map((o) => o.value));
  sel.innerHTML = (emptyLabel !== undefined ? `<option value="">${esc(emptyLabel)}</option>` : "") + values.map((v) => `<option value="${esc(v)}">${esc(v)}</option>`).join("");
  for (const o of sel.options) if (chosen.has(o.value)) o.selected = true;
}

// --------------------------------------------------------------------- runs page: workspace
// Panels of metric curves over every run the filters match, grouped by a config value (mean
// line, min/max band, computed by the server: api/workspace/groups), and a parallel-coordinates
// plot of config values against a summary metric.
const DASHES = ["solid", "dash", "dot", "dashdot", "longdash"];
// Above the plot: below it, a horizontal legend covers the x axis title.
const LEGEND = { orientation: "h", x: 0, y: 1, yanchor: "bottom", traceorder: "normal" };

class Workspace {
  constructor() {
    this.panels = []; // each: {keys: [...], card, div}
  }
  bind(keys) {
    const fromUrl = (params.get("panels") || "").split(";").map((p) => p.split(",").filter(Boolean)).filter((p) => p.length);
    const initial = fromUrl.length ? fromUrl : keys.metrics.slice(0, 4).map((k) => [k]);
    for (const p of initial) this.addPanel(p, false);
    const by = params.get("group_by");
    if (by) { if (![...$("#g-by").options].some((o) => o.value === by)) $("#g-by").add(new Option(by, by)); $("#g-by").value = by; }
    $("#g-by").addEventListener("change", () => { this.saveUrl(); this.loadPanels(); });
    $("#g-add").addEventListener("click", () => {
      const chosen = [...$("#g-keys").selectedOptions].map((o) => o.value);
      if (!chosen.length) return;
      const panel = this.addPanel(chosen, true);
      this.loadPanel(panel).catch(showError);
    });
    $("#pc-metric").addEventListener("change", () => this.loadParcoords().catch(showError));
    $("#pc-keys").addEventListener("change", () => this.loadParcoords().catch(showError));
  }
  saveUrl() {
    const q = new URLSearchParams(location.search);
    q.set("panels", this.panels.map((p) => p.keys.join(",")).join(";"));
    const by = $("#g-by").value;
    if (by) q.set("group_by", by); else q.delete("group_by");
    history.replaceState(null, "", `${location.pathname}?${q}`);
  }
  addPanel(keys, save) {
    const card = document.createElement("div");
    card.className = "card panel";
    card.dataset.keys = keys.join(",");
    card.innerHTML = `<div><strong>${esc(keys.join(", "))}</strong> <span class="muted note"></span> <button type="button" class="secondary remove" title="remove panel">×</button></div><div class="chart"></div>`;
    $("#group-charts").appendChild(card);
    const panel = { keys, card, div: card.querySelector(".chart") };
    card.querySelector(".remove").addEventListener("click", () => {
      this.panels = this.panels.filter((p) => p !== panel);
      card.remove();
      this.saveUrl();
    });
    this.panels.push(panel);
    if (save) this.saveUrl();
    return panel;
  }
  async load() {
    await Promise.all([this.loadPanels(), this.loadParcoords()]).catch(showError);
  }
  async loadPanels() {
    await Promise.all(this.panels.map((p) => this.loadPanel(p)));
  }
  async loadPanel(panel) {
    const seq = panel.seq = (panel.seq || 0) + 1;
    const q = filterQuery();
    q.set("keys", panel.keys.join(","));
    const by = $("#g-by").value;
    if (by) q.set("group_by", by);
    const data = await api(`api/workspace/groups?${q}`);
    if (seq !== panel.seq) return; // a newer load of this panel is under way
    const colorOf = new Map(data.groups.map((g, i) => [g.label, COLORS[i % COLORS.length]]));
    const bands = [], lines = [];
    panel.keys.forEach((key, ki) => {
      for (const [label, c] of Object.entries(data.curves[key] || {})) {
        const color = colorOf.get(label) || COLORS[0];
        const name = panel.keys.length > 1 ? `${key} · ${label}` : label;
        const runs = (data.groups.find((g) => g.label === label) || { runs: [] }).runs.length;
        if (runs > 1) {
          const common = { x: c.steps.slice(), mode: "lines", line: { width: 0, color }, showlegend: false, hoverinfo: "skip", meta: "band" };
          bands.push({ ...common, y: c.max.slice(), name: `${name} (max)` });
          bands.push({ ...common, y: c.min.slice(), name: `${name} (min)`, fill: "tonexty", fillcolor: rgba(color, 0.18) });
        }
        lines.push({
          x: c.steps.slice(), y: c.mean.slice(), name: runs > 1 ? `${name} (mean of ${runs})` : name, meta: "mean",
          mode: c.steps.length < 2 ? "markers" : "lines", line: { color, dash: DASHES[ki % DASHES.length] }, marker: { color },
          customdata: c.count, hovertemplate: `%{y:.4g} @ %{x:.0f} (%{customdata} runs)<extra>${esc(name)}</extra>`,
        });
      }
    });
    panel.card.querySelector(".note").textContent = data.runs_used < data.total ? `first ${data.runs_used} of ${data.total} runs` : `${data.total} runs`;
    panel.card.dataset.groups = String(data.groups.length);
    if (typeof Plotly === "undefined") return;
    const traces = [...bands, ...lines];
    Plotly.react(panel.div, traces, {
      margin: { l: 50, r: 10, t: 30 + 18 * Math.floor(lines.length / 4), b: 35 }, datarevision: Date.now(), uirevision: "panel",
      xaxis: { title: { text: "step" }, autorange: true },
      yaxis: { ...flatRange(lines, false) },
      showlegend: true, legend: LEGEND,
    }, { displaylogo: false, responsive: true });
  }
  // One line a run through config axes and the chosen summary metric (coloured by it).
  // Text values get one tick each; runs missing a chosen value are left out (and counted).
  async loadParcoords() {
    const seq = this.pcSeq = (this.pcSeq || 0) + 1;
    const metric = $("#pc-metric").value;
    const div = $("#parcoords");
    if (!metric) { div.dataset.runs = "0"; return; }
    let cfgKeys = [...$("#pc-keys").selectedOptions].map((o) => o.value);
    const q = filterQuery();
    q.set("limit", "1000");
    const data = await api(`api/runs?${q}`);
    if (seq !== this.pcSeq) return;
    if (!cfgKeys.length) {
      // Default: the config keys whose value differs between the runs (up to 8).
      cfgKeys = [...$("#pc-keys").options].map((o) => o.value).filter((k) => new Set(data.runs.map((r) => JSON.stringify(dig(r.config, k)[1]))).size > 1).slice(0, 8);
    }
    const rows = [];
    for (const r of data.runs) {
      const [hasM, m] = dig(r.summary, metric);
      const mv = num(m);
      if (!hasM || !Number.isFinite(mv)) continue;
      const vals = cfgKeys.map((k) => dig(r.config, k));
      if (vals.some(([found, v]) => !found || v === null || typeof v === "object")) continue;
      rows.push({ id: r.id, config: vals.map(([, v]) => v), metric: mv });
    }
    const dims = cfgKeys.map((k, i) => {
      const col = rows.map((r) => r.config[i]);
      if (col.every((v) => typeof v === "number")) return { label: k, values: col };
      const cats = [...new Set(col.map(String))].sort();
      return { label: k, values: col.map((v) => cats.indexOf(String(v))), tickvals: cats.map((_, j) => j), ticktext: cats };
    });
    dims.push({ label: metric, values: rows.map((r) => r.metric) });
    div.dataset.runs = String(rows.length);
    $("#pc-note").textContent = `${rows.length} of ${data.runs.length} runs` + (rows.length < data.runs.length ? " (runs without every chosen value are left out)" : "");
    if (typeof Plotly === "undefined") return;
    Plotly.react(div, [{
      type: "parcoords", dimensions: dims, customdata: rows.map((r) => r.id),
      line: { color: rows.map((r) => r.metric), colorscale: "Viridis", showscale: true, colorbar: { title: { text: metric } } },
    }], { margin: { l: 60, r: 60, t: 40, b: 20 } }, { displaylogo: false, responsive: true });
  }
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
    // Panels that draw several keys together: id -> {card, div, keys}.
    this.combos = new Map();
    this.revision = 0;
  }
  // Layout shared by every chart. A new datarevision makes Plotly redraw; autorange follows
  // the data as it grows; uirevision keeps a zoom the user made across those redraws (until the
  // x axis or the scale changes).
  layout(traces, showlegend) {
    return {
      margin: { l: 50, r: 10, t: showlegend ? 30 : 10, b: 35 },
      datarevision: ++this.revision,
      uirevision: `${this.xaxis}|${this.logy}`,
      xaxis: { title: { text: this.xaxis === "time" ? "seconds" : "step" }, autorange: true },
      yaxis: { type: this.logy ? "log" : "linear", ...flatRange(traces, this.logy) },
      showlegend,
      legend: LEGEND,
    };
  }
  addCombo(keys) {
    const id = keys.join(",");
    if (this.combos.has(id)) return this.combos.get(id);
    const card = document.createElement("div");
    card.className = "card combo";
    card.dataset.keys = id;
    card.innerHTML = `<div><strong>${esc(keys.join(", "))}</strong> <span class="muted count"></span> <button type="button" class="secondary remove" title="remove panel">×</button></div><div class="chart"></div>`;
    this.container.prepend(card);
    const entry = { card, div: card.querySelector(".chart"), keys };
    card.querySelector(".remove").addEventListener("click", () => { this.combos.delete(id); card.remove(); this.onCombosChanged(); });
    this.combos.set(id, entry);
    this.renderCombo(entry);
    this.onCombosChanged();
    return entry;
  }
  onCombosChanged() {
    const q = new URLSearchParams(location.search);
    if (this.combos.size) q.set("panels", [...this.combos.keys()].join(";")); else q.delete("panels");
    history.replaceState(null, "", `${location.pathname}?${q}`);
  }
  // Every series of every key of the panel on one chart: a colour a key, a dash a run.
  renderCombo(entry) {
    const traces = [];
    let points = 0;
    entry.keys.forEach((key, ki) => {
      const e = this.charts.get(key);
      if (!e) return;
      let li = 0;
      for (const [label, s] of e.series) {
        const color = COLORS[ki % COLORS.length];
        const x = this.xValues(s);
        if (li === 0) points += s.steps.length;
        traces.push({
          x, y: smooth(s.values, this.smoothing), name: e.series.size > 1 ? `${key} · ${label}` : key, meta: key,
          mode: s.steps.length < 2 ? "markers" : "lines", line: { color, dash: DASHES[li++ % DASHES.length] }, marker: { color },
        });
      }
    });
    entry.card.dataset.points = String(points);
    entry.card.querySelector(".count").textContent = `${points} points`;
    if (typeof Plotly === "undefined") return;
    Plotly.react(entry.div, traces, this.layout(traces, true), { displaylogo: false, responsive: true });
  }
  xValues(s) {
    if (this.xaxis === "time" && s.times.length === s.steps.length && s.times.length) {
      const t0 = s.times[0];
      return s.times.map((t) => t - t0);
    }
    return s.steps.slice();
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
    for (const c of this.combos.values()) if (c.keys.some((k) => keys.includes(k))) this.renderCombo(c);
  }
  renderAll() {
    for (const k of this.charts.keys()) this.render(k);
    for (const c of this.combos.values()) this.renderCombo(c);
  }
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
      const x = this.xValues(s);
      const y = smooth(s.values, this.smoothing);
      if (this.smoothing) {
        traces.push({ x, y: s.values.slice(), name: `${label} (raw)`, mode: "lines", line: { width: 1, color }, opacity: 0.25, showlegend: false, hoverinfo: "skip" });
      }
      traces.push({ x, y, name: label, mode: s.steps.length < 2 ? "markers" : "lines", line: { color }, marker: { color } });
    }
    traces.unshift(...bands);
    points = points || 0;
    e.card.dataset.points = String(points);
    e.card.querySelector(".count").textContent = `${points} points`;
    if (typeof Plotly === "undefined") return;
    Plotly.react(e.div, traces, this.layout(traces, e.series.size > 1), { displaylogo: false, responsive: true });
  }
  // The "several keys in one panel" chooser; panels in ?panels=a,b;c,d are restored.
  bindPanels() {
    const sel = $("#panel-keys");
    if (!sel) return;
    fillSelect(sel, [...this.charts.keys()].sort());
    $("#add-panel").addEventListener("click", () => {
      const keys = [...sel.selectedOptions].map((o) => o.value);
      if (keys.length) this.addCombo(keys);
    });
    for (const p of (params.get("panels") || "").split(";")) {
      const keys = p.split(",").filter((k) => this.charts.has(k));
      if (keys.length) this.addCombo(keys);
    }
  }
  bindControls() {
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
  charts.bindPanels();

  // The SDK persists the summary (last value of each key) while the run logs: re-read the run
  // shortly after points arrive, at most once a second, and every few seconds while running.
  let metaTimer = null;
  const refreshMeta = () => {
    if (metaTimer) return;
    metaTimer = setTimeout(() => {
      metaTimer = null;
      api(`api/runs/${rid}`).then((r) => { run = r; renderMeta(r); }).catch(showError);
    }, 1000);
  };
  setInterval(() => { if (run.status === "running") refreshMeta(); }, 5000);

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
        const fresh = !charts.charts.has(msg.key);
        charts.append(msg.key, run.name, msg);
        last[msg.key] = msg.steps[msg.steps.length - 1];
        if (fresh) fillSelect($("#panel-keys"), [...charts.charts.keys()].sort());
        refreshMeta();
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
    charts.bindPanels();
  } catch (e) { showError(e); }
}

const page = document.body.dataset.page;
({ runs: runsPage, run: runPage, compare: comparePage }[page] || (() => {}))();
