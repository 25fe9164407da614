import CCairo
import CCairoShims

/// libcairo's function table, loaded on first use (CCairoShims); a missing library is a
/// PlotError naming it.
enum Cairo {
    static func api() throws -> nxcairo_api {
        var why = [CChar](repeating: 0, count: 512)
        guard let p = nxcairo_load(&why, why.count) else {
            throw PlotError(String(decoding: why.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return p.pointee
    }

    /// cairo's version ("1.16.0"), nil when libcairo cannot be loaded.
    static var version: String? {
        guard let a = try? api() else { return nil }
        return a.cairo_version_string().map { String(cString: $0) }
    }
}

/// cairo's version string, for `nxlua --version` and bug reports (nil without libcairo).
public var cairoVersion: String? { Cairo.version }

/// A cairo context with the figure's drawing helpers (text, lines, rectangles).
struct Canvas {
    let c: nxcairo_api
    let cr: OpaquePointer

    func rgb(_ col: RGB, alpha: Double = 1) { c.cairo_set_source_rgba(cr, col.r, col.g, col.b, alpha) }
    func gray(_ v: Double) { c.cairo_set_source_rgb(cr, v, v, v) }

    func line(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double) {
        c.cairo_move_to(cr, x0, y0)
        c.cairo_line_to(cr, x1, y1)
        c.cairo_stroke(cr)
    }

    func rect(_ x: Double, _ y: Double, _ w: Double, _ h: Double, fill: Bool) {
        c.cairo_rectangle(cr, x, y, w, h)
        if fill { c.cairo_fill(cr) } else { c.cairo_stroke(cr) }
    }

    func font(_ size: Double, bold: Bool = false) {
        c.cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL)
        c.cairo_set_font_size(cr, size)
    }

    /// Width and height (ascent) of a text in the current font.
    func measure(_ s: String) -> (Double, Double) {
        var e = cairo_text_extents_t()
        c.cairo_text_extents(cr, s, &e)
        return (e.x_advance, -e.y_bearing)
    }

    /// Draws text anchored at (x, y): ax, ay in 0...1 (0, 0 = left, top; 0.5, 0.5 = centre).
    func text(_ s: String, _ x: Double, _ y: Double, ax: Double = 0, ay: Double = 0, rotate: Bool = false) {
        guard !s.isEmpty else { return }
        let (w, h) = measure(s)
        c.cairo_save(cr)
        c.cairo_translate(cr, x, y)
        if rotate { c.cairo_rotate(cr, -Double.pi / 2) }
        c.cairo_move_to(cr, -ax * w, -ay * h + h)
        c.cairo_show_text(cr, s)
        c.cairo_restore(cr)
    }

    /// "10" with a raised exponent (log axis labels), anchored as text().
    func power(_ base: String, _ exp: String, _ x: Double, _ y: Double, ax: Double, ay: Double, size: Double) {
        font(size)
        let (bw, bh) = measure(base)
        font(size * 0.75)
        let (ew, _) = measure(exp)
        let w = bw + ew, h = bh + size * 0.35
        let left = x - ax * w, top = y - ay * h
        font(size)
        c.cairo_move_to(cr, left, top + h)
        c.cairo_show_text(cr, base)
        font(size * 0.75)
        c.cairo_move_to(cr, left + bw, top + h - bh * 0.55)
        c.cairo_show_text(cr, exp)
        font(size)
    }

    func powerWidth(_ base: String, _ exp: String, size: Double) -> Double {
        font(size)
        let bw = measure(base).0
        font(size * 0.75)
        let ew = measure(exp).0
        font(size)
        return bw + ew
    }
}
