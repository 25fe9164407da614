// The viewer's page: login, folder browser, file tree, attributes, the default plot,
// live updates of growing files, and the view in the address (#file=...&path=...).
import * as api from "./api.js";
import { el } from "./api.js";
import { FileModel, fmt, formatShape, markSelected, renderAttributes, renderTree } from "./tree.js";
import { ImageView } from "./image.js";
import { LineView } from "./line.js";

const $ = (id) => document.getElementById(id);
const KEYS = ["q", "folder", "file", "path", "frame", "cmap", "scale", "auto", "vmin", "vmax", "view", "roi", "line", "sum", "follow", "logx", "logy", "tool", "origin", "draw"];

let colormaps = ["viridis"];
let state = {};
let model = null;
let view = null;
let watcher = null;

function defaults() {
  return { frame: 0, cmap: "viridis", scale: "linear", auto: "0.5,99.5", view: null, roi: null, line: null, sum: null, follow: false, tool: "zoom", origin: "lower" };
}

/** The state from the address: numbers and lists parsed, unknown keys ignored. */
function readAddress() {
  const q = new URLSearchParams(location.hash.replace(/^#/, ""));
  const s = defaults();
  for (const k of KEYS) {
    if (!q.has(k)) continue;
    const v = q.get(k);
    if (k === "frame") s.frame = Math.max(0, parseInt(v, 10) || 0);
    else if (k === "view" || k === "roi" || k === "line") { const a = v.split(",").map(Number); s[k] = a.length === 4 && a.every(Number.isFinite) ? a : null; }
    else if (k === "vmin" || k === "vmax") s[k] = Number.isFinite(+v) ? +v : undefined;
    else if (k === "follow" || k === "logx" || k === "logy") s[k] = v === "1";
    else s[k] = v;
  }
  return s;
}

function writeAddress() {
  const q = {};
  const d = defaults();
  for (const k of KEYS) {
    let v = state[k];
    if (v === undefined || v === null || v === false || v === "" || v === d[k]) continue;
    if (Array.isArray(v)) v = v.map((x) => +(+x).toFixed(3)).join(",");
    if (v === true) v = 1;
    q[k] = v;
  }
  const hash = "#" + api.query(q);
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

function status(message) { $("status").textContent = message || ""; }

function showLogin(message) {
  $("main").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("user").focus();
}

async function start() {
  api.onUnauthorized(() => showLogin("Your session has ended: log in again."));
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api.login($("user").value, $("password").value);
      $("password").value = "";
      await enter();
    } catch (e) {
      $("login-error").textContent = e.status === 401 ? "Wrong user name or password." : e.message;
    }
  });
  $("logout").addEventListener("click", async () => {
    try { await api.logout(); } catch (e) { /* gone already */ }
    stopWatching();
    showLogin("Logged out.");
  });
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("search").value.trim();
    if (!q) return;
    state = defaults(); state.q = q; writeAddress(); showSearch(q);
  });
  $("home").addEventListener("click", (ev) => { ev.preventDefault(); state = defaults(); writeAddress(); showFolder("/"); });
  window.addEventListener("hashchange", () => { const s = readAddress(); if (s.file !== state.file || s.folder !== state.folder || s.q !== state.q) enter(); });
  try {
    await enter();
  } catch (e) {
    if (e.status === 401) showLogin(); else status(e.message);
  }
}

async function enter() {
  const who = await api.session();
  if (!who.authenticated) { showLogin(); return; }
  colormaps = who.colormaps || colormaps;
  $("login").hidden = true;
  $("main").hidden = false;
  $("who").textContent = who.anonymous ? "anonymous" : who.user;
  $("logout").hidden = false;
  $("search-form").hidden = !who.catalog;
  state = readAddress();
  if (state.q && who.catalog) { $("search").value = state.q; await showSearch(state.q); }
  else if (state.file) await openFile(state.file, state.path);
  else await showFolder(state.folder || "/");
}

function crumbs(path, file) {
  const nav = $("crumbs");
  nav.replaceChildren();
  const parts = path.split("/").filter(Boolean);
  let acc = "/";
  const root = el("a", "/"); root.href = "#"; root.addEventListener("click", (e) => { e.preventDefault(); goFolder("/"); });
  nav.append(root);
  for (const [i, p] of parts.entries()) {
    acc += p + "/";
    const target = acc;
    const isFile = file && i === parts.length - 1;
    const a = el(isFile ? "span" : "a", p + (isFile ? "" : "/"));
    if (!isFile) { a.href = "#"; a.addEventListener("click", (e) => { e.preventDefault(); goFolder(target); }); }
    nav.append(a);
  }
}

function goFolder(folder) { state = defaults(); state.folder = folder; writeAddress(); showFolder(folder); }

function size(n) {
  if (n === undefined) return "";
  const u = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + u[i];
}

async function showFolder(folder) {
  stopWatching();
  if (view) { view.destroy(); view = null; }
  model = null;
  crumbs(folder, false);
  $("tree").replaceChildren();
  $("plot").replaceChildren();
  $("attrs").replaceChildren();
  const box = $("folder");
  box.replaceChildren();
  const listing = await api.listFolder(folder);
  const table = el("table", null, "folder");
  table.id = "folder-table";
  const head = el("tr");
  head.append(el("th", "name"), el("th", "size"), el("th", "modified"));
  table.append(head);
  for (const d of listing.domains) {
    const tr = el("tr", null, d.class);
    const name = d.name.split("/").filter(Boolean).pop() + (d.class === "folder" ? "/" : "");
    const a = el("a", name);
    a.href = "#";
    a.addEventListener("click", (e) => {
      e.preventDefault();
      if (d.class === "folder") goFolder(d.name.endsWith("/") ? d.name : d.name + "/");
      else { state = defaults(); state.file = d.name; writeAddress(); openFile(d.name); }
    });
    const td = el("td"); td.append(a);
    tr.append(td, el("td", size(d.size)), el("td", new Date(d.lastModified * 1000).toLocaleString()));
    table.append(tr);
  }
  if (!listing.domains.length) box.append(el("p", "No HDF5 files or folders here."));
  box.append(table);
  status("");
}

/** The catalog's answer to `q` (only files this user may read), page by page. */
async function showSearch(q) {
  stopWatching();
  if (view) { view.destroy(); view = null; }
  model = null;
  crumbs("/", false);
  $("tree").replaceChildren();
  $("plot").replaceChildren();
  $("attrs").replaceChildren();
  const box = $("folder");
  box.replaceChildren(el("p", "Catalog: " + q, "search-title"));
  const table = el("table", null, "folder results");
  table.id = "search-results";
  const head = el("tr");
  const columns = ["sample", "temperature", "start_time", "title"];
  head.append(el("th", "file"), el("th", "entry"), ...columns.map((c) => el("th", c.replace("_", " "))));
  table.append(head);
  box.append(table);
  let cursor = null, shown = 0;
  const more = el("button", "more", "more");
  more.type = "button";
  async function page() {
    status("searching …");
    let answer;
    try { answer = await api.searchCatalog(q, cursor); } catch (e) { status(e.message); more.remove(); if (!shown) box.append(el("p", e.message, "search-error")); return; }
    for (const e of answer.entries) {
      const tr = el("tr", null, "domain");
      const a = el("a", e.domain);
      a.href = "#";
      a.addEventListener("click", (ev) => { ev.preventDefault(); state = defaults(); state.file = e.domain; writeAddress(); openFile(e.domain); });
      const td = el("td"); td.append(a);
      const f = e.fields || {};
      const cell = (v) => v === undefined || v === null ? "" : (typeof v === "object" ? (v.value !== undefined ? `${fmt(v.value)} ${v.units || ""}` : JSON.stringify(v)) : String(v));
      tr.append(td, el("td", e.entry || ""), ...columns.map((c) => el("td", cell(f[c]))));
      table.append(tr);
      shown++;
    }
    cursor = answer.next;
    if (cursor) box.append(more); else more.remove();
    status(shown ? `${shown} entr${shown === 1 ? "y" : "ies"}${cursor ? " (more below)" : ""}` : "");
    if (!shown) box.append(el("p", "Nothing in the catalog matches (or nothing you may read).", "search-empty"));
  }
  more.addEventListener("click", page);
  await page();
}

async function openFile(domain, path) {
  stopWatching();
  $("folder").replaceChildren();
  crumbs(domain, true);
  status("opening " + domain + " …");
  model = new FileModel(domain, await api.openDomain(domain));
  renderTree(model, $("tree"), (p) => select(p, true));
  if (!model.complete) status("this file has too many objects to list at once");
  let info = null;
  try { info = await api.plotInfo(domain, path || "/"); } catch (e) { if (path) status(e.message); }
  const shown = path || (info && info.signal && (info.group || info.signal.path)) || "/";
  markSelected($("tree"), shown);
  renderAttributes(model, shown, $("attrs"));
  showPlot(info);
  watch(domain);
  if (!$("status").textContent.startsWith("this file")) status("");
}

async function select(path, user) {
  if (user) {
    const keep = { file: state.file, cmap: state.cmap, scale: state.scale, auto: state.auto, origin: state.origin, draw: state.draw };
    state = Object.assign(defaults(), keep, { path });
    writeAddress();
  }
  markSelected($("tree"), path);
  renderAttributes(model, path, $("attrs"));
  let info = null;
  const node = model.node(path);
  if (node && node.kind === "field" && node.obj && node.obj.type && /INTEGER|FLOAT/.test(node.obj.type.class)) {
    // min, max and mean of the whole field, on request (it reads every value)
    const button = el("button", "summary (min, max, mean)", "summary");
    button.type = "button";
    button.id = "summary";
    button.addEventListener("click", async () => {
      try {
        const s = await api.summary(model.domain, path);
        const out = el("p", `min ${fmt(s.min)}, max ${fmt(s.max)}, mean ${fmt(s.mean)} over ${s.count} values`, "summary-text");
        out.id = "summary-text";
        button.replaceWith(out);
      } catch (e) { status(e.message); }
    });
    $("attrs").append(button);
  }
  if (node && (node.kind !== "field" || (node.obj && node.obj.type && /INTEGER|FLOAT/.test(node.obj.type.class)))) {
    try { info = await api.plotInfo(model.domain, path); } catch (e) { /* not plottable */ }
  }
  showPlot(info);
}

function showPlot(info) {
  if (view) { view.destroy(); view = null; }
  const box = $("plot");
  box.replaceChildren();
  if (!info || !info.signal) return;
  const title = el("h2", info.title || info.group || info.signal.path, "plot-title");
  const body = el("div");
  box.append(title, body);
  const dims = info.signal.shape.filter((n) => n !== 1).length;
  const ctx = { info, model, domain: model.domain, state, colormaps, origin: state.origin, status, onState: writeAddress };
  if (dims >= 2) view = new ImageView(body, ctx);
  else if (dims === 1) view = new LineView(body, ctx);
  else { body.append(el("p", "a single value: " + info.signal.path)); return; }
  if (view.paint) view.paint();
  box.dataset.kind = dims >= 2 ? "image" : "line";
}

/** Follows the open file: each change re-reads the plot's shape (the view stays). */
function watch(domain) {
  stopWatching();
  const source = new EventSource("/nxlua/watch?" + api.query({ domain }));
  let first = true, running = false, again = false;
  const refresh = async () => {
    if (running) { again = true; return; }
    running = true;
    do {
      again = false;
      try {
        if (!view || !view.info) break;
        const info = await api.plotInfo(domain, view.info.group || view.info.signal.path);
        if (view) await view.grew(info);
        // the tree shows the signal's new shape too
        for (const li of $("tree").querySelectorAll("li")) {
          const shape = li.dataset.path === info.signal.path && li.querySelector(":scope > .node > .shape");
          if (shape) shape.textContent = formatShape(info.signal.shape);
        }
      } catch (e) { status(e.message); }
    } while (again);
    running = false;
  };
  source.addEventListener("change", () => { if (first) first = false; else refresh(); });
  watcher = source;
}

function stopWatching() { if (watcher) { watcher.close(); watcher = null; } }

start();
