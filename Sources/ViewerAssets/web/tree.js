// A served file as a tree (from one GET /?domain=D&getobjs=1), its rendering, and the
// attribute table. Everything taken from the file is set with textContent.
import { el } from "./api.js";

/** "H5T_STD_I32LE" -> "int32", strings and compounds by class. */
export function dtypeName(type) {
  if (!type) return "?";
  if (type.class === "H5T_STRING") return "string";
  if (type.class === "H5T_COMPOUND") return "compound";
  if (type.class === "H5T_ENUM") return "enum";
  const m = /^H5T_(STD|IEEE)_([IUF])(\d+)/.exec(type.base || "");
  if (!m) return (type.class || "?").replace(/^H5T_/, "").toLowerCase();
  return { I: "int", U: "uint", F: "float" }[m[2]] + m[3];
}

export function shapeOf(obj) {
  const s = obj && obj.shape;
  if (!s || s.class === "H5S_SCALAR") return [];
  if (s.class === "H5S_NULL") return null;
  return s.dims || [];
}

export function formatShape(shape) {
  if (shape === null) return "empty";
  return shape.length ? shape.join(" × ") : "scalar";
}

/** Attribute value as text: strings as they are, numbers joined, long lists cut. */
export function formatValue(v) {
  if (v === null || v === undefined) return "—";
  if (Array.isArray(v)) {
    const flat = v.flat(Infinity);
    const parts = flat.slice(0, 20).map((x) => (typeof x === "number" ? fmt(x) : String(x)));
    return "[" + parts.join(", ") + (flat.length > 20 ? `, … (${flat.length})` : "") + "]";
  }
  return typeof v === "number" ? fmt(v) : String(v);
}

export function fmt(x) {
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? x.toExponential(4) : String(+x.toPrecision(6));
}

/** The file's objects by path: {path, name, kind: group|field|link, id, obj, target}. */
export class FileModel {
  constructor(domain, answer) {
    this.domain = domain;
    this.objects = answer.domain_objs || {};
    this.complete = !!answer.domain_objs;
    this.byPath = new Map();
    const rootId = answer.root;
    const walk = (path, id, seen) => {
      const obj = this.objects[id];
      const isGroup = id.startsWith("g-");
      const node = { path, name: path === "/" ? "/" : path.split("/").pop(), kind: isGroup ? "group" : "field", id, obj, children: [] };
      this.byPath.set(path, node);
      if (!isGroup || !obj || seen.has(id)) return node;
      const inner = new Set(seen).add(id);
      for (const [name, link] of Object.entries(obj.links || {})) {
        const childPath = (path === "/" ? "" : path) + "/" + name;
        if (link.class === "H5L_TYPE_HARD") {
          node.children.push(walk(childPath, link.id, inner));
        } else {
          const target = link.class === "H5L_TYPE_EXTERNAL" ? `${link.h5domain}:${link.h5path}` : link.h5path;
          const l = { path: childPath, name, kind: "link", target, children: [] };
          this.byPath.set(childPath, l);
          node.children.push(l);
        }
      }
      return node;
    };
    this.root = walk("/", rootId, new Set());
  }

  node(path) { return this.byPath.get(path); }
  /** The dataset id of a field path (links followed by their target path). */
  fieldId(path) {
    let n = this.byPath.get(path);
    for (let i = 0; n && n.kind === "link" && i < 8; i++) n = this.byPath.get(n.target);
    return n && n.kind === "field" ? n.id : null;
  }
  nxclass(node) {
    const a = node && node.obj && node.obj.attributes && node.obj.attributes.NX_class;
    return a ? String(Array.isArray(a.value) ? a.value[0] : a.value) : "";
  }
}

/** The tree as nested lists; `select(path)` runs when a name is clicked. */
export function renderTree(model, container, select) {
  container.replaceChildren();
  const item = (node) => {
    const li = el("li");
    li.dataset.path = node.path;
    const line = el("span", null, "node " + node.kind);
    const name = el("a", node.name, "name");
    name.href = "#";
    name.addEventListener("click", (ev) => { ev.preventDefault(); select(node.path); });
    line.append(name);
    if (node.kind === "group") {
      const c = model.nxclass(node);
      if (c) line.append(el("span", c, "nxclass"));
    } else if (node.kind === "field") {
      const o = node.obj || {};
      line.append(el("span", formatShape(shapeOf(o)), "shape"), el("span", dtypeName(o.type), "dtype"));
      const u = o.attributes && o.attributes.units;
      if (u) line.append(el("span", formatValue(u.value), "units"));
    } else {
      line.append(el("span", "→ " + node.target, "target"));
    }
    li.append(line);
    if (node.children.length) {
      const ul = el("ul");
      for (const c of node.children) ul.append(item(c));
      li.append(ul);
    }
    return li;
  };
  const ul = el("ul", null, "tree");
  ul.append(item(model.root));
  container.append(ul);
}

export function markSelected(container, path) {
  for (const li of container.querySelectorAll("li.selected")) li.classList.remove("selected");
  for (const li of container.querySelectorAll("li")) if (li.dataset.path === path) li.classList.add("selected");
}

/** The attributes (and for a field, its shape, type and value when small). */
export function renderAttributes(model, path, container) {
  container.replaceChildren();
  const node = model.node(path);
  if (!node) return;
  container.append(el("h2", node.path, "objpath"));
  const table = el("table", null, "attrs");
  const row = (k, v) => { const tr = el("tr"); tr.append(el("th", k), el("td", v)); table.append(tr); };
  if (node.kind === "link") row("link to", node.target);
  if (node.kind === "field" && node.obj) {
    row("shape", formatShape(shapeOf(node.obj)));
    row("dtype", dtypeName(node.obj.type));
    if (node.obj.value !== undefined) row("value", formatValue(node.obj.value));
  }
  const attrs = (node.obj && node.obj.attributes) || {};
  for (const [name, a] of Object.entries(attrs)) row("@" + name, formatValue(a.value));
  container.append(table);
}
