// 1-D NXdata with Debian's dygraphs: the axis (or indices), the signal, error bars
// (errors field, or sqrt(N) for counts as nexusformat does), log axes, zoom and pan
// (drag to zoom, shift-drag to pan, double-click to reset).
import { el, escapeHTML, values } from "./api.js";

function flat(v) { return Array.isArray(v) ? v.flat(Infinity) : [v]; }

export class LineView {
  constructor(container, ctx) {
    this.ctx = ctx;
    const info = ctx.info;
    container.replaceChildren();
    const bar = el("div", null, "toolbar");
    this.logx = el("input"); Object.assign(this.logx, { type: "checkbox", id: "logx", checked: !!ctx.state.logx });
    this.logy = el("input"); Object.assign(this.logy, { type: "checkbox", id: "logy", checked: !!ctx.state.logy });
    const lx = el("label", "log x "), ly = el("label", "log y ");
    lx.append(this.logx); ly.append(this.logy);
    const csv = el("button", "save CSV"); csv.type = "button"; csv.id = "export-csv";
    bar.append(lx, ly, csv);
    this.graph = el("div", null, "graph"); this.graph.id = "graph";
    container.append(bar, this.graph);
    for (const c of [this.logx, this.logy]) c.addEventListener("change", () => this.scales());
    csv.addEventListener("click", () => this.saveCSV());
    this.info = info;
    this.ready = this.load();
  }

  destroy() { if (this.dygraph) this.dygraph.destroy(); }

  async load() {
    const { model, domain, info } = this.ctx;
    const id = model.fieldId(info.signal.path);
    const y = flat(await values(domain, id));
    let x = y.map((_, i) => i), xlabel = "index";
    const a = info.axes.find((v) => v);
    if (a && model.fieldId(a.path)) {
      let xv = flat(await values(domain, model.fieldId(a.path)));
      if (xv.length === y.length + 1) xv = xv.slice(0, -1).map((v, i) => (v + xv[i + 1]) / 2);
      if (xv.length === y.length) { x = xv; xlabel = a.label; }
    }
    let err = null;
    if (info.errors && model.fieldId(info.errors)) err = flat(await values(domain, model.fieldId(info.errors)));
    else if (info.counts) err = y.map((v) => (v > 0 ? Math.sqrt(v) : 0));
    this.rows = x.map((xv, i) => [xv, err ? [y[i], err[i]] : y[i]]).sort((p, q) => p[0] - q[0]);
    this.labels = [xlabel, info.signal.label];
    // dygraphs writes these with innerHTML: escaped, so a name from a file stays text
    this.dygraph = new window.Dygraph(this.graph, this.rows, {
      labels: this.labels.map(escapeHTML), xlabel: escapeHTML(xlabel), ylabel: escapeHTML(info.signal.label),
      title: escapeHTML(info.title || info.group || info.signal.path),
      errorBars: !!err, sigma: 1, drawPoints: true, pointSize: 3, strokeWidth: 1,
      logscale: !!this.ctx.state.logy, axes: { x: { logscale: !!this.ctx.state.logx } },
      width: 760, height: 420, animatedZooms: false,
    });
    this.graph.dataset.points = String(y.length);
  }

  scales() {
    this.ctx.state.logx = this.logx.checked;
    this.ctx.state.logy = this.logy.checked;
    this.ctx.onState();
    if (this.dygraph) this.dygraph.updateOptions({ logscale: this.logy.checked, axes: { x: { logscale: this.logx.checked } } });
  }

  grew(info) { this.ctx.info = info; this.destroy(); this.ready = this.load(); }

  saveCSV() {
    const lines = [this.labels.map((s) => JSON.stringify(s)).join(",")];
    for (const [x, y] of this.rows) lines.push(Array.isArray(y) ? `${x},${y[0]},${y[1]}` : `${x},${y}`);
    const a = el("a");
    a.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
    a.download = (this.info.signal.path.split("/").pop() || "data") + ".csv";
    a.click();
  }
}
