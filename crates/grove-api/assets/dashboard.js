// grove's dashboard: plain JavaScript over the admin API (the cookie set by /?token=... is
// the credential; changes also send the X-Grove header).
"use strict";

const $ = (sel) => document.querySelector(sel);

async function api(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    headers: { "X-Grove": "1", "Content-Type": "application/json", ...(options.headers || {}) },
    credentials: "same-origin",
  });
  if (!res.ok) {
    throw new Error(`${path}: ${res.status}`);
  }
  return res.json();
}

function bytes(n) {
  if (n == null) return "-";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function duration(ms) {
  if (ms == null) return "-";
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

async function act(verb, unit) {
  try {
    const r = await api(`/v1/${verb}`, { method: "POST", body: JSON.stringify({ targets: [unit] }) });
    document.body.dataset.lastAction = `${verb} ${r.units.join(",")}`;
  } catch (e) {
    document.body.dataset.lastAction = `error ${e.message}`;
  }
  refreshUnits();
}

async function refreshUnits() {
  let status;
  try {
    status = await api("/v1/status");
  } catch (e) {
    $("#conn").textContent = "offline";
    return;
  }
  $("#conn").textContent = "live";
  $("#stack").textContent = status.stack;
  $("#env").textContent = status.environment ? `environment ${status.environment}` : "";
  const body = $("#units tbody");
  body.replaceChildren();
  const select = $("#log-unit");
  const known = new Set([...select.options].map((o) => o.value));
  for (const u of status.units) {
    const tr = document.createElement("tr");
    tr.dataset.unit = u.name;
    tr.appendChild(cell(u.name));
    const state = document.createElement("td");
    const pill = document.createElement("span");
    pill.className = `pill s-${u.state}`;
    pill.textContent = u.state;
    if (u.reason) pill.title = u.reason;
    state.appendChild(pill);
    tr.appendChild(state);
    tr.appendChild(cell(u.health || "-"));
    tr.appendChild(cell(String(u.restarts), "num restarts"));
    tr.appendChild(cell(u.pid == null ? "-" : String(u.pid), "num pid"));
    tr.appendChild(cell(u.port == null ? "-" : String(u.port), "num"));
    tr.appendChild(cell(u.cpu_percent == null ? "-" : `${u.cpu_percent}%`, "num"));
    tr.appendChild(cell(bytes(u.rss_bytes), "num"));
    tr.appendChild(cell(duration(u.uptime_ms), "num"));
    const actions = document.createElement("td");
    for (const verb of ["restart", "stop", "start"]) {
      const b = document.createElement("button");
      b.textContent = verb;
      b.className = `act-${verb}`;
      b.addEventListener("click", () => act(verb, u.name));
      actions.appendChild(b);
    }
    tr.appendChild(actions);
    body.appendChild(tr);
    if (!known.has(u.name)) {
      const o = document.createElement("option");
      o.value = o.textContent = u.name;
      select.appendChild(o);
    }
  }
  if (!logSource && select.value) followLog(select.value);
}

function draw(svg, points, label) {
  svg.replaceChildren();
  if (!points.length) return;
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const y1 = Math.max(...ys, 1e-9);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points
    .map(([x, y]) => `${((x - x0) / (x1 - x0)) * 300},${78 - (y / y1) * 70}`)
    .join(" "));
  svg.appendChild(line);
  const t = document.createElementNS("http://www.w3.org/2000/svg", "text");
  t.setAttribute("x", "2");
  t.setAttribute("y", "9");
  t.textContent = `max ${label(y1)}`;
  svg.appendChild(t);
  svg.dataset.points = String(points.length);
}

async function refreshCharts() {
  try {
    const cpu = await api("/v1/metrics?series=host.cpu&since=3600");
    draw($("#chart-cpu"), cpu.points, (v) => `${v.toFixed(1)}%`);
    const mem = await api("/v1/metrics?series=host.mem_used&since=3600");
    draw($("#chart-mem"), mem.points, bytes);
    const series = await api("/v1/series");
    const sums = new Map();
    for (const s of series.filter((s) => s.startsWith("route.") && s.endsWith(".rps"))) {
      const r = await api(`/v1/metrics?series=${encodeURIComponent(s)}&since=3600`);
      for (const [t, v] of r.points) sums.set(t, (sums.get(t) || 0) + v);
    }
    draw($("#chart-rps"), [...sums.entries()].sort((a, b) => a[0] - b[0]), (v) => v.toFixed(1));
  } catch (e) {
    /* the next refresh tries again */
  }
}

function followEvents() {
  const list = $("#events");
  const es = new EventSource("/v1/events/stream");
  es.onmessage = (m) => {
    const e = JSON.parse(m.data);
    const li = document.createElement("li");
    li.dataset.kind = e.kind;
    const time = new Date(e.ts_ms).toLocaleTimeString();
    li.textContent = `${time} ${e.unit || "grove"} ${e.kind}: ${e.message}`;
    list.prepend(li);
    while (list.children.length > 200) list.lastChild.remove();
    refreshUnits();
  };
}

let logSource = null;
function followLog(unit) {
  if (logSource) logSource.close();
  const pre = $("#log");
  pre.textContent = "";
  logSource = new EventSource(`/v1/logs/stream?unit=${encodeURIComponent(unit)}&lines=200`);
  logSource.onmessage = (m) => {
    const l = JSON.parse(m.data);
    pre.textContent += `${l.line ?? `${new Date().toISOString()} ${l.stream} ${l.text}`}\n`;
    if (pre.textContent.length > 200000) pre.textContent = pre.textContent.slice(-150000);
    pre.scrollTop = pre.scrollHeight;
  };
}

$("#log-unit").addEventListener("change", (e) => followLog(e.target.value));
(async function main() {
  try {
    const recent = await api("/v1/events?limit=50");
    // The store answers oldest first; the feed shows the newest on top.
    for (const e of recent.slice().reverse()) {
      const li = document.createElement("li");
      li.dataset.kind = e.kind;
      li.textContent = `${new Date(e.ts_ms).toLocaleTimeString()} ${e.unit || "grove"} ${e.kind}: ${e.message}`;
      $("#events").appendChild(li);
    }
  } catch (e) { /* shown as offline by refreshUnits */ }
  await refreshUnits();
  followEvents();
  refreshCharts();
  setInterval(refreshUnits, 5000);
  setInterval(refreshCharts, 10000);
})();
