// Images: a 2-D field or one frame of a 3-D stack. The server reduces the frame to the
// canvas's pixels (max-preserving) and chooses each pixel's colour with the Plot core
// (scale, autoscale, masks); it sends the colormap table indices, one byte a pixel, and
// this page colours them with the same table (GET /nxlua/colormap), so the canvas is
// pixel for pixel the server's PNG (draw=png in the address asks for that PNG instead).
// Pictures are kept (a colormap change or a step back needs no request), two requests
// run at once, and while the frame steps by one (arrow keys, play) the next frames are
// fetched ahead. Values under the cursor, box statistics and line profiles are read at
// full resolution from the server.
import { el, imageURL, pointValues, request, stats, values } from "./api.js";
import { fmt } from "./tree.js";

const IN_FLIGHT = 2;        // image requests at once
const AHEAD = 3;            // frames fetched ahead while stepping
const KEEP_BYTES = 64e6;    // pictures kept, at most

/** Colour tables by colormap name: 256 colours and then the bad colour, as the RGBA
 * words of ImageData (GET /nxlua/colormap). */
const tables = new Map();
function colourTable(cmap) {
  if (!tables.has(cmap)) {
    const t = request("/nxlua/colormap?cmap=" + encodeURIComponent(cmap)).then((r) => r.arrayBuffer()).then((b) => {
      if (b.byteLength !== 257 * 4) throw new Error(`colormap ${cmap}: ${b.byteLength} bytes, not 257 colours`);
      return new Uint32Array(b);
    });
    t.catch(() => tables.delete(cmap));
    tables.set(cmap, t);
  }
  return tables.get(cmap);
}

/** Pictures by request address, the most recently used last, and the requests in flight. */
class Pictures {
  constructor() { this.kept = new Map(); this.bytes = 0; this.flying = new Map(); this.generation = 0; }
  get(url) {
    const v = this.kept.get(url);
    if (v) { this.kept.delete(url); this.kept.set(url, v); }
    return v;
  }
  put(url, pic) {
    if (this.kept.has(url)) return;
    this.kept.set(url, pic);
    this.bytes += pic.bytes;
    while (this.bytes > KEEP_BYTES && this.kept.size > 1) {
      const [k, old] = this.kept.entries().next().value;
      this.kept.delete(k);
      this.bytes -= old.bytes;
    }
  }
  /** Forgets every picture (the file changed); answers to requests already sent are shown, not kept. */
  clear() { this.kept.clear(); this.bytes = 0; this.generation += 1; }
}

const SCALES = ["linear", "log", "sqrt", "symlog"];
const AUTOSCALES = [["0.5,99.5", "percentiles 0.5–99.5"], ["1,99", "percentiles 1–99"], ["minmax", "min–max"], ["manual", "manual"]];

function select(id, options, value) {
  const s = el("select");
  s.id = id;
  for (const o of options) {
    const [v, label] = Array.isArray(o) ? o : [o, o];
    const opt = el("option", label);
    opt.value = v;
    s.append(opt);
  }
  s.value = value;
  return s;
}

function labelled(text, input) { const l = el("label", text + " "); l.append(input); return l; }

function flat(v) { return Array.isArray(v) ? v.flat(Infinity) : [v]; }

export class ImageView {
  /** info: the /nxlua/plot answer; state: frame, cmap, scale, auto, vmin, vmax, view, roi, sum, follow. */
  constructor(container, ctx) {
    this.ctx = ctx;
    this.info = ctx.info;
    this.state = ctx.state;
    this.painted = 0;
    this.seq = 0;          // requests for pictures, numbered
    this.shownSeq = 0;     // the number of the picture shown
    this.want = null;      // the picture the state asks for
    this.direction = 0;    // +1 or -1 while the frame steps by one
    this.pictures = new Pictures();
    this.drawMode = this.state.draw === "png" ? "png" : "indices";
    this.playing = false;
    const shape = this.info.signal.shape.filter((n, k, a) => n !== 1 || k >= a.length - 2);
    this.rows = shape[shape.length - 2];
    this.cols = shape[shape.length - 1];
    this.frames = shape.length >= 3 ? shape[0] : 1;
    this.signalId = ctx.model.fieldId(this.info.signal.path);
    this.axisValues = [null, null, null];
    this.build(container);
    this.loadAxes();
  }

  build(container) {
    const s = this.state;
    container.replaceChildren();
    const bar = el("div", null, "toolbar");
    this.slider = el("input");
    Object.assign(this.slider, { type: "range", id: "frame", min: 0, max: Math.max(0, this.frames - 1), value: s.frame });
    this.frameText = el("span", "", "frame-text");
    this.frameText.id = "frame-number";
    this.play = el("button", "▶ play");
    this.play.id = "play";
    this.play.type = "button";
    this.follow = el("input");
    Object.assign(this.follow, { type: "checkbox", id: "follow", checked: !!s.follow });
    const frameBox = el("span", null, "group");
    frameBox.hidden = this.frames <= 1;
    this.frameBox = frameBox;
    this.sumFrom = el("input"); Object.assign(this.sumFrom, { type: "number", id: "sum-from", min: 0, size: 4 });
    this.sumTo = el("input"); Object.assign(this.sumTo, { type: "number", id: "sum-to", min: 1, size: 4 });
    if (s.sum) [this.sumFrom.value, this.sumTo.value] = s.sum.split(":");
    const sumApply = el("button", "sum"); sumApply.type = "button"; sumApply.id = "sum-apply";
    frameBox.append(labelled("frame", this.slider), this.frameText, this.play, labelled("follow", this.follow),
      labelled("frames", this.sumFrom), labelled("to", this.sumTo), sumApply);
    this.cmap = select("cmap", this.ctx.colormaps.flatMap((n) => [n, n + "_r"]), s.cmap);
    this.scale = select("scale", SCALES, s.scale);
    this.auto = select("autoscale", AUTOSCALES, s.auto);
    this.vmin = el("input"); Object.assign(this.vmin, { type: "number", id: "vmin", step: "any", size: 8 });
    this.vmax = el("input"); Object.assign(this.vmax, { type: "number", id: "vmax", step: "any", size: 8 });
    if (s.vmin !== undefined) this.vmin.value = s.vmin;
    if (s.vmax !== undefined) this.vmax.value = s.vmax;
    this.tool = select("tool", [["zoom", "zoom box"], ["roi", "box ROI"], ["line", "line profile"]], s.tool || "zoom");
    const reset = el("button", "reset view"); reset.type = "button"; reset.id = "reset-view";
    const save = el("button", "save PNG"); save.type = "button"; save.id = "export-png";
    const npy = el("button", "save NPY"); npy.type = "button"; npy.id = "export-npy";
    bar.append(frameBox, labelled("colormap", this.cmap), labelled("scale", this.scale), labelled("limits", this.auto),
      this.vmin, this.vmax, labelled("tool", this.tool), reset, save, npy);
    const stage = el("div", null, "stage");
    this.canvas = el("canvas"); this.canvas.id = "image";
    this.overlay = el("canvas"); this.overlay.id = "overlay";
    stage.append(this.canvas, this.overlay);
    this.limits = el("div", "", "limits"); this.limits.id = "limits";
    this.colorbar = el("canvas", null, "colorbar"); this.colorbar.id = "colorbar";
    this.colorbar.width = 256; this.colorbar.height = 1;
    this.cursor = el("div", "", "cursor"); this.cursor.id = "cursor";
    this.roiText = el("div", "", "roi"); this.roiText.id = "roi-stats";
    this.profile = el("div", null, "profile"); this.profile.id = "profile";
    const scaleRow = el("div", null, "scalebar");
    scaleRow.append(this.colorbar, this.limits);
    container.append(bar, stage, scaleRow, this.cursor, this.roiText, this.profile);

    this.slider.addEventListener("input", () => { this.setFrame(+this.slider.value); });
    this.play.addEventListener("click", () => this.togglePlay());
    this.follow.addEventListener("change", () => { s.follow = this.follow.checked; this.changed(); });
    sumApply.addEventListener("click", () => {
      const a = parseInt(this.sumFrom.value, 10), b = parseInt(this.sumTo.value, 10);
      s.sum = Number.isInteger(a) && Number.isInteger(b) && b > a ? `${a}:${b}` : null;
      this.changed(); this.paint();
    });
    for (const c of [this.cmap, this.scale, this.auto]) c.addEventListener("change", () => this.readControls());
    for (const c of [this.vmin, this.vmax]) c.addEventListener("change", () => { this.auto.value = "manual"; this.readControls(); });
    this.tool.addEventListener("change", () => { s.tool = this.tool.value; this.changed(); });
    reset.addEventListener("click", () => { s.view = null; this.changed(); this.layout(); this.paint(); });
    save.addEventListener("click", () => this.savePNG());
    npy.addEventListener("click", () => this.saveNPY());
    this.overlay.addEventListener("mousemove", (e) => this.onMove(e));
    this.overlay.addEventListener("mousedown", (e) => this.onDown(e));
    window.addEventListener("mouseup", this.upHandler = (e) => this.onUp(e));
    this.overlay.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    this.layout();
  }

  destroy() { this.playing = false; window.removeEventListener("mouseup", this.upHandler); }

  readControls() {
    const s = this.state;
    s.cmap = this.cmap.value; s.scale = this.scale.value; s.auto = this.auto.value;
    s.vmin = this.auto.value === "manual" && this.vmin.value !== "" ? +this.vmin.value : undefined;
    s.vmax = this.auto.value === "manual" && this.vmax.value !== "" ? +this.vmax.value : undefined;
    this.changed(); this.paint();
  }

  changed() { this.ctx.onState(); }

  /** The window shown, in pixel coordinates (edges: -0.5 ... n - 0.5). */
  get view() {
    const v = this.state.view;
    return v && v.length === 4 ? v : [-0.5, this.cols - 0.5, -0.5, this.rows - 0.5];
  }

  layout() {
    const [x0, x1, y0, y1] = this.view;
    const w = x1 - x0, h = y1 - y0;
    const maxW = Math.max(200, Math.min(900, (this.canvas.parentElement.parentElement.clientWidth || 900) - 20)), maxH = 620;
    const k = Math.min(maxW / w, maxH / h);
    const cw = Math.max(1, Math.round(w * k)), ch = Math.max(1, Math.round(h * k));
    for (const c of [this.canvas, this.overlay]) { c.width = cw; c.height = ch; }
    this.drawOverlay();
  }

  frameParams(frame = this.state.frame) {
    const s = this.state, p = { domain: this.ctx.domain, path: this.info.signal.path, mask: this.info.mask || "" };
    if (s.sum) p.sum = s.sum; else if (this.frames > 1) p.frame = frame;
    return p;
  }

  /** The image request of the state (of another frame when given). Table indices do not
   * depend on the colormap: a new colormap recolours the picture kept. */
  imageParams(frame = this.state.frame) {
    const s = this.state, [x0, x1, y0, y1] = this.view;
    const p = Object.assign(this.frameParams(frame), { scale: s.scale, width: this.canvas.width, height: this.canvas.height });
    if (this.drawMode === "png") p.cmap = s.cmap; else p.format = "indices";
    if (s.auto === "manual") { p.vmin = s.vmin; p.vmax = s.vmax; } else p.autoscale = s.auto;
    if (s.view) Object.assign(p, { x0, x1, y0, y1 });
    return p;
  }

  setFrame(f) {
    const old = this.state.frame;
    this.state.frame = Math.max(0, Math.min(this.frames - 1, f));
    const step = this.state.frame - old;
    this.direction = step === 1 || step === -1 ? step : 0;
    this.slider.value = this.state.frame;
    this.changed();
    this.paint();
  }

  /** Paints the current state: at once from a picture kept, else when the server's answer
   * comes. A newer state does not wait for an older request (two run at once; beyond
   * that the newest waits for a free one, and fetches ahead give theirs up); an older
   * answer that comes first is shown on the way when it was asked for after the picture
   * on the canvas. The promise is settled when this state's picture is shown, or a newer
   * state replaced it. */
  paint() {
    const s = this.state;
    if (this.want) this.want.settle();
    const url = imageURL(this.imageParams());
    const want = {
      url, seq: ++this.seq, cmap: s.cmap, scale: s.scale, geometry: this.geometry(),
      label: s.sum ? s.sum : String(s.frame), text: s.sum ? `sum of frames ${s.sum}` : `${s.frame} / ${this.frames}`,
    };
    want.done = new Promise((resolve) => { want.settle = resolve; });
    this.want = want;
    if (this.drawMode === "indices") colourTable(s.cmap).catch(() => {});  // in parallel with the picture
    this.pump();
    return want.done;
  }

  geometry() { return [this.canvas.width, this.canvas.height, ...this.view].join(","); }

  /** Shows the wanted picture when it is here, sends its request when a slot is free,
   * and fetches the next frames while stepping. */
  pump() {
    const want = this.want, store = this.pictures;
    if (!want) return;
    const pic = store.get(want.url);
    if (pic) {
      if (this.shownSeq < want.seq) this.show(want, pic);
    } else {
      const f = store.flying.get(want.url);
      if (f) f.ahead = false;
      else {
        // a slot for it: fetches ahead that are no longer ahead of the frame give theirs up
        const ahead = new Set(this.aheadURLs());
        for (const g of [...store.flying.values()]) {
          if (store.flying.size < IN_FLIGHT) break;
          if (g.ahead && !ahead.has(g.url)) { g.abort.abort(); store.flying.delete(g.url); }
        }
        if (store.flying.size < IN_FLIGHT) this.fetchPicture(want.url, want, false);
      }
    }
    // fetches ahead use the slots the frames shown leave free
    for (const url of this.aheadURLs()) {
      if (store.flying.size >= IN_FLIGHT) break;
      if (!store.kept.has(url) && !store.flying.has(url)) this.fetchPicture(url, want, true);
    }
  }

  /** The next frames in the direction the frame steps, while it steps by one. */
  aheadURLs() {
    if (!this.direction || this.state.sum || this.frames <= 1) return [];
    const out = [];
    for (let k = 1; k <= AHEAD; k++) {
      const f = this.state.frame + k * this.direction;
      if (f < 0 || f >= this.frames) break;
      out.push(imageURL(this.imageParams(f)));
    }
    return out;
  }

  fetchPicture(url, want, ahead) {
    const store = this.pictures, generation = store.generation;
    const f = { url, ahead, abort: new AbortController(), seq: want.seq, geometry: want.geometry, want };
    store.flying.set(url, f);
    this.load(url, f.abort.signal).then((pic) => {
      if (store.generation === generation) store.put(url, pic);
      if (store.flying.get(url) === f) store.flying.delete(url);
      const now = this.want;
      if (now && url === now.url) { if (this.shownSeq < now.seq) this.show(now, pic); }
      else if (!f.ahead && f.seq > this.shownSeq && f.geometry === this.geometry()) this.show(f.want, pic);  // on the way
      this.pump();
    }, (e) => {
      if (store.flying.get(url) === f) store.flying.delete(url);
      if (e.name === "AbortError") return;
      if (this.want && url === this.want.url) { this.ctx.status(e.message); this.want.settle(); }
      this.pump();
    });
  }

  /** One picture from the server: table indices (and the mask of bad pixels) or a PNG. */
  async load(url, signal) {
    const r = await fetch(url, { credentials: "same-origin", headers: { "X-NXLua-Viewer": "1" }, cache: "no-store", signal });
    if (!r.ok) {
      let message = r.statusText;
      try { message = (await r.json()).error; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    const limits = (r.headers.get("X-NXLua-Limits") || "").split(",").map(Number);
    const note = r.headers.get("X-NXLua-Note");
    if (this.drawMode === "png") {
      const bitmap = await createImageBitmap(await r.blob());
      return { bitmap, limits, note, bytes: bitmap.width * bitmap.height * 4 };
    }
    const [w, h] = (r.headers.get("X-NXLua-Size") || "").split(",").map(Number);
    const masked = Number(r.headers.get("X-NXLua-Masked") || 0);
    const bytes = new Uint8Array(await r.arrayBuffer());
    if (!(w > 0 && h > 0) || bytes.length !== w * h + (masked ? Math.ceil(w * h / 8) : 0)) {
      throw new Error(`a picture of ${bytes.length} bytes for ${w} x ${h} pixels`);
    }
    return { w, h, indices: bytes.subarray(0, w * h), mask: masked ? bytes.subarray(w * h) : null, limits, note, bytes: bytes.length };
  }

  /** Draws a picture on the canvas (the state's own, or one shown on the way to it). */
  async show(want, pic) {
    this.shownSeq = want.seq;
    let image = pic.bitmap;
    if (!image) {
      let table;
      try { table = await colourTable(want.cmap); } catch (e) { this.ctx.status(e.message); want.settle(); return; }
      if (this.shownSeq !== want.seq) return;  // a newer picture came meanwhile
      image = this.colour(pic, table);
    }
    const g = this.canvas.getContext("2d");
    if (image instanceof ImageData && image.width === this.canvas.width && image.height === this.canvas.height) {
      g.putImageData(image, 0, 0);
    } else {
      if (image instanceof ImageData) {
        // fewer pixels than the canvas (a window smaller than it): scaled up, no smoothing
        const scratch = this.scratch || (this.scratch = document.createElement("canvas"));
        scratch.width = image.width; scratch.height = image.height;
        scratch.getContext("2d").putImageData(image, 0, 0);
        image = scratch;
      }
      g.imageSmoothingEnabled = false;
      g.drawImage(image, 0, 0, this.canvas.width, this.canvas.height);
    }
    const limits = pic.limits;
    this.painted += 1;
    this.canvas.dataset.painted = String(this.painted);
    this.canvas.dataset.paintedAt = String(performance.now());  // for scripts/bench.py
    this.canvas.dataset.frame = want.label;
    this.canvas.dataset.frames = String(this.frames);
    this.frameText.textContent = want.text;
    this.limits.textContent = `colour limits ${fmt(limits[0])} … ${fmt(limits[1])} (${want.scale})` + (pic.note ? " — " + pic.note : "");
    if (want !== this.want) return;
    if (this.state.roi) await this.roiStats();
    if (this.colorbar.dataset.cmap !== want.cmap) await this.drawColorbar(want.cmap);
    want.settle();
    if (this.playing && want === this.want) setTimeout(() => this.step(), 0);
  }

  /** Table indices to colours: ImageData's RGBA words straight from the table. */
  colour(pic, table) {
    const image = new ImageData(pic.w, pic.h);
    const out = new Uint32Array(image.data.buffer), idx = pic.indices, n = idx.length;
    for (let i = 0; i < n; i++) out[i] = table[idx[i]];
    const mask = pic.mask;
    if (mask) {
      const bad = table[256];
      for (let j = 0; j < mask.length; j++) {
        const m = mask[j];
        if (m) for (let b = 0; b < 8; b++) if (m & (1 << b)) out[8 * j + b] = bad;
      }
    }
    return image;
  }

  /** The colormap's 256 colours, from the table the pictures are coloured with. */
  async drawColorbar(cmap) {
    let table;
    try { table = await colourTable(cmap); } catch (e) { return; }
    const image = new ImageData(256, 1);
    new Uint32Array(image.data.buffer).set(table.subarray(0, 256));
    this.colorbar.getContext("2d").putImageData(image, 0, 0);
    this.colorbar.dataset.cmap = cmap;
  }

  /** The frame shown (full resolution, as stored) as a NumPy .npy file. */
  async saveNPY() {
    const descr = { int8: "|i1", uint8: "|u1", int16: "<i2", uint16: "<u2", int32: "<i4", uint32: "<u4", int64: "<i8", uint64: "<u8", float32: "<f4", float64: "<f8" }[this.info.signal.dtype];
    if (!descr || this.state.sum) { this.ctx.status("save NPY: one frame of a numeric field only"); return; }
    const lead = this.info.signal.shape.length - 2;
    const sel = "[" + [...Array(lead).keys()].map((k) => (k === 0 ? String(this.state.frame) : "0")).concat([":", ":"]).join(",") + "]";
    const r = await fetch(`/datasets/${encodeURIComponent(this.signalId)}/value?domain=${encodeURIComponent(this.ctx.domain)}&select=${encodeURIComponent(sel)}`,
      { credentials: "same-origin", headers: { "X-NXLua-Viewer": "1", Accept: "application/octet-stream" } });
    if (!r.ok) { this.ctx.status("save NPY: " + r.statusText); return; }
    let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${this.rows}, ${this.cols}), }`;
    header += " ".repeat(63 - ((10 + header.length) % 64)) + "\n";
    const pre = new Uint8Array(10);
    pre.set([0x93, 78, 85, 77, 80, 89, 1, 0, header.length & 255, header.length >> 8]);
    const a = el("a");
    a.href = URL.createObjectURL(new Blob([pre, header, await r.arrayBuffer()], { type: "application/octet-stream" }));
    a.download = (this.info.signal.path.split("/").pop() || "frame") + `_${this.state.frame}.npy`;
    a.click();
  }

  togglePlay() {
    this.playing = !this.playing;
    this.play.textContent = this.playing ? "❚❚ pause" : "▶ play";
    if (this.playing) { this.direction = 1; this.step(); }
  }

  step() {
    if (!this.playing || (this.want && this.shownSeq < this.want.seq)) return;
    this.setFrame((this.state.frame + 1) % this.frames);
  }

  /** The file grew: a new frame count; the view, scale and ROI stay as they are. */
  grew(info) {
    this.info = info;
    this.pictures.clear();  // the newest frame may have been read while it was written
    const shape = info.signal.shape;
    const frames = shape.length >= 3 ? shape[0] : 1;
    if (frames === this.frames) return this.state.follow ? this.paint() : undefined;
    this.frames = frames;
    this.canvas.dataset.frames = String(frames);
    this.slider.max = Math.max(0, frames - 1);
    this.frameBox.hidden = frames <= 1;
    if (this.state.follow) this.setFrame(frames - 1);
    else this.frameText.textContent = this.state.sum ? this.frameText.textContent : `${this.state.frame} / ${this.frames}`;
  }

  async loadAxes() {
    const n = this.info.signal.shape.length;
    const want = [[0, n >= 3 ? 0 : -1], [1, n - 2], [2, n - 1]];
    for (const [slot, k] of want) {
      const a = k >= 0 ? this.info.axes[k] : null;
      const id = a && this.ctx.model.fieldId(a.path);
      if (!id) continue;
      try {
        let v = flat(await values(this.ctx.domain, id));
        const len = slot === 0 ? this.frames : slot === 1 ? this.rows : this.cols;
        if (v.length === len + 1) v = v.slice(0, -1).map((x, i) => (x + v[i + 1]) / 2);
        if (v.length === len) this.axisValues[slot] = { values: v, label: a.label };
      } catch (e) { /* an axis that cannot be read: pixels only */ }
    }
  }

  /** Canvas position -> fractional (col, row) in pixel coordinates. */
  toPixel(ev) {
    const r = this.overlay.getBoundingClientRect();
    const fx = (ev.clientX - r.left) / r.width, fy = (ev.clientY - r.top) / r.height;
    const [x0, x1, y0, y1] = this.view;
    const col = x0 + fx * (x1 - x0);
    const row = this.ctx.origin === "upper" ? y0 + fy * (y1 - y0) : y1 - fy * (y1 - y0);
    return [col, row];
  }

  toCanvas(col, row) {
    const [x0, x1, y0, y1] = this.view;
    const x = (col - x0) / (x1 - x0) * this.overlay.width;
    const y = this.ctx.origin === "upper" ? (row - y0) / (y1 - y0) * this.overlay.height : (y1 - row) / (y1 - y0) * this.overlay.height;
    return [x, y];
  }

  onMove(ev) {
    const [col, row] = this.toPixel(ev);
    if (this.drag) { this.drag.end = [col, row]; this.drawOverlay(); }
    const c = Math.round(col), r = Math.round(row);
    if (c < 0 || r < 0 || c >= this.cols || r >= this.rows) { this.cursor.textContent = ""; return; }
    const ax = (slot, i, name) => {
      const a = this.axisValues[slot];
      return a ? `${a.label} = ${fmt(a.values[i])} (${name} ${i})` : `${name} ${i}`;
    };
    const where = `${ax(2, c, "x")}, ${ax(1, r, "y")}`;
    this.cursor.textContent = where;
    this.cursor.dataset.col = String(c);
    this.cursor.dataset.row = String(r);
    clearTimeout(this.cursorTimer);
    this.cursorTimer = setTimeout(() => this.readValue(r, c, where), 40);
  }

  async readValue(r, c, where) {
    const s = this.state, lead = this.info.signal.shape.length - 2;
    let sel;
    if (s.sum) sel = `[${s.sum},${r}:${r + 1},${c}:${c + 1}]`;
    else sel = "[" + [...Array(lead).keys()].map((k) => (k === 0 ? `${s.frame}:${s.frame + 1}` : "0:1")).concat([`${r}:${r + 1}`, `${c}:${c + 1}`]).join(",") + "]";
    try {
      const v = flat(await values(this.ctx.domain, this.signalId, sel));
      const value = v.reduce((a, b) => a + b, 0);
      if (this.cursor.dataset.col === String(c) && this.cursor.dataset.row === String(r)) {
        this.cursor.textContent = `${where}: value ${fmt(value)}`;
        this.cursor.dataset.value = String(value);
      }
    } catch (e) { this.ctx.status(e.message); }
  }

  onDown(ev) {
    if (ev.button !== 0) return;
    ev.preventDefault();
    const p = this.toPixel(ev);
    this.drag = { tool: this.tool.value, start: p, end: p };
  }

  async onUp(ev) {
    const d = this.drag;
    if (!d) return;
    this.drag = null;
    const [c0, r0] = d.start, [c1, r1] = d.end;
    const box = [Math.round(Math.min(r0, r1)), Math.round(Math.max(r0, r1)) + 1, Math.round(Math.min(c0, c1)), Math.round(Math.max(c0, c1)) + 1]
      .map((v, i) => Math.max(0, Math.min(i < 2 ? this.rows : this.cols, v)));
    if (d.tool === "zoom") {
      if (box[1] - box[0] >= 2 && box[3] - box[2] >= 2) {
        this.state.view = [box[2] - 0.5, box[3] - 0.5, box[0] - 0.5, box[1] - 0.5];
        this.changed(); this.layout(); this.paint();
      } else this.drawOverlay();
    } else if (d.tool === "roi") {
      this.state.roi = box;
      this.changed(); this.drawOverlay();
      await this.roiStats();
    } else {
      this.state.line = [r0, c0, r1, c1].map((v) => Math.round(v));
      this.changed(); this.drawOverlay();
      await this.lineProfile();
    }
  }

  onWheel(ev) {
    ev.preventDefault();
    const [col, row] = this.toPixel(ev);
    const k = ev.deltaY > 0 ? 1.25 : 0.8;
    let [x0, x1, y0, y1] = this.view;
    x0 = col - (col - x0) * k; x1 = col + (x1 - col) * k; y0 = row - (row - y0) * k; y1 = row + (y1 - row) * k;
    if (x1 - x0 >= this.cols && y1 - y0 >= this.rows) this.state.view = null;
    else if (x1 - x0 >= 2 && y1 - y0 >= 2) this.state.view = [x0, x1, y0, y1];
    this.changed(); this.layout(); this.paint();
  }

  drawOverlay() {
    const g = this.overlay.getContext("2d");
    g.clearRect(0, 0, this.overlay.width, this.overlay.height);
    g.lineWidth = 1.5;
    const rect = (box, colour) => {
      const [a, b] = this.toCanvas(box[2] - 0.5, box[0] - 0.5), [c, d] = this.toCanvas(box[3] - 0.5, box[1] - 0.5);
      g.strokeStyle = colour;
      g.strokeRect(Math.min(a, c), Math.min(b, d), Math.abs(c - a), Math.abs(d - b));
    };
    if (this.state.roi) rect(this.state.roi, "#ff3030");
    if (this.state.line) {
      const [r0, c0, r1, c1] = this.state.line;
      const [a, b] = this.toCanvas(c0, r0), [c, d] = this.toCanvas(c1, r1);
      g.strokeStyle = "#ffffff"; g.beginPath(); g.moveTo(a, b); g.lineTo(c, d); g.stroke();
    }
    if (this.drag) {
      const [c0, r0] = this.drag.start, [c1, r1] = this.drag.end;
      const [a, b] = this.toCanvas(c0, r0), [c, d] = this.toCanvas(c1, r1);
      g.strokeStyle = "#ffff00";
      if (this.drag.tool === "line") { g.beginPath(); g.moveTo(a, b); g.lineTo(c, d); g.stroke(); }
      else g.strokeRect(Math.min(a, c), Math.min(b, d), Math.abs(c - a), Math.abs(d - b));
    }
  }

  async roiStats() {
    const [a, b, c, d] = this.state.roi;
    try {
      const st = await stats(Object.assign(this.frameParams(), { rows: `${a}:${b}`, cols: `${c}:${d}` }));
      this.roiText.textContent = `ROI rows ${a}:${b}, cols ${c}:${d}: sum ${fmt(st.sum)}, mean ${fmt(st.mean)}, min ${fmt(st.min)}, max ${fmt(st.max)}, masked ${st.masked} of ${st.count + st.masked}`;
      this.roiText.dataset.sum = String(st.sum);
      this.roiText.dataset.masked = String(st.masked);
    } catch (e) { this.ctx.status(e.message); }
  }

  async lineProfile() {
    const [r0, c0, r1, c1] = this.state.line;
    const n = Math.max(Math.abs(r1 - r0), Math.abs(c1 - c0)) + 1;
    const lead = this.info.signal.shape.length - 2;
    const prefix = [...Array(lead).keys()].map((k) => (k === 0 ? this.state.frame : 0));
    const pts = [], dist = [];
    for (let i = 0; i < n; i++) {
      const t = n === 1 ? 0 : i / (n - 1);
      const r = Math.round(r0 + t * (r1 - r0)), c = Math.round(c0 + t * (c1 - c0));
      if (r < 0 || c < 0 || r >= this.rows || c >= this.cols) continue;
      pts.push(prefix.concat([r, c]));
      dist.push(Math.hypot(r - r0, c - c0));
    }
    if (!pts.length) return;
    try {
      const v = flat(await pointValues(this.ctx.domain, this.signalId, pts));
      const data = dist.map((x, i) => [x, v[i]]);
      if (this.profileGraph) this.profileGraph.destroy();
      this.profileGraph = new window.Dygraph(this.profile, data, {
        labels: ["distance (pixels)", "value"], xlabel: "distance along the line (pixels)", ylabel: "value",
        width: Math.min(700, this.canvas.width), height: 220, drawPoints: true,
      });
      this.profile.dataset.points = String(pts.length);
    } catch (e) { this.ctx.status(e.message); }
  }

  savePNG() {
    this.canvas.toBlob((blob) => {
      const a = el("a");
      a.href = URL.createObjectURL(blob);
      a.download = (this.info.signal.path.split("/").pop() || "image") + `_${this.state.frame}.png`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 1000);
    }, "image/png");
  }
}
