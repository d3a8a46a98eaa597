// Artifacts page: list, versions, aliases, download, delete, and the lineage graph drawn as
// plain SVG (layered left-to-right layout; no CDN, works offline and through an SSH tunnel).
// Every URL is relative to the page so the viewer also works mounted under a prefix.
"use strict";

(function () {
  const $ = (sel) => document.querySelector(sel);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const state = { project: "", artifact: null, focus: null };

  async function api(path, opts) {
    const r = await fetch(path, opts);
    const body = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
    if (!r.ok) throw new Error(body?.error?.message || `${r.status} ${r.statusText}`);
    return body;
  }
  function showError(err) {
    const box = $("#a-error");
    box.textContent = err ? String(err.message || err) : "";
    box.hidden = !err;
  }
  const q = (extra) => new URLSearchParams({ project: state.project, ...(extra || {}) }).toString();
  const size = (n) => n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
  const aliasTags = (list) => (list || []).map((a) => `<span class="alias ${a === "latest" ? "latest" : ""}">${esc(a)}</span>`).join("");

  async function loadProjects() {
    const data = await api("api/projects");
    const names = (data.projects || []).map((p) => p.name);
    const fromUrl = new URLSearchParams(location.search).get("project");
    state.project = fromUrl && names.includes(fromUrl) ? fromUrl : names[0] || "";
    $("#a-project").innerHTML = names.map((n) => `<option ${n === state.project ? "selected" : ""}>${esc(n)}</option>`).join("");
  }

  async function loadList() {
    showError(null);
    const data = await api(`api/artifacts?${q()}`);
    const rows = data.artifacts.map((a) => `<tr data-name="${esc(a.name)}" class="${a.name === state.artifact ? "selected" : ""}">
      <td>${esc(a.name)}</td><td>${esc(a.type)}</td><td class="num">${a.versions}</td>
      <td>${Object.entries(a.aliases).map(([al, v]) => `<span class="alias ${al === "latest" ? "latest" : ""}">${esc(al)}→${esc(v)}</span>`).join("")}</td></tr>`);
    $("#a-list tbody").innerHTML = rows.join("") || `<tr><td colspan="4" class="muted">no artifacts in this project</td></tr>`;
    document.querySelectorAll("#a-list tbody tr[data-name]").forEach((tr) => tr.addEventListener("click", () => selectArtifact(tr.dataset.name)));
  }

  async function selectArtifact(name) {
    state.artifact = name;
    document.querySelectorAll("#a-list tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.name === name));
    const data = await api(`api/artifacts/${encodeURIComponent(name)}/versions?${q()}`);
    $("#a-detail").hidden = false;
    $("#a-title").textContent = name;
    $("#a-versions tbody").innerHTML = data.versions.slice().reverse().map((v) => `<tr>
      <td><a href="#" data-files="${esc(v.label)}">${esc(v.label)}</a></td><td>${aliasTags(v.aliases)}</td>
      <td class="num">${v.file_count}</td><td class="num">${size(v.size)}</td>
      <td>${v.created_by_run ? `<a href="run.html?id=${encodeURIComponent(v.created_by_run)}">${esc(v.created_by_run)}</a>` : ""}</td>
      <td class="muted">${esc((v.created_at || "").replace("T", " ").slice(0, 19))}</td>
      <td><code>${esc(JSON.stringify(v.metadata))}</code></td>
      <td><a href="api/artifacts/${encodeURIComponent(name)}/${esc(v.label)}/download?${q()}">download</a>
          <a href="#" class="del-version" data-version="${esc(v.label)}">delete</a></td></tr>`).join("");
    document.querySelectorAll("#a-versions a[data-files]").forEach((a) => a.addEventListener("click", (ev) => { ev.preventDefault(); showFiles(a.dataset.files); }));
    document.querySelectorAll("#a-versions a.del-version").forEach((a) => a.addEventListener("click", (ev) => { ev.preventDefault(); del(a.dataset.version); }));
    $("#a-files").innerHTML = "";
    await drawLineage(`${name}:latest`);
  }

  async function showFiles(label) {
    const v = await api(`api/artifacts/${encodeURIComponent(state.artifact)}/${encodeURIComponent(label)}?${q()}`);
    $("#a-files").innerHTML = `<h2>${esc(state.artifact)}:${esc(label)} files</h2><table><thead><tr><th>Path</th><th>Size</th><th>sha256</th></tr></thead><tbody>${
      (v.files || []).map((f) => `<tr><td><a href="api/artifacts/${encodeURIComponent(state.artifact)}/${encodeURIComponent(label)}/download?${q({ path: f.path })}">${esc(f.path)}</a></td><td class="num">${size(f.size)}</td><td><code>${esc(f.sha256.slice(0, 16))}…</code></td></tr>`).join("")}</tbody></table>`;
  }

  async function del(version) {
    const what = version ? `${state.artifact}:${version}` : `all versions of ${state.artifact}`;
    if (!confirm(`Delete ${what}?`)) return;
    try {
      await api(`api/artifacts/${encodeURIComponent(state.artifact)}?${q(version ? { version } : {})}`, { method: "DELETE" });
      showError(null);
      await loadList();
      if (version) await selectArtifact(state.artifact); else { $("#a-detail").hidden = true; state.artifact = null; await drawLineage(null); }
    } catch (err) { showError(err); }
  }

  // -- lineage graph ------------------------------------------------------------------------
  function layout(graph) {
    // Longest-path layering: a node's column is 1 + the max column of its predecessors.
    const preds = new Map(graph.nodes.map((n) => [n.id, []]));
    graph.edges.forEach((e) => preds.get(e.target)?.push(e.source));
    const col = new Map();
    const visit = (id, stack) => {
      if (col.has(id)) return col.get(id);
      if (stack.has(id)) return 0; // cycles cannot happen in lineage, but never loop forever
      stack.add(id);
      const c = Math.max(-1, ...(preds.get(id) || []).map((p) => visit(p, stack))) + 1;
      stack.delete(id);
      col.set(id, c);
      return c;
    };
    graph.nodes.forEach((n) => visit(n.id, new Set()));
    const columns = [];
    graph.nodes.forEach((n) => { (columns[col.get(n.id)] ||= []).push(n); });
    const W = 190, H = 34, GX = 70, GY = 18, pos = new Map();
    columns.forEach((nodes, c) => nodes.sort((a, b) => a.id.localeCompare(b.id)).forEach((n, r) => pos.set(n.id, { x: 12 + c * (W + GX), y: 12 + r * (H + GY), w: W, h: H })));
    const width = 24 + columns.length * (W + GX) - GX;
    const height = 24 + Math.max(1, ...columns.map((c) => c.length)) * (H + GY) - GY;
    return { pos, width, height };
  }

  function label(n) {
    if (n.kind === "run") return n.name && n.name !== n.run_id ? `${n.name} (${n.run_id})` : `run ${n.run_id}`;
    return `${n.name}:${n.version}${n.aliases?.length ? " (" + n.aliases.join(",") + ")" : ""}`;
  }

  async function drawLineage(focusRef) {
    const box = $("#lineage");
    const params = { project: state.project };
    if (focusRef?.startsWith("run:")) params.run_id = focusRef.slice(4);
    else if (focusRef) params.artifact = focusRef;
    let graph;
    try { graph = await api(`api/lineage?${new URLSearchParams(params)}`); } catch (err) { showError(err); return; }
    if (!graph.nodes.length) { box.innerHTML = `<div class="empty">no lineage recorded yet</div>`; return; }
    const { pos, width, height } = layout(graph);
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("width", width); svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("role", "img"); svg.setAttribute("aria-label", "lineage graph");
    svg.innerHTML = `<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#98a2b8"/></marker></defs>`;
    graph.edges.forEach((e) => {
      const a = pos.get(e.source), b = pos.get(e.target);
      if (!a || !b) return;
      const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2, mx = (x1 + x2) / 2;
      const p = document.createElementNS(svgNS, "path");
      p.setAttribute("d", `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`);
      p.setAttribute("class", `edge ${e.kind}`);
      p.setAttribute("marker-end", "url(#arrow)");
      const t = document.createElementNS(svgNS, "title"); t.textContent = e.kind; p.appendChild(t);
      svg.appendChild(p);
    });
    graph.nodes.forEach((n) => {
      const b = pos.get(n.id);
      const g = document.createElementNS(svgNS, "g");
      const focused = focusRef && (n.id === `artifact:${focusRef}` || n.id === focusRef ||
        (n.kind === "artifact" && focusRef === `${n.name}:latest` && n.aliases?.includes("latest")));
      g.setAttribute("class", `node ${n.kind}${focused ? " focus" : ""}`);
      g.setAttribute("data-id", n.id);
      const r = document.createElementNS(svgNS, "rect");
      Object.entries({ x: b.x, y: b.y, width: b.w, height: b.h, rx: n.kind === "run" ? 14 : 3 }).forEach(([k, v]) => r.setAttribute(k, v));
      const tx = document.createElementNS(svgNS, "text");
      tx.setAttribute("x", b.x + 10); tx.setAttribute("y", b.y + b.h / 2 + 4);
      const text = label(n);
      tx.textContent = text.length > 27 ? text.slice(0, 26) + "…" : text;
      const title = document.createElementNS(svgNS, "title"); title.textContent = text;
      g.append(r, tx, title);
      g.addEventListener("click", (ev) => {
        ev.stopPropagation();
        if (ev.detail === 2 && n.kind === "run") { location.href = `run.html?id=${encodeURIComponent(n.run_id)}`; return; }
        drawLineage(n.kind === "run" ? n.id : `${n.name}:${n.version}`);
      });
      svg.appendChild(g);
    });
    svg.addEventListener("click", () => drawLineage(null));
    box.replaceChildren(svg);
  }

  async function init() {
    try {
      await loadProjects();
      await loadList();
      const fromUrl = new URLSearchParams(location.search).get("artifact");
      if (fromUrl) await selectArtifact(fromUrl); else await drawLineage(null);
    } catch (err) { showError(err); }
    $("#a-project").addEventListener("change", async (ev) => {
      state.project = ev.target.value; state.artifact = null; $("#a-detail").hidden = true;
      try { await loadList(); await drawLineage(null); } catch (err) { showError(err); }
    });
    $("#a-alias-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api(`api/artifacts/${encodeURIComponent(state.artifact)}/aliases/${encodeURIComponent($("#a-alias").value)}?${q()}`,
          { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ version: $("#a-alias-version").value }) });
        showError(null);
        await loadList(); await selectArtifact(state.artifact);
      } catch (err) { showError(err); }
    });
    $("#a-delete").addEventListener("click", () => del(null));
    $("#a-export").addEventListener("click", () => { location.href = `api/export/project?${q()}`; });
  }

  window.WorkbenchLineage = { layout, drawLineage };
  init();
})();
