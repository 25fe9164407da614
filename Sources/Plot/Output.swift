import CCairo
import CCairoShims
#if canImport(Glibc)
import Glibc
#endif

/// The file formats a figure is written in.
public enum FigureFormat: String, Sendable {
    case png, svg, pdf

    /// The format a path's extension names ("frame.png"), nil for another one.
    public init?(path: String) {
        guard let dot = path.lastIndex(of: "."), !path[dot...].contains("/") else { return nil }
        self.init(rawValue: path[path.index(after: dot)...].lowercased())
    }
}

extension Figure {
    /// Draws on an ARGB32 image surface, then hands it to `body` (destroyed after).
    private func withRaster<R>(_ body: (nxcairo_api, OpaquePointer) throws -> R) throws -> R {
        try validate()
        let c = try Cairo.api()
        guard let surf = c.cairo_image_surface_create(CAIRO_FORMAT_ARGB32, Int32(width), Int32(height)) else {
            throw PlotError("cairo could not make a \(width)x\(height) image")
        }
        defer { c.cairo_surface_destroy(surf) }
        guard c.cairo_surface_status(surf) == CAIRO_STATUS_SUCCESS else {
            throw PlotError("cairo could not make a \(width)x\(height) image: \(cairoMessage(c, (c.cairo_surface_status(surf))))")
        }
        try drawOn(c, surf)
        c.cairo_surface_flush(surf)
        return try body(c, surf)
    }

    private func drawOn(_ c: nxcairo_api, _ surf: OpaquePointer) throws {
        guard let cr = c.cairo_create(surf) else { throw PlotError("cairo could not make a drawing context") }
        defer { c.cairo_destroy(cr) }
        try draw(Canvas(c: c, cr: cr))
        let st = c.cairo_status(cr)
        guard st == CAIRO_STATUS_SUCCESS else { throw PlotError("cairo failed while drawing: \(cairoMessage(c, (st)))") }
    }

    /// Writes the figure to `path` in the format its extension names (.png, .svg, .pdf)
    /// or the one given.
    public func save(_ path: String, format: FigureFormat? = nil) throws {
        guard let fmt = format ?? FigureFormat(path: path) else {
            throw PlotError("\(path): unknown picture format (use a name ending in .png, .svg or .pdf)")
        }
        switch fmt {
        case .png:
            let bytes = try pngData()
            guard let fp = fopen(path, "wb") else {
                throw PlotError("\(path): cannot write the PNG (\(String(cString: strerror(errno))))")
            }
            let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, bytes.count, fp) }
            let closed = fclose(fp)
            guard written == bytes.count, closed == 0 else {
                throw PlotError("\(path): cannot write the PNG (\(String(cString: strerror(errno))))")
            }
        case .svg, .pdf:
            try validate()
            let c = try Cairo.api()
            let w = Double(width), h = Double(height)
            guard let surf = fmt == .svg ? c.cairo_svg_surface_create(path, w, h) : c.cairo_pdf_surface_create(path, w, h) else {
                throw PlotError("\(path): cairo could not make the \(fmt.rawValue) surface")
            }
            defer { c.cairo_surface_destroy(surf) }
            guard c.cairo_surface_status(surf) == CAIRO_STATUS_SUCCESS else {
                throw PlotError("\(path): cannot write (\(cairoMessage(c, (c.cairo_surface_status(surf)))))")
            }
            try drawOn(c, surf)
            c.cairo_surface_finish(surf)
            let st = c.cairo_surface_status(surf)
            guard st == CAIRO_STATUS_SUCCESS else {
                throw PlotError("\(path): cannot write the \(fmt.rawValue) (\(cairoMessage(c, (st))))")
            }
        }
    }

    /// The figure as PNG bytes (for the sandbox of nxlua serve, the web viewer, tests).
    public func pngData() throws -> [UInt8] {
        try withRaster { c, surf in
            guard let data = c.cairo_image_surface_get_data(surf) else { throw PlotError("cairo image has no data") }
            var p: UnsafeMutablePointer<UInt8>? = nil
            var n = 0
            let st = nxcairo_png_rgb(data, Int32(width), Int32(height), c.cairo_image_surface_get_stride(surf), 1, &p, &n)
            defer { nxcairo_free(p) }
            guard st == 0, let p else { throw PlotError("cannot encode the PNG (out of memory)") }
            return Array(UnsafeBufferPointer(start: p, count: n))
        }
    }

    /// The figure as width x height RGBA bytes, rows top to bottom (for terminals).
    public func rgba() throws -> (width: Int, height: Int, bytes: [UInt8]) {
        try withRaster { c, surf in
            let stride = Int(c.cairo_image_surface_get_stride(surf))
            guard let data = c.cairo_image_surface_get_data(surf) else { throw PlotError("cairo image has no data") }
            var out = [UInt8](repeating: 0, count: width * height * 4)
            for y in 0..<height {
                let row = UnsafeMutableRawPointer(data + y * stride).assumingMemoryBound(to: UInt32.self)
                for x in 0..<width {
                    let v = row[x]
                    let a = UInt32(v >> 24)
                    let o = 4 * (y * width + x)
                    // un-premultiply (the figure is opaque, so a is 255 in practice)
                    func ch(_ s: Int) -> UInt8 {
                        let cval = (v >> UInt32(s)) & 0xFF
                        return a == 0 ? 0 : UInt8(min(255, (cval * 255 + a / 2) / a))
                    }
                    out[o] = ch(16); out[o + 1] = ch(8); out[o + 2] = ch(0); out[o + 3] = UInt8(a)
                }
            }
            return (width, height, out)
        }
    }
}

func cairoMessage(_ c: nxcairo_api, _ st: cairo_status_t) -> String {
    guard let p = c.cairo_status_to_string(st) else { return "cairo status \(st.rawValue)" }
    return String(cString: p)
}
