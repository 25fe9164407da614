import CCairo
import CCairoShims
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// A linear or log axis mapped onto a span of device pixels.
struct AxisMap {
    var lo: Double, hi: Double      // data limits (lo at p0)
    var log: Bool
    var p0: Double, p1: Double

    @inline(__always) func t(_ v: Double) -> Double { log ? (v > 0 ? log10(v) : -.infinity) : v }
    @inline(__always) func pixel(_ v: Double) -> Double {
        let a = t(lo), b = t(hi)
        return p0 + (t(v) - a) / (b - a) * (p1 - p0)
    }
    /// The transformed coordinate at a device position.
    @inline(__always) func coordinate(_ p: Double) -> Double {
        let a = t(lo), b = t(hi)
        return a + (p - p0) / (p1 - p0) * (b - a)
    }
    func ticks() -> Ticks { log ? Ticks.log(min(lo, hi), max(lo, hi)) : Ticks.linear(min(lo, hi), max(lo, hi)) }
}

/// For each device pixel (given as intervals of transformed coordinates), the range of
/// bins it shows: every bin it overlaps by at least half of the bin or half of the pixel,
/// so a pixel covering many bins shows their maximum (a single hot pixel survives the
/// reduction) and a pixel inside one wide bin shows that bin. (-1, -1): no data there.
func binRanges(_ edges: [Double], _ intervals: [(Double, Double)]) -> [(Int, Int)] {
    let n = edges.count - 1
    let flip = edges[n] < edges[0]
    let e = flip ? Array(edges.reversed()) : edges
    func firstAbove(_ u: Double) -> Int {  // first edge index with e[i] > u
        var lo = 0, hi = e.count
        while lo < hi { let m = (lo + hi) / 2; if e[m] > u { hi = m } else { lo = m + 1 } }
        return lo
    }
    func firstAtLeast(_ u: Double) -> Int {  // first edge index with e[i] >= u
        var lo = 0, hi = e.count
        while lo < hi { let m = (lo + hi) / 2; if e[m] >= u { hi = m } else { lo = m + 1 } }
        return lo
    }
    return intervals.map { iv in
        let a = min(iv.0, iv.1), b = max(iv.0, iv.1)
        if !(b > e[0]) || !(a < e[n]) { return (-1, -1) }
        var i0 = max(firstAbove(a) - 1, 0)
        var j1 = min(firstAtLeast(b) - 1, n - 1)
        if i0 > j1 { return (-1, -1) }
        func keep(_ k: Int) -> Bool {
            let overlap = min(b, e[k + 1]) - max(a, e[k])
            return overlap >= 0.5 * (e[k + 1] - e[k]) || overlap >= 0.5 * (b - a)
        }
        if j1 > i0 {
            while i0 < j1 && !keep(i0) { i0 += 1 }
            while j1 > i0 && !keep(j1) { j1 -= 1 }
        }
        return flip ? (n - 1 - j1, n - 1 - i0) : (i0, j1)
    }
}

/// The image layer as device pixels: each pixel the maximum of the bins it shows
/// (masked values left out), coloured through the norm and colormap, written straight
/// into an ARGB32 buffer of `width` x `height` with `stride` bytes per row. Pixels with
/// no data stay untouched. `words` replaces the colormap's 256 ARGB32 words and `badWord`
/// the bad colour (ImageLayer.tileIndices writes table indices 0...255 and 256 with them).
func rasterize(_ layer: ImageLayer, x: AxisMap, y: AxisMap, left: Double, top: Double,
               width: Int, height: Int, into buffer: UnsafeMutableRawPointer, stride: Int,
               words: [UInt32]? = nil, badWord: UInt32? = nil) {
    let (vmin, vmax, _) = layer.limits()
    let norm = Norm(layer.scale, vmin: vmin, vmax: vmax)
    let xe = layer.xEdges.map { x.t($0) }, ye = layer.yEdges.map { y.t($0) }
    let colRanges = binRanges(xe, (0..<width).map { (x.coordinate(left + Double($0)), x.coordinate(left + Double($0) + 1)) })
    let rowRanges = binRanges(ye, (0..<height).map { (y.coordinate(top + Double($0)), y.coordinate(top + Double($0) + 1)) })
    let table = words ?? layer.colormap.argb32
    let b = layer.colormap.bad
    let bad = badWord ?? (0xFF00_0000 | UInt32(b.0) << 16 | UInt32(b.1) << 8 | UInt32(b.2))
    let cols = layer.data.cols
    let colLo = colRanges.map { $0.0 }, colHi = colRanges.map { $0.1 }
    nonisolated(unsafe) let vals = layer.data.values.baseAddress!
    nonisolated(unsafe) let target = buffer
    // rows in parts on the cores when the image is large (each part its own row buffer)
    let work = layer.data.rows * layer.data.cols
    let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    let parts = (work >= (1 << 20) && height >= 64) ? max(1, min(cores, 8)) : 1
    @Sendable func part(_ k: Int) {
        var rowMax = [Double](repeating: 0, count: width)
        colLo.withUnsafeBufferPointer { clo in colHi.withUnsafeBufferPointer { chi in table.withUnsafeBufferPointer { tab in
            rowMax.withUnsafeMutableBufferPointer { acc in
                for py in (height * k / parts)..<(height * (k + 1) / parts) {
                    let (r0, r1) = rowRanges[py]
                    if r0 < 0 { continue }
                    for px in 0..<width { acc[px] = -.infinity }
                    for r in r0...r1 {
                        let row = vals + r * cols
                        for px in 0..<width {
                            let c0 = clo[px], c1 = chi[px]
                            if c0 < 0 { continue }
                            var m = acc[px]
                            var c = c0
                            while c <= c1 { let v = row[c]; if v > m { m = v }; c += 1 }
                            acc[px] = m
                        }
                    }
                    let out = (target + py * stride).assumingMemoryBound(to: UInt32.self)
                    for px in 0..<width where clo[px] >= 0 {
                        let v = acc[px]
                        if v == -.infinity { out[px] = bad; continue }
                        if let i = Colormap.index(norm(v)) { out[px] = tab[i] } else { out[px] = bad }
                    }
                }
            }
        } } }
    }
    if parts == 1 { part(0) } else { DispatchQueue.concurrentPerform(iterations: parts) { part($0) } }
}

/// Where a panel's parts go, in device pixels.
struct PanelLayout {
    var left: Double, top: Double, width: Double, height: Double
    var right: Double { left + width }
    var bottom: Double { top + height }
}

let tickFont = 12.0, labelFont = 13.0, titleFont = 14.0

extension Figure {
    /// Checks what would make a wrong picture, before anything is drawn.
    func validate() throws {
        for (i, p) in panels.enumerated() {
            let which = panels.count > 1 ? " (panel \(i))" : ""
            if p.logx {
                if p.image == nil, !p.lines.contains(where: { $0.x.contains { $0 > 0 } }) {
                    throw PlotError("log x scale\(which): no positive x values to plot")
                }
                if let im = p.image, im.xEdges.contains(where: { !($0 > 0) }) {
                    throw PlotError("log x scale\(which): the image's x axis has values <= 0")
                }
            }
            if p.logy {
                if p.image == nil, !p.lines.contains(where: { $0.y.contains { $0 > 0 } }) {
                    throw PlotError("log y scale\(which): no positive y values to plot")
                }
                if let im = p.image, im.yEdges.contains(where: { !($0 > 0) }) {
                    throw PlotError("log y scale\(which): the image's y axis has values <= 0")
                }
            }
            if let (a, b) = p.xlim, !(a.isFinite && b.isFinite && a != b) { throw PlotError("xlim\(which) must be two different finite numbers") }
            if let (a, b) = p.ylim, !(a.isFinite && b.isFinite && a != b) { throw PlotError("ylim\(which) must be two different finite numbers") }
        }
    }

    /// The data limits of a panel along x or y: the image's extent, else the lines'
    /// finite values (with their error bars) plus 5% margins (in log space on log axes),
    /// so no point sits on the frame. Constant data get a unit-wide window.
    func dataLimits(_ p: Panel, vertical: Bool) -> (Double, Double, note: String?) {
        let log = vertical ? p.logy : p.logx
        if let lim = vertical ? p.ylim : p.xlim { return (lim.0, lim.1, nil) }
        if let im = p.image {
            let e = vertical ? im.yEdges : im.xEdges
            let a = min(e.first!, e.last!), b = max(e.first!, e.last!)
            if vertical && im.origin == .upper { return (b, a, nil) }
            return (a, b, nil)
        }
        var lo = Double.infinity, hi = -Double.infinity
        for l in p.lines {
            let v = vertical ? l.y : l.x
            for i in 0..<v.count {
                let c = v[i]
                guard c.isFinite, !log || c > 0 else { continue }
                guard vertical || l.y[i].isFinite else { continue }
                var a = c, b = c
                if vertical, let e = l.yerr, e[i].isFinite { a = c - abs(e[i]); b = c + abs(e[i]); if log && a <= 0 { a = c } }
                if a < lo { lo = a }
                if b > hi { hi = b }
            }
        }
        if !lo.isFinite || !hi.isFinite { return (log ? 1 : 0, log ? 10 : 1, "no finite values to plot") }
        if lo == hi {
            if log { return (lo / 10, lo * 10, vertical ? "constant value \(formatValue(lo))" : nil) }
            let d = lo == 0 ? 1 : abs(lo) * 0.1
            return (lo - d, hi + d, vertical ? "constant value \(formatValue(lo))" : nil)
        }
        if log {
            let a = log10(lo), b = log10(hi), m = (b - a) * 0.05
            return (pow(10, a - m), pow(10, b + m), nil)
        }
        let m = (hi - lo) * 0.05
        return (lo - m, hi + m, nil)
    }

    /// Draws the whole figure on a cairo context of width x height units.
    func draw(_ cv: Canvas) throws {
        let c = cv.c, cr = cv.cr
        cv.gray(1)
        c.cairo_paint(cr)
        let cellW = Double(width) / Double(cols), cellH = Double(height) / Double(rows)
        for (i, p) in panels.enumerated() {
            let r = i / cols, k = i % cols
            try drawPanel(cv, p, x: Double(k) * cellW, y: Double(r) * cellH, w: cellW, h: cellH)
        }
    }

    func drawPanel(_ cv: Canvas, _ p: Panel, x: Double, y: Double, w: Double, h: Double) throws {
        let c = cv.c, cr = cv.cr
        var (xlo, xhi, xnote) = dataLimits(p, vertical: false)
        var (ylo, yhi, ynote) = dataLimits(p, vertical: true)
        var notes = p.notes
        if p.isEmpty { notes.append("nothing plotted") }
        else if let n = ynote ?? xnote { notes.append(n) }
        var limits: (Double, Double)? = nil
        if let im = p.image {
            let l = im.limits()
            limits = (l.0, l.1)
            if let n = l.note { notes.append(n) }
        }
        var xs = AxisMap(lo: xlo, hi: xhi, log: p.logx, p0: 0, p1: 1)
        var ys = AxisMap(lo: ylo, hi: yhi, log: p.logy, p0: 1, p1: 0)
        let xt = xs.ticks(), yt = ys.ticks()

        // margins from what is written around the axes
        cv.font(tickFont)
        func tickWidth(_ t: Ticks) -> Double {
            var m = 0.0
            for (i, l) in t.labels.enumerated() {
                let w = t.superscripts.map { cv.powerWidth(l, $0[i], size: tickFont) } ?? cv.measure(l).0
                m = max(m, w)
            }
            return m
        }
        let ytw = tickWidth(yt)
        var left = x + 14 + ytw + 8 + (p.ylabel != nil ? 22 : 0)
        var top = y + (p.title != nil ? 34 : 16) + (yt.exponent != nil ? 10 : 0)
        var right = x + w - 20 - (xt.exponent != nil ? 30 : 0)
        var bottom = y + h - 14 - 18 - (p.xlabel != nil ? 24 : 0)
        var cbTicks: Ticks? = nil
        var cbNorm: Norm? = nil
        if let im = p.image, p.colorbar, let (vmin, vmax) = limits {
            let n = Norm(im.scale, vmin: vmin, vmax: vmax)
            cbNorm = n
            let t: Ticks
            switch im.scale {
            case .linear, .sqrt: t = Ticks.linear(vmin, vmax)
            case .log: t = Ticks.log(vmin, vmax)
            case .symlog(let th): t = Ticks.symlog(vmin, vmax, linthresh: th)
            }
            cbTicks = t
            right -= 16 + 8 + tickWidth(t) + 8 + (t.exponent != nil ? 10 : 0)
        }
        left = left.rounded(); top = top.rounded(); right = right.rounded(); bottom = bottom.rounded()
        guard right - left >= 8, bottom - top >= 8 else {
            throw PlotError("the figure is too small for its panels (\(width)x\(height) pixels for \(rows)x\(cols))")
        }
        if p.aspect == .equal {
            let dx = abs(xs.t(xhi) - xs.t(xlo)), dy = abs(ys.t(yhi) - ys.t(ylo))
            if dx > 0 && dy > 0 {
                let aw = right - left, ah = bottom - top
                if dy / dx > ah / aw {
                    let nw = (ah * dx / dy).rounded()
                    left += ((aw - nw) / 2).rounded(); right = left + nw
                } else {
                    let nh = (aw * dy / dx).rounded()
                    top += ((ah - nh) / 2).rounded(); bottom = top + nh
                }
            }
        }
        p.axesRect = (left, top, right - left, bottom - top)
        xs.p0 = left; xs.p1 = right
        ys.p0 = bottom; ys.p1 = top
        (xlo, xhi, ylo, yhi) = (xs.lo, xs.hi, ys.lo, ys.hi)

        // the image, computed at the axes' device size
        if let im = p.image {
            let iw = Int(right - left), ih = Int(bottom - top)
            let surf = c.cairo_image_surface_create(CAIRO_FORMAT_ARGB32, Int32(iw), Int32(ih))!
            defer { c.cairo_surface_destroy(surf) }
            guard c.cairo_surface_status(surf) == CAIRO_STATUS_SUCCESS, let data = c.cairo_image_surface_get_data(surf) else {
                throw PlotError("cairo could not make an image of \(iw)x\(ih) pixels")
            }
            c.cairo_surface_flush(surf)
            let stride = Int(c.cairo_image_surface_get_stride(surf))
            memset(data, 0xFF, stride * ih)
            rasterize(im, x: xs, y: ys, left: left, top: top, width: iw, height: ih, into: UnsafeMutableRawPointer(data), stride: stride)
            c.cairo_surface_mark_dirty(surf)
            c.cairo_set_source_surface(cr, surf, left, top)
            c.cairo_pattern_set_filter(c.cairo_get_source(cr), CAIRO_FILTER_NEAREST)
            c.cairo_paint(cr)
        }

        // lines, clipped to the axes
        if !p.lines.isEmpty {
            c.cairo_save(cr)
            c.cairo_rectangle(cr, left, top, right - left, bottom - top)
            c.cairo_clip(cr)
            for (i, l) in p.lines.enumerated() {
                drawLine(cv, l, colour: l.color ?? RGB.cycle[i % RGB.cycle.count], xs: xs, ys: ys)
            }
            c.cairo_restore(cr)
        }

        // frame, ticks, labels
        c.cairo_set_line_width(cr, 1)
        cv.gray(0)
        cv.rect(left + 0.5, top + 0.5, right - left - 1, bottom - top - 1, fill: false)
        cv.font(tickFont)
        for (i, v) in xt.values.enumerated() {
            let px = xs.pixel(v)
            guard px >= left - 0.5 && px <= right + 0.5 else { continue }
            let sx = px.rounded() + 0.5
            cv.line(sx, bottom, sx, bottom + 5)
            if let sup = xt.superscripts {
                cv.power(xt.labels[i], sup[i], px, bottom + 8, ax: 0.5, ay: 0, size: tickFont)
            } else {
                cv.text(xt.labels[i], px, bottom + 8, ax: 0.5, ay: 0)
            }
        }
        if let e = xt.exponent { cv.power("×10", String(e), right + 4, bottom + 8, ax: 0, ay: 0, size: tickFont) }
        for (i, v) in yt.values.enumerated() {
            let py = ys.pixel(v)
            guard py >= top - 0.5 && py <= bottom + 0.5 else { continue }
            let sy = py.rounded() + 0.5
            cv.line(left - 5, sy, left, sy)
            if let sup = yt.superscripts {
                cv.power(yt.labels[i], sup[i], left - 8, py, ax: 1, ay: 0.5, size: tickFont)
            } else {
                cv.text(yt.labels[i], left - 8, py, ax: 1, ay: 0.5)
            }
        }
        if let e = yt.exponent { cv.power("×10", String(e), left, top - 4, ax: 0, ay: 1, size: tickFont) }
        cv.font(labelFont)
        if let t = p.xlabel { cv.text(t, (left + right) / 2, bottom + 28, ax: 0.5, ay: 0) }
        if let t = p.ylabel { cv.text(t, x + 10, (top + bottom) / 2, ax: 0.5, ay: 0, rotate: true) }
        if let t = p.title {
            cv.font(titleFont, bold: true)
            cv.text(t, (left + right) / 2, y + 10, ax: 0.5, ay: 0)
        }

        // colorbar
        if let t = cbTicks, let n = cbNorm, let im = p.image {
            let bx = right + 16, bw = 16.0
            let bh = Int(bottom - top)
            let surf = c.cairo_image_surface_create(CAIRO_FORMAT_ARGB32, Int32(bw), Int32(bh))!
            defer { c.cairo_surface_destroy(surf) }
            if c.cairo_surface_status(surf) == CAIRO_STATUS_SUCCESS, let data = c.cairo_image_surface_get_data(surf) {
                c.cairo_surface_flush(surf)
                let stride = Int(c.cairo_image_surface_get_stride(surf))
                let table = im.colormap.argb32
                for py in 0..<bh {
                    let f = 1 - (Double(py) + 0.5) / Double(bh)
                    let col = table[Colormap.index(f) ?? 0]
                    let row = UnsafeMutableRawPointer(data + py * stride).assumingMemoryBound(to: UInt32.self)
                    for px in 0..<Int(bw) { row[px] = col }
                }
                c.cairo_surface_mark_dirty(surf)
                c.cairo_set_source_surface(cr, surf, bx, top)
                c.cairo_paint(cr)
            }
            cv.gray(0)
            cv.rect(bx + 0.5, top + 0.5, bw - 1, bottom - top - 1, fill: false)
            cv.font(tickFont)
            for (i, v) in t.values.enumerated() {
                let f = n(v)
                guard f >= -1e-9 && f <= 1 + 1e-9 else { continue }
                let py = bottom - f * (bottom - top)
                let sy = py.rounded() + 0.5
                cv.line(bx + bw, sy, bx + bw + 4, sy)
                if let sup = t.superscripts {
                    cv.power(t.labels[i], sup[i], bx + bw + 7, py, ax: 0, ay: 0.5, size: tickFont)
                } else {
                    cv.text(t.labels[i], bx + bw + 7, py, ax: 0, ay: 0.5)
                }
            }
            if let e = t.exponent { cv.power("×10", String(e), bx, top - 4, ax: 0, ay: 1, size: tickFont) }
        }

        // legend
        let labelled = p.lines.enumerated().filter { $0.element.label != nil }
        if p.legend && !labelled.isEmpty {
            cv.font(tickFont)
            let lw = labelled.map { cv.measure($0.element.label!).0 }.max()! + 40
            let lh = Double(labelled.count) * 18 + 8
            let lx = right - lw - 8, ly = top + 8
            cv.gray(1)
            c.cairo_rectangle(cr, lx, ly, lw, lh)
            c.cairo_fill_preserve(cr)
            cv.gray(0.7)
            c.cairo_stroke(cr)
            for (row, (i, l)) in labelled.enumerated() {
                let col = l.color ?? RGB.cycle[i % RGB.cycle.count]
                let cy = ly + 4 + 18 * Double(row) + 9
                cv.rgb(col)
                if l.line { c.cairo_set_line_width(cr, l.width); cv.line(lx + 6, cy, lx + 30, cy) }
                if l.marker != .none { marker(cv, l.marker, lx + 18, cy, l.markerSize); finishMarkers(cv, l.marker) }
                cv.gray(0)
                cv.text(l.label!, lx + 36, cy, ax: 0, ay: 0.5)
            }
        }

        // notes (odd data), in the middle of the axes
        if !notes.isEmpty {
            cv.font(labelFont)
            let text = notes.joined(separator: "; ")
            let (tw, th) = cv.measure(text)
            let cx = (left + right) / 2, cy = (top + bottom) / 2
            c.cairo_set_source_rgba(cr, 1, 1, 1, 0.85)
            cv.rect(cx - tw / 2 - 6, cy - th / 2 - 6, tw + 12, th + 12, fill: true)
            c.cairo_set_source_rgb(cr, 0.6, 0, 0)
            cv.text(text, cx, cy, ax: 0.5, ay: 0.5)
        }
    }

    /// Adds a marker to the current path; `finishMarkers` fills or strokes them all at once.
    func marker(_ cv: Canvas, _ m: Marker, _ x: Double, _ y: Double, _ size: Double) {
        let c = cv.c, cr = cv.cr, r = size / 2
        switch m {
        case .circle:
            c.cairo_new_sub_path(cr)
            c.cairo_arc(cr, x, y, r, 0, 2 * Double.pi)
        case .dot:
            c.cairo_new_sub_path(cr)
            c.cairo_arc(cr, x, y, max(1, r / 2), 0, 2 * Double.pi)
        case .square:
            c.cairo_rectangle(cr, x - r, y - r, 2 * r, 2 * r)
        case .plus:
            c.cairo_move_to(cr, x - r, y); c.cairo_line_to(cr, x + r, y)
            c.cairo_move_to(cr, x, y - r); c.cairo_line_to(cr, x, y + r)
        case .cross:
            c.cairo_move_to(cr, x - r, y - r); c.cairo_line_to(cr, x + r, y + r)
            c.cairo_move_to(cr, x - r, y + r); c.cairo_line_to(cr, x + r, y - r)
        case .none:
            break
        }
    }

    func finishMarkers(_ cv: Canvas, _ m: Marker) {
        switch m {
        case .plus, .cross:
            cv.c.cairo_set_line_width(cv.cr, 1.2)
            cv.c.cairo_stroke(cv.cr)
        default:
            cv.c.cairo_fill(cv.cr)
        }
    }

    /// A line, its error bars and markers. Beyond two points per pixel column (sorted x),
    /// each column is drawn once: the line through its first, lowest, highest and last
    /// points, one error bar spanning its bars, markers once per occupied pixel: the same
    /// picture as every point drawn, in time proportional to the pixels.
    func drawLine(_ cv: Canvas, _ l: Line, colour: RGB, xs: AxisMap, ys: AxisMap) {
        let c = cv.c, cr = cv.cr
        let n = l.y.count
        var px = [Double](repeating: .nan, count: n), py = [Double](repeating: .nan, count: n)
        for i in 0..<n where l.x[i].isFinite && l.y[i].isFinite {
            if xs.log && !(l.x[i] > 0) { continue }
            if ys.log && !(l.y[i] > 0) { continue }
            px[i] = xs.pixel(l.x[i]); py[i] = ys.pixel(l.y[i])
        }
        let columns = Int(abs(xs.p1 - xs.p0)) + 1
        let sorted = n > 2 * columns && zip(l.x, l.x.dropFirst()).allSatisfy { !($0 > $1) }
        cv.rgb(colour)
        // error bars
        if let e = l.yerr {
            c.cairo_set_line_width(cr, 1)
            if sorted {
                var col = Int.min, lo = 0.0, hi = 0.0
                func flush() { if col != Int.min { cv.line(Double(col) + 0.5, lo, Double(col) + 0.5, hi) } }
                for i in 0..<n where !px[i].isNaN && e[i].isFinite {
                    let k = Int(px[i].rounded(.down))
                    let a = ys.pixel(ys.log ? max(l.y[i] - abs(e[i]), l.y[i] * 1e-3) : l.y[i] - abs(e[i]))
                    let b = ys.pixel(l.y[i] + abs(e[i]))
                    if k != col { flush(); col = k; lo = min(a, b); hi = max(a, b) } else { lo = min(lo, a, b); hi = max(hi, a, b) }
                }
                flush()
            } else {
                for i in 0..<n where !px[i].isNaN && e[i].isFinite {
                    let lowV = ys.log ? max(l.y[i] - abs(e[i]), l.y[i] * 1e-3) : l.y[i] - abs(e[i])
                    let a = ys.pixel(lowV), b = ys.pixel(l.y[i] + abs(e[i]))
                    c.cairo_move_to(cr, px[i], a)
                    c.cairo_line_to(cr, px[i], b)
                }
                c.cairo_stroke(cr)
            }
        }
        // the line, broken at missing points
        if l.line {
            c.cairo_set_line_width(cr, l.width)
            c.cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND)
            var pen = false
            if sorted {
                var col = Int.min, first = 0.0, last = 0.0, lo = 0.0, hi = 0.0
                func flush() {
                    guard col != Int.min else { return }
                    let xx = Double(col) + 0.5
                    if pen { c.cairo_line_to(cr, xx, first) } else { c.cairo_move_to(cr, xx, first); pen = true }
                    if lo != hi { c.cairo_line_to(cr, xx, lo); c.cairo_line_to(cr, xx, hi) }
                    c.cairo_line_to(cr, xx, last)
                }
                for i in 0..<n {
                    if px[i].isNaN { flush(); col = Int.min; pen = false; continue }
                    let k = Int(px[i].rounded(.down))
                    if k != col { flush(); col = k; first = py[i]; last = py[i]; lo = py[i]; hi = py[i] }
                    else { last = py[i]; lo = min(lo, py[i]); hi = max(hi, py[i]) }
                }
                flush()
            } else {
                for i in 0..<n {
                    if px[i].isNaN { pen = false; continue }
                    if pen { c.cairo_line_to(cr, px[i], py[i]) } else { c.cairo_move_to(cr, px[i], py[i]); pen = true }
                }
            }
            c.cairo_stroke(cr)
        }
        // markers, once per occupied pixel when there are many
        if l.marker != .none {
            if n > 2 * columns {
                let w = columns + 1, hgt = Int(abs(ys.p1 - ys.p0)) + 2
                var seen = [Bool](repeating: false, count: w * hgt)
                let x0 = min(xs.p0, xs.p1), y0 = min(ys.p0, ys.p1)
                for i in 0..<n where !px[i].isNaN {
                    let a = Int((px[i] - x0).rounded()), b = Int((py[i] - y0).rounded())
                    guard a >= 0 && a < w && b >= 0 && b < hgt else { continue }
                    if seen[b * w + a] { continue }
                    seen[b * w + a] = true
                    marker(cv, l.marker, x0 + Double(a), y0 + Double(b), l.markerSize)
                }
            } else {
                for i in 0..<n where !px[i].isNaN { marker(cv, l.marker, px[i], py[i], l.markerSize) }
            }
            finishMarkers(cv, l.marker)
        }
    }
}
