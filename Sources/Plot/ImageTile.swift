import CCairoShims

/// A window of an image layer as a picture of its own, with no axes around it: what the
/// web viewer of nxlua serve paints. The pixels are made by the figures' own rasterizer
/// (each device pixel the maximum of the bins it covers, so a single hot pixel survives a
/// reduction; colours through the same norm and colormap), so a tile and a figure agree.
extension ImageLayer {
    /// The window of columns `x0...x1` and rows `y0...y1` (pixel coordinates: -0.5 is the
    /// outer edge of pixel 0, as in the layer's default edges) as width x height ARGB32
    /// words, row 0 at the top. `origin` lower puts the window's first row at the bottom.
    public func tileARGB(width: Int, height: Int, x0: Double, x1: Double, y0: Double, y1: Double) throws -> [UInt32] {
        guard width > 0, height > 0, width <= 16384, height <= 16384 else {
            throw PlotError("a tile of \(width) x \(height) pixels: 1 to 16384 each expected")
        }
        guard x0.isFinite, x1.isFinite, y0.isFinite, y1.isFinite, x0 != x1, y0 != y1 else {
            throw PlotError("a tile window needs finite, distinct bounds (x \(x0)...\(x1), y \(y0)...\(y1))")
        }
        let xs = AxisMap(lo: x0, hi: x1, log: false, p0: 0, p1: Double(width))
        let ys = origin == .lower ? AxisMap(lo: y0, hi: y1, log: false, p0: Double(height), p1: 0)
                                  : AxisMap(lo: y0, hi: y1, log: false, p0: 0, p1: Double(height))
        let b = colormap.bad
        // outside the image: the bad colour, as masked pixels (the viewer's background)
        var out = [UInt32](repeating: 0xFF00_0000 | UInt32(b.0) << 16 | UInt32(b.1) << 8 | UInt32(b.2), count: width * height)
        out.withUnsafeMutableBytes { buf in
            rasterize(self, x: xs, y: ys, left: 0, top: 0, width: width, height: height,
                      into: buf.baseAddress!, stride: width * 4)
        }
        return out
    }

    /// The same window as PNG bytes (fast zlib level 1, unfiltered: see CCairoShims).
    public func tilePNG(width: Int, height: Int, x0: Double, x1: Double, y0: Double, y1: Double) throws -> [UInt8] {
        let words = try tileARGB(width: width, height: height, x0: x0, x1: x1, y0: y0, y1: y1)
        return try words.withUnsafeBytes { raw in
            var p: UnsafeMutablePointer<UInt8>? = nil
            var n = 0
            let st = nxcairo_png_rgb(raw.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(width), Int32(height),
                                     Int32(width * 4), 1, &p, &n)
            defer { nxcairo_free(p) }
            guard st == 0, let p else { throw PlotError("cannot encode the PNG (out of memory)") }
            return Array(UnsafeBufferPointer(start: p, count: n))
        }
    }
}
