// Requests to nxlua serve: the HDF REST routes and the viewer's /nxlua/ routes. Every
// request carries X-NXLua-Viewer (the server refuses cookie-authenticated POSTs without
// it, which a cross-site form cannot send) and the session cookie (same origin only).

export class HTTPError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

const listeners = new Set();
/** Called with no argument when a request finds the session gone (401). */
export function onUnauthorized(f) { listeners.add(f); }

export async function request(url, options = {}) {
  const headers = Object.assign({ "X-NXLua-Viewer": "1" }, options.headers || {});
  const r = await fetch(url, Object.assign({}, options, { headers, credentials: "same-origin", cache: "no-store" }));
  if (!r.ok) {
    let message = r.statusText;
    try { message = (await r.json()).error || message; } catch (e) { /* not JSON */ }
    if (r.status === 401) for (const f of listeners) f();
    throw new HTTPError(r.status, message);
  }
  return r;
}

export async function getJSON(url) { return (await request(url, { headers: { Accept: "application/json" } })).json(); }

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  return q.toString();
}

export const session = () => getJSON("/nxlua/session");

export async function login(user, password) {
  const r = await request("/nxlua/login", {
    method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ user, password }),
  });
  return r.json();
}

export async function logout() { await request("/nxlua/logout", { method: "POST" }); }

export const listFolder = (folder) => getJSON("/domains?" + query({ domain: folder }));
/** A page of catalog entries matching the query language (docs/catalog.md). */
export const searchCatalog = (q, cursor) => getJSON("/nxlua/catalog?" + query({ q, cursor, limit: 100 }));
export const openDomain = (domain) => getJSON("/?" + query({ domain, getobjs: 1 }));
export const plotInfo = (domain, path) => getJSON("/nxlua/plot?" + query({ domain, path }));
export const stats = (params) => getJSON("/nxlua/stats?" + query(params));
export const summary = (domain, path) => getJSON("/nxlua/summary?" + query({ domain, path }));
export const imageURL = (params) => "/nxlua/image?" + query(params);

/** A dataset's values (JSON), optionally a hyperslab "[a:b,c]". */
export async function values(domain, id, select) {
  return (await getJSON(`/datasets/${encodeURIComponent(id)}/value?` + query({ domain, select }))).value;
}

/** The values at points (each a list of indices), in order. */
export async function pointValues(domain, id, points) {
  const r = await request(`/datasets/${encodeURIComponent(id)}/value?` + query({ domain }), {
    method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ points }),
  });
  return (await r.json()).value;
}

/** An element with text (never markup): names and strings from files are data. */
export function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (className) e.className = className;
  return e;
}

/** Text made safe for the few places a library takes HTML (dygraphs' title, labels and
 * legend are set with innerHTML): names from files must stay text there too. */
export function escapeHTML(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
