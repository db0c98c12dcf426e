// Spool's dashboard: a page over the same /v1 routes any client uses,
// with the token the user signs in with (kept in this tab's
// sessionStorage). Every value from the server goes into the page as
// text (textContent), never as HTML: job outputs, logs and names are
// tenants' data.
"use strict";

const state = { token: sessionStorage.getItem("spool-token") || "", timer: null, tenant: sessionStorage.getItem("spool-tenant") || "", ticket: 0 };

// A view's answers are dropped once the user moved to another page: a
// slow answer never replaces the page shown now.
class Stale extends Error {}

// ---- small helpers ------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    // Through the CSSOM: the page's policy refuses style attributes.
    else if (k === "style") el.style.cssText = v;
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const main = () => document.getElementById("main");
function show(...nodes) { main().replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false)); }
function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text; t.hidden = false;
  clearTimeout(toast.t); toast.t = setTimeout(() => { t.hidden = true; }, 4000);
}

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || ("HTTP " + status));
    this.status = status; this.kind = e.kind; this.field = e.field;
  }
}

async function api(path, opts = {}) {
  const ticket = state.ticket;
  const headers = Object.assign({ "Authorization": "Bearer " + state.token }, opts.headers || {});
  let body = opts.body;
  if (body !== undefined && !(body instanceof ArrayBuffer) && typeof body !== "string") {
    body = JSON.stringify(body); headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, { method: opts.method || "GET", headers, body });
  const text = await r.text();
  if (ticket !== state.ticket) throw new Stale();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (r.status === 401) { signOut("Your token was refused: " + ((json && json.error && json.error.message) || "unauthorized")); throw new ApiError(401, json); }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

function when(us) {
  if (!us) return "—";
  return new Date(us / 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}
function secs(s) {
  if (s === null || s === undefined) return "—";
  if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
  if (s < 1) return (s * 1e3).toFixed(1) + " ms";
  return s.toFixed(2) + " s";
}
function pct(x) { return x === null || x === undefined ? "—" : (x * 100).toFixed(1) + "%"; }
const statusTag = (s) => h("span", { class: "status " + (s || "") }, s || "unknown");
const short = (d) => (d || "").slice(0, 12);
function tenantQuery(prefix) { return state.operator && state.tenant ? prefix + "tenant=" + encodeURIComponent(state.tenant) : ""; }

function table(headers, rows, id) {
  return h("table", { id },
    h("thead", {}, h("tr", {}, headers.map((c) => h("th", { class: c.num ? "num" : null }, c.label || c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "nothing here"))));
}
const td = (v, num) => h("td", { class: num ? "num" : null }, v);

function errorBox(e) { return h("p", { class: "error", id: "error" }, e.message); }

function every(ms, fn) {
  clearInterval(state.timer);
  state.timer = setInterval(() => { if (!document.hidden) fn().catch(() => {}); }, ms);
}

// ---- sign in --------------------------------------------------------------

function signOut(why) {
  state.token = ""; sessionStorage.removeItem("spool-token");
  clearInterval(state.timer);
  document.getElementById("nav").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("who").textContent = "";
  renderSignIn(why);
}

function renderSignIn(why) {
  const input = h("input", { id: "token", type: "password", placeholder: "spool_…", autocomplete: "off" });
  const form = h("form", { class: "signin", id: "sign-in-form", onsubmit: async (ev) => {
    ev.preventDefault();
    state.token = input.value.trim();
    try {
      await whoAmI();
      sessionStorage.setItem("spool-token", state.token);
      location.hash = "#/overview"; route();
    } catch (e) { msg.textContent = e.message; }
  } },
  h("h1", {}, "Sign in"),
  h("p", { class: "muted" }, "Paste a token made with ", h("code", {}, "spool tokens create"), ". It stays in this tab only."),
  input, h("button", { id: "sign-in", type: "submit" }, "Sign in"));
  const msg = h("p", { class: "error", id: "sign-in-error" }, why || "");
  show(form, msg);
}

async function whoAmI() {
  const me = await api("/v1/whoami");
  // An operator's token reaches every tenant; it picks one to look at.
  state.operator = me.tenant === "*";
  const names = state.operator ? (await api("/v1/tenants")).tenants.map((x) => x.tenant) : [me.tenant];
  if (state.operator && !state.tenant) state.tenant = names[0] || "default";
  document.getElementById("nav").hidden = false;
  document.getElementById("sign-out").hidden = false;
  document.getElementById("who").textContent = state.operator ? "operator · tenant " + state.tenant : "tenant " + (names[0] || "?");
  state.tenants = names;
  return names;
}

// ---- views ---------------------------------------------------------------

function chart(id, minutes, series, opts) {
  const W = 600, H = 180, L = 44, B = 20;
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values.filter((v) => v !== null)));
  const n = minutes.length;
  const x = (i) => L + (i + 0.5) * ((W - L - 4) / n);
  const y = (v) => H - B - (v / max) * (H - B - 8);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("id", id);
  const add = (tag, attrs, text) => {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.append(el); return el;
  };
  add("line", { x1: L, y1: H - B, x2: W, y2: H - B, stroke: "#d0d5dd" });
  add("text", { x: L - 4, y: 12, "text-anchor": "end", "font-size": 10, fill: "#667085" }, opts.fmt(max));
  add("text", { x: L - 4, y: H - B, "text-anchor": "end", "font-size": 10, fill: "#667085" }, "0");
  add("text", { x: L, y: H - 4, "font-size": 10, fill: "#667085" }, "−" + n + " min");
  add("text", { x: W - 4, y: H - 4, "text-anchor": "end", "font-size": 10, fill: "#667085" }, "now");
  let points = 0;
  for (const s of series) {
    if (opts.bars) {
      const bw = Math.max(1, (W - L - 4) / n - 1);
      s.values.forEach((v, i) => {
        if (!v) return;
        const base = s.stackOn ? s.stackOn[i] || 0 : 0;
        add("rect", { x: x(i) - bw / 2, y: y(base + v), width: bw, height: y(base) - y(base + v), fill: s.color, "data-minute": minutes[i] });
        points++;
      });
    } else {
      const pts = s.values.map((v, i) => (v === null ? null : [x(i), y(v)])).filter(Boolean);
      if (pts.length > 1) add("polyline", { points: pts.map((p) => p.join(",")).join(" "), fill: "none", stroke: s.color, "stroke-width": 1.6 });
      // A dot per minute with runs: one busy minute is still seen.
      for (const [px, py] of pts) add("circle", { cx: px, cy: py, r: 2.5, fill: s.color });
      points += pts.length;
    }
  }
  svg.setAttribute("data-points", points);
  return h("div", { class: "chart" }, h("div", {}, h("strong", {}, opts.title)),
    svg, h("div", { class: "legend" }, series.map((s) => [h("i", { style: "background:" + s.color }), s.name])));
}

async function viewOverview() {
  const [t, cache] = await Promise.all([api("/v1/stats/timeline?minutes=60" + tenantQuery("&")), api("/v1/cache/stats")]);
  const tot = t.total, w = tot.window;
  const jobs = w.ok + w.retried + w.dead;
  const hits = cache.plugins.filter((p) => !state.operator || p.plugin.startsWith(t.tenant + "/"));
  const hitSum = hits.reduce((a, p) => a + p.hit_memory + p.hit_redis, 0);
  const lookups = hitSum + hits.reduce((a, p) => a + p.miss, 0);
  const cards = h("div", { class: "cards", id: "summary" },
    [[`attempts, last hour (${(jobs / 3600).toFixed(2)}/s)`, String(jobs), "rate"], ["failure rate", pct(jobs ? (w.retried + w.dead) / jobs : null), "failure"],
     ["p50 run", secs(w.p50), "p50"], ["p95 run", secs(w.p95), "p95"], ["p99 run", secs(w.p99), "p99"],
     ["cache hit ratio", pct(lookups ? hitSum / lookups : null), "hits"]]
      .map(([k, v, id]) => h("div", { class: "card", id: "card-" + id }, h("div", { class: "v" }, v), h("div", { class: "k" }, k))));
  const charts = h("div", { class: "charts" },
    chart("chart-jobs", t.minutes, [
      { name: "succeeded", color: "#12b76a", values: tot.ok },
      { name: "failed", color: "#f04438", values: tot.failed, stackOn: tot.ok },
    ], { title: "Attempts per minute", bars: true, fmt: (v) => String(Math.round(v)) }),
    chart("chart-latency", t.minutes, [
      { name: "p50", color: "#3563e9", values: tot.p50 },
      { name: "p95", color: "#f79009", values: tot.p95 },
      { name: "p99", color: "#f04438", values: tot.p99 },
    ], { title: "Run time", fmt: secs }));
  const rows = Object.entries(t.plugins).map(([name, s]) => {
    const c = hits.find((p) => p.plugin === t.tenant + "/" + name) || {};
    return h("tr", {}, td(name), td(s.window.ok, 1), td(s.window.retried + s.window.dead, 1), td(secs(s.window.p50), 1), td(secs(s.window.p95), 1), td(secs(s.window.p99), 1), td(pct(c.hit_ratio), 1));
  });
  show(h("h1", {}, "Overview · " + t.tenant), cards, h("h2", {}, "Last hour"), charts,
    h("h2", {}, "Per plugin"), table(["plugin", { label: "ok", num: 1 }, { label: "failed", num: 1 }, { label: "p50", num: 1 }, { label: "p95", num: 1 }, { label: "p99", num: 1 }, { label: "cache hits", num: 1 }], rows, "per-plugin"),
    operatorTenantPicker());
  // Workers flush their counts every 5 s: so does the page (not while
  // the operator types a tenant's name).
  every(5000, async () => {
    if (document.activeElement && document.activeElement.id === "tenant-pick") return;
    await viewOverview();
  });
}

function operatorTenantPicker() {
  if (!state.operator) return null;
  const input = h("input", { id: "tenant-pick", value: state.tenant, list: "tenant-names" });
  return h("form", { class: "row", onsubmit: (ev) => { ev.preventDefault(); state.tenant = input.value.trim() || "default"; sessionStorage.setItem("spool-tenant", state.tenant); document.getElementById("who").textContent = "operator · tenant " + state.tenant; route(); } },
    h("span", { class: "muted" }, "Operator: show tenant"), input,
    h("datalist", { id: "tenant-names" }, (state.tenants || []).map((n) => h("option", { value: n }))), h("button", {}, "Show"));
}

const STATUSES = ["queued", "running", "delayed", "succeeded", "dead"];

async function viewJobs(params) {
  const status = params.get("status") || "succeeded";
  const find = h("input", { id: "job-id", placeholder: "job id" });
  const form = h("form", { class: "row", onsubmit: (ev) => { ev.preventDefault(); if (find.value.trim()) location.hash = "#/job/" + encodeURIComponent(find.value.trim()); } },
    find, h("button", { id: "find" }, "Find"));
  const tabs = h("div", { class: "tabs" }, STATUSES.map((s) => h("button", { class: s === status ? "on" : null, id: "tab-" + s, onclick: () => { location.hash = "#/jobs?status=" + s; } }, s)));
  const holder = h("div", { id: "job-list" });
  show(h("h1", {}, "Jobs"), form, tabs, holder, operatorTenantPicker());
  const load = async () => {
    const r = await api("/v1/jobs?status=" + status + "&limit=100" + tenantQuery("&"));
    holder.replaceChildren(table(["id", "plugin", "status", { label: "attempts", num: 1 }, "enqueued", "finished"],
      r.jobs.map((j) => h("tr", { "data-job": j.id }, td(h("a", { href: "#/job/" + encodeURIComponent(j.id) }, j.id)), td(j.plugin || "—"), td(statusTag(j.status)), td(j.attempts, 1), td(when(j.enqueued_us)), td(when(j.finished_us)))), "jobs-table"));
  };
  await load();
  every(2000, load);
}

async function viewJob(id) {
  const holder = h("div", { id: "job" });
  show(h("p", {}, h("a", { href: "#/jobs" }, "← Jobs")), holder);
  const load = async () => {
    let r;
    try { r = await api("/v1/jobs/" + encodeURIComponent(id)); } catch (e) { holder.replaceChildren(errorBox(e)); clearInterval(state.timer); return; }
    const p = r.progress;
    const facts = table(["field", "value"], [
      ["status", statusTag(r.status)], ["plugin", r.plugin], ["attempts", `${r.attempts} of ${r.max_attempts}`],
      ["version", short(r.version)], ["worker", r.worker || "—"], ["enqueued", when(r.enqueued_us)], ["started", when(r.started_us)], ["finished", when(r.finished_us)],
      ["progress", p ? h("span", {}, h("span", { class: "bar" }, h("span", { style: `width:${p.total ? Math.min(100, 100 * p.done / p.total) : 0}%` })), ` ${p.done} of ${p.total || "?"}`) : "—"],
      ["timings", r.timings ? `instantiate ${r.timings.instantiate} µs · run ${r.timings.run} µs` : "—"],
      ["cache", r.cache || "—"], ["payload", r.payload_bytes + " bytes"],
    ].map(([k, v]) => h("tr", {}, td(k), td(v))), "job-facts");
    const out = r.output !== undefined && r.output !== null ? r.output : r.output_base64 ? "(base64) " + r.output_base64 : null;
    const logs = (r.logs && r.logs.lines) || r.logs || [];
    const logText = Array.isArray(logs) ? logs.map((l) => (l.level ? l.level + " " + l.message : JSON.stringify(l))).join("\n") : JSON.stringify(logs, null, 2);
    const cancel = ["queued", "delayed", "retrying"].includes(r.status)
      ? h("button", { id: "cancel", class: "danger", onclick: async () => { try { await api("/v1/jobs/" + encodeURIComponent(id) + "/cancel", { method: "POST" }); toast("cancelled"); load(); } catch (e) { toast(e.message); } } }, "Cancel")
      : null;
    holder.replaceChildren(h("h1", {}, "Job ", h("code", {}, r.id)), cancel, facts,
      r.error ? [h("h2", {}, "Error"), h("pre", { id: "job-error" }, JSON.stringify(r.error, null, 2))] : null,
      h("h2", {}, "Output"), h("pre", { id: "job-output" }, out === null ? "—" : out.length > 4096 ? out.slice(0, 4096) + "\n… (" + out.length + " characters)" : out),
      h("h2", {}, "Logs"), h("pre", { id: "job-logs" }, logText || "—"));
    if (["succeeded", "dead", "cancelled"].includes(r.status)) clearInterval(state.timer);
  };
  await load();
  every(1000, load);
}

async function viewDead() {
  // An operator's page is about the tenant picked, never every tenant.
  const scope = tenantQuery("&");
  const r = await api("/v1/dead?limit=200" + scope);
  const whose = state.operator ? "tenant " + state.tenant : "this tenant";
  const act = (what, body) => async () => {
    if (what === "purge" && !confirm(`Delete ${body.all ? "every dead letter of " + whose : "this dead letter"} with its record?`)) return;
    try { const res = await api("/v1/dead/" + what + "?" + scope.slice(1), { method: "POST", body }); toast(what === "retry" ? `retried ${res.moved.length}` : `purged ${res.purged}`); viewDead(); } catch (e) { toast(e.message); }
  };
  const rows = r.entries.map((d) => h("tr", { "data-job": d.id }, td(h("a", { href: "#/job/" + encodeURIComponent(d.id) }, d.id)), td(d.tenant), td((d.record && d.record.plugin) || "—"),
    td(when(d.died_us)), td((d.record && d.record.error && d.record.error.message) || "—"),
    td(h("button", { class: "retry", onclick: act("retry", { ids: [d.id] }) }, "Retry"))));
  show(h("h1", {}, `Dead letters (${r.total})`),
    h("div", { class: "row" }, h("button", { id: "retry-all", onclick: act("retry", { all: true }) }, "Retry all"), " ", h("button", { id: "purge-all", class: "danger", onclick: act("purge", { all: true }) }, "Purge all")),
    table(["id", "tenant", "plugin", "died", "error", ""], rows, "dead-table"));
}

async function viewPlugins() {
  const r = await api("/v1/plugins");
  const rows = r.plugins.map((p) => h("tr", { "data-plugin": p.name }, td(h("a", { href: "#/plugin/" + encodeURIComponent(p.name) }, p.name)), td(h("code", {}, short(p.version))), td(p.source), td(p.sdk || "—"), td(`${p.workers.length} of ${r.workers}`, 1), td(when(p.loaded_us))));
  const name = h("input", { id: "deploy-name", placeholder: "name (e.g. resize)" });
  const file = h("input", { id: "deploy-file", type: "file", accept: ".wasm" });
  const manifest = h("textarea", { id: "deploy-manifest", rows: 2, cols: 40, placeholder: "manifest (TOML, optional)" });
  const deploy = h("form", { class: "row", id: "deploy-form", onsubmit: async (ev) => {
    ev.preventDefault();
    if (!file.files.length || !name.value.trim()) { toast("pick a file and a name"); return; }
    const bytes = await file.files[0].arrayBuffer();
    const path = "/v1/plugins/" + encodeURIComponent(name.value.trim()) + "/deploy";
    try {
      const res = manifest.value.trim()
        ? await api(path, { method: "POST", body: { component_base64: b64(bytes), manifest: manifest.value } })
        : await api(path, { method: "POST", body: bytes, headers: { "Content-Type": "application/wasm" } });
      toast(`${res.name}: deployed ${short(res.version.digest)}`); viewPlugins();
    } catch (e) { toast(e.message); }
  } }, name, file, manifest, h("button", { id: "deploy" }, "Deploy"));
  const refused = r.refused.map((x) => h("tr", {}, td(x.worker), td(x.path), td(x.why)));
  show(h("h1", {}, "Plugins"), table(["plugin", "version", "source", "sdk", { label: "workers", num: 1 }, "loaded"], rows, "plugins-table"),
    h("h2", {}, "Deploy"), deploy,
    h("h2", {}, "Refused"), table(["worker", "file", "why"], refused, "refused-table"));
}

function b64(buf) {
  let s = ""; const bytes = new Uint8Array(buf);
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

async function viewPlugin(name) {
  const r = await api("/v1/plugins/" + encodeURIComponent(name) + "/history");
  const back = (to) => async () => {
    try { const res = await api("/v1/plugins/" + encodeURIComponent(name) + "/rollback", { method: "POST", body: to ? { to } : {} }); toast(`rolled back from ${short(res.from.digest)} to ${short(res.to.digest)}`); viewPlugin(name); } catch (e) { toast(e.message); }
  };
  const rows = r.versions.map((v, i) => h("tr", { "data-version": v.digest }, td(v.digest === r.current && i === r.versions.findIndex((x) => x.digest === r.current) ? "▶" : ""), td(h("code", {}, short(v.digest))), td(v.action), td(when(v.at_us)), td(v.size, 1), td(v.by),
    td(v.digest !== r.current ? h("button", { class: "rollback-to", onclick: back(v.digest) }, "Serve this") : null)));
  show(h("p", {}, h("a", { href: "#/plugins" }, "← Plugins")), h("h1", {}, r.name),
    h("p", {}, r.pinned ? ["Pinned at ", h("code", {}, short(r.pinned.digest)), " on every worker. "] : "Served from the workers' directories. ",
      h("button", { id: "rollback", onclick: back(null) }, "Roll back"), " ",
      r.pinned ? h("button", { id: "unpin", onclick: async () => { try { await api("/v1/plugins/" + encodeURIComponent(name) + "/unpin", { method: "POST" }); toast("unpinned"); viewPlugin(name); } catch (e) { toast(e.message); } } }, "Unpin") : null),
    table(["", "version", "action", "at", { label: "bytes", num: 1 }, "by", ""], rows, "history-table"));
}

async function viewWorkers() {
  const r = await api("/v1/workers");
  const now = Date.now() * 1000;
  const rows = r.workers.map((w) => h("tr", { "data-worker": w.worker }, td(w.worker), td(w.started_us ? secs((now - w.started_us) / 1e6) : "—"), td(when(w.reported_us)), td(w.in_flight, 1),
    td(w.plugins.map((p) => p.name + " " + short(p.version)).join(", ") || "—"), td(w.wedged.length ? String(w.wedged.length) : "0", 1)));
  show(h("h1", {}, "Workers"), table(["worker", "up", "last report", { label: "in flight", num: 1 }, "versions served", { label: "wedged", num: 1 }], rows, "workers-table"));
}

async function viewCache() {
  const r = await api("/v1/cache/stats");
  const rows = r.plugins.map((p) => h("tr", {}, td(p.plugin), td(p.hit_memory, 1), td(p.hit_redis, 1), td(p.miss, 1), td(p.bypass, 1), td(pct(p.hit_ratio), 1)));
  const usage = Object.entries(r.tenants).map(([t, u]) => h("tr", {}, td(t), td(u.entries, 1), td(u.bytes, 1)));
  const plugin = h("input", { id: "purge-plugin", placeholder: "plugin (empty: all of the tenant)" });
  const purge = h("form", { class: "row", onsubmit: async (ev) => {
    ev.preventDefault();
    const body = plugin.value.trim() ? { plugin: plugin.value.trim() } : (state.operator ? { tenant: state.tenant } : { all: true });
    if (!confirm("Purge cached results of " + (body.plugin || body.tenant || "this tenant") + "?")) return;
    try { const res = await api("/v1/cache/purge", { method: "POST", body }); toast(`purged ${res.deleted} (${res.scope})`); viewCache(); } catch (e) { toast(e.message); }
  } }, plugin, h("button", { id: "purge", class: "danger" }, "Purge"));
  show(h("h1", {}, "Cache"), table(["plugin", { label: "hit memory", num: 1 }, { label: "hit redis", num: 1 }, { label: "miss", num: 1 }, { label: "bypass", num: 1 }, { label: "hit ratio", num: 1 }], rows, "cache-table"),
    h("h2", {}, "Stored"), table(["tenant", { label: "entries", num: 1 }, { label: "bytes", num: 1 }], usage), h("h2", {}, "Purge"), purge);
}

async function viewTenants() {
  const r = await api("/v1/tenants");
  const rows = r.tenants.map((t) => h("tr", { "data-tenant": t.tenant }, td(h("a", { href: "#/tenant/" + encodeURIComponent(t.tenant) }, t.tenant)), td(t.queued, 1), td(t.running, 1), td(t.delayed, 1), td(t.dead_letters, 1), td(t.paused ? "paused" : "")));
  show(h("h1", {}, "Tenants"), table(["tenant", { label: "queued", num: 1 }, { label: "running", num: 1 }, { label: "delayed", num: 1 }, { label: "dead", num: 1 }, ""], rows, "tenants-table"));
}

async function viewTenant(name) {
  const r = await api("/v1/tenants/" + encodeURIComponent(name));
  const rows = Object.entries(r.quotas).map(([k, q]) => h("tr", {}, td(k), td(q.value === 0 ? "unlimited" : q.value, 1), td(q.from), td(q.used === undefined ? "—" : q.used, 1)));
  show(h("p", {}, h("a", { href: "#/tenants" }, "← Tenants")), h("h1", {}, "Tenant " + r.tenant), table(["quota", { label: "value", num: 1 }, "from", { label: "used", num: 1 }], rows, "quotas-table"));
}

// ---- routing ---------------------------------------------------------------

async function route() {
  clearInterval(state.timer);
  if (!state.token) return renderSignIn();
  if (state.operator === undefined) {
    try { await whoAmI(); } catch (e) { return; }
  }
  const ticket = ++state.ticket;
  const [path, query] = (location.hash.slice(1) || "/overview").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  // Ids and names never contain these; in a path they would climb out.
  if (parts.slice(1).some((p) => { const d = decodeURIComponent(p); return d === "." || d === ".." || d.includes("/") && parts[0] !== "plugin"; })) {
    return show(errorBox(new Error("not a job id or plugin name")));
  }
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("on", a.getAttribute("href") === "#/" + parts[0] || (parts[0] === "job" && a.getAttribute("href") === "#/jobs"));
  const views = {
    overview: () => viewOverview(), jobs: () => viewJobs(params), job: () => viewJob(decodeURIComponent(parts[1] || "")),
    dead: () => viewDead(), plugins: () => viewPlugins(), plugin: () => viewPlugin(decodeURIComponent(parts[1] || "")),
    workers: () => viewWorkers(), cache: () => viewCache(), tenants: () => viewTenants(), tenant: () => viewTenant(decodeURIComponent(parts[1] || "")),
  };
  const view = views[parts[0]] || views.overview;
  try { await view(); } catch (e) {
    if (e instanceof Stale || ticket !== state.ticket) return;
    if (e.status !== 401) show(errorBox(e));
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-out").addEventListener("click", () => signOut(""));
  route();
});
