// automc dashboard: the experiments list, a submit form, and per experiment its live front
// (server-sent events), hypervolume, controls and exports. No CDN: plotly.js is served locally.
"use strict";
const $ = (id) => document.getElementById(id);
let selected = null, source = null, objectives = [], frontTimer = null;

async function api(method, path, body) {
  const init = {method, credentials: "same-origin", headers: {}};
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["content-type"] = typeof body === "string" ? "application/yaml" : "application/json";
  }
  const r = await fetch(path, init);
  if (r.status === 401) { showLogin(); throw new Error("sign in first"); }
  const data = (r.headers.get("content-type") || "").includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error(data.detail || String(data));
  return data;
}

function showLogin() { $("login").hidden = false; $("app").hidden = true; }

$("login-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const r = await fetch("api/session", {method: "POST", credentials: "same-origin", headers: {"content-type": "application/json"}, body: JSON.stringify({token: $("token").value})});
  if (!r.ok) { $("login-error").textContent = (await r.json()).detail; return; }
  $("login").hidden = true; $("app").hidden = false; refreshList();
};

function fmt(v) { return typeof v === "number" ? (Math.abs(v) >= 1e4 ? v.toExponential(3) : +v.toPrecision(4)) : (v ?? ""); }

async function refreshList() {
  const list = await api("GET", "api/experiments");
  $("app").hidden = false;
  const body = $("experiments").tBodies[0];
  body.replaceChildren(...list.map((e) => {
    const tr = document.createElement("tr");
    tr.dataset.id = e.id;
    if (e.id === selected) tr.className = "selected";
    const budget = (e.progress.budget || {}).candidates;
    const pct = budget ? Math.min(100, 100 * e.progress.finished / budget) : 0;
    tr.innerHTML = `<td></td><td class="state-${e.state.split(" ")[0]}">${e.state}</td><td><span class="bar"><span style="width:${pct}%"></span></span>${e.progress.finished}/${budget ?? "?"}</td><td>${e.best ? fmt(e.best.reward) : ""}</td>`;
    tr.cells[0].textContent = e.id;
    tr.onclick = () => select(e.id);
    return tr;
  }));
}

$("submit-form").onsubmit = async (ev) => {
  ev.preventDefault();
  $("submit-error").textContent = "";
  try {
    const job = await api("POST", "api/experiments", $("yaml").value);
    await refreshList();
    select(job.id);
  } catch (e) { $("submit-error").textContent = e.message; }
};

function plotFront(front, done) {
  const [y, x] = objectives.length >= 2 ? [objectives[0].metric, objectives[1].metric] : ["reward", "number"];
  const value = (c, k) => c.metrics[k] ?? c[k];
  front = [...front].sort((a, b) => value(a, x) - value(b, x));
  const fx = front.map((c) => value(c, x)), fy = front.map((c) => value(c, y));
  Plotly.react("front-plot", [
    {x: done.map((c) => value(c, x)), y: done.map((c) => value(c, y)), text: done.map((c) => "#" + c.number), mode: "markers", name: "candidates", marker: {color: "#bbb", size: 6}},
    {x: fx, y: fy, text: front.map((c) => "#" + c.number), mode: "lines+markers", line: {shape: "hv"}, name: "front", marker: {color: "#3b7dd8", size: 9}},
  ], {margin: {t: 30, r: 10}, title: {text: "Pareto front", font: {size: 14}}, xaxis: {title: {text: x}}, yaxis: {title: {text: y}}}, {displaylogo: false, responsive: true});
  $("front-plot").dataset.points = done.length;
  $("front-plot").dataset.front = front.length;
}

async function refreshFront() {
  if (!selected) return;
  const id = selected;
  const [f, done] = await Promise.all([api("GET", `api/experiments/${id}/front`), api("GET", `api/experiments/${id}/candidates?state=complete&limit=1000`)]);
  if (id !== selected) return;
  objectives = f.objectives;
  plotFront(f.front, done.items);
  const h = f.hypervolume.history || [];
  Plotly.react("hv-plot", [{x: h.map((p) => p.evaluations), y: h.map((p) => p.normalized), mode: "lines", name: "hypervolume"}],
    {margin: {t: 30, r: 10}, title: {text: "hypervolume (normalised)", font: {size: 13}}}, {displaylogo: false, responsive: true});
  const best = await api("GET", `api/experiments/${selected}/candidates?sort=-reward&limit=10&state=complete`);
  const metrics = objectives.map((o) => o.metric);
  $("candidates").tHead.innerHTML = "<tr><th>#</th><th>reward</th>" + metrics.map((m) => `<th>${m}</th>`).join("") + "<th>front</th></tr>";
  $("candidates").tBodies[0].innerHTML = best.items.map((c) => `<tr><td>${c.number}</td><td>${fmt(c.reward)}</td>` + metrics.map((m) => `<td>${fmt(c.metrics[m])}</td>`).join("") + `<td>${c.on_front ? "✓" : ""}</td></tr>`).join("");
}

function showStatus(e) {
  const p = e.progress, budget = (p.budget || {}).candidates;
  $("status").textContent = `${e.state ?? ""} — ${p.finished}/${budget ?? "?"} finished, ${p.failed} failed` + (e.message ? ` — ${e.message}` : "") + (e.hypervolume != null ? `, hypervolume ${fmt(e.hypervolume)}` : "");
  $("status").dataset.state = e.state ?? $("status").dataset.state;
  $("status").dataset.finished = p.finished;
}

async function select(id) {
  selected = id;
  if (source) source.close();
  $("detail").hidden = false;
  $("title").textContent = id;
  $("report").href = `api/experiments/${id}/report?format=html`;
  $("downloads").replaceChildren();
  const e = await api("GET", `api/experiments/${id}`);
  objectives = e.objectives;
  showStatus(e);
  refreshList();
  refreshFront();
  source = new EventSource(`api/experiments/${id}/events?follow=1`);
  source.addEventListener("candidate", scheduleFront);
  source.addEventListener("progress", (m) => { const d = JSON.parse(m.data); showStatus({...d, state: $("status").dataset.state}); });
  source.addEventListener("state", (m) => { const d = JSON.parse(m.data); $("status").dataset.state = d.state; refreshList(); api("GET", `api/experiments/${id}`).then(showStatus); });
}

function scheduleFront() { if (!frontTimer) frontTimer = setTimeout(() => { frontTimer = null; refreshFront(); }, 700); }

async function act(path, body) {
  $("action-error").textContent = "";
  try { await api("POST", `api/experiments/${selected}/${path}`, body); refreshList(); }
  catch (e) { $("action-error").textContent = e.message; }
}
$("stop").onclick = () => act("stop");
$("resume").onclick = () => act("resume");
$("extend").onclick = () => act("budget", {candidates: Number($("budget").value)});

$("export-form").onsubmit = async (ev) => {
  ev.preventDefault();
  $("export-error").textContent = "";
  try {
    const r = await api("POST", `api/experiments/${selected}/export`, {candidate: Number($("export-candidate").value), int8: $("export-int8").checked});
    $("downloads").replaceChildren(...r.files.map((f) => {
      const li = document.createElement("li"), a = document.createElement("a");
      a.href = `api/experiments/${selected}/exports/${r.export}/${f}`; a.textContent = `${r.export}/${f}`;
      li.appendChild(a); return li;
    }));
  } catch (e) { $("export-error").textContent = e.message; }
};

$("server").textContent = location.host;
refreshList().catch(() => {});
setInterval(() => { if (!$("app").hidden) refreshList().catch(() => {}); }, 2000);
