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
        let b = colormap.bad
        // outside the image: the bad colour, as masked pixels (the viewer's background)
        return try tileWords(width: width, height: height, x0: x0, x1: x1, y0: y0, y1: y1,
                             fill: 0xFF00_0000 | UInt32(b.0) << 16 | UInt32(b.1) << 8 | UInt32(b.2), words: nil)
    }

    /// The window's pixels as the fill, or as the rasterizer writes them (with `words`
    /// for the colormap's 256 colours when given, the colormap's own otherwise).
    func tileWords(width: Int, height: Int, x0: Double, x1: Double, y0: Double, y1: Double,
                   fill: UInt32, words: [UInt32]?) throws -> [UInt32] {
        guard width > 0, height > 0, width <= 16384, height <= 16384 else {
            throw PlotError("a tile of \(width) x \(height) pixels: 1 to 16384 each expected")
        }
        guard x0.isFinite, x1.isFinite, y0.isFinite, y1.isFinite, x0 != x1, y0 != y1 else {
            throw PlotError("a tile window needs finite, distinct bounds (x \(x0)...\(x1), y \(y0)...\(y1))")
        }
        let xs = AxisMap(lo: x0, hi: x1, log: false, p0: 0, p1: Double(width))
        let ys = origin == .lower ? AxisMap(lo: y0, hi: y1, log: false, p0: Double(height), p1: 0)
                                  : AxisMap(lo: y0, hi: y1, log: false, p0: 0, p1: Double(height))
        var out = [UInt32](repeating: fill, count: width * height)
        out.withUnsafeMutableBytes { buf in
            rasterize(self, x: xs, y: ys, left: 0, top: 0, width: width, height: height,
                      into: buf.baseAddress!, stride: width * 4, words: words, badWord: fill)
        }
        return out
    }

    /// The table indices of 0...255 as rasterizer words: a tile of them is the picture
    /// before its colours (ImageLayer.tileIndices).
    static let indexWords: [UInt32] = (0..<256).map { UInt32($0) }

    /// The same window as colormap table indices, one byte per pixel, row 0 at the top,
    /// and the pixels drawn in the bad colour (masked, NaN, or outside the image) as a bit
    /// mask, least significant bit first (nil when there are none): what the web viewer
    /// draws with the colormap's table (`Colormap.rgba8`, `Colormap.bad`) in the browser.
    /// Pixel for pixel the picture of tileARGB and tilePNG: the same rasterizer chooses
    /// every index.
    public func tileIndices(width: Int, height: Int, x0: Double, x1: Double, y0: Double, y1: Double) throws
        -> (indices: [UInt8], mask: [UInt8]?, masked: Int) {
        let words = try tileWords(width: width, height: height, x0: x0, x1: x1, y0: y0, y1: y1,
                                  fill: 256, words: ImageLayer.indexWords)
        let n = words.count
        var indices = [UInt8](repeating: 0, count: n)
        var mask = [UInt8](repeating: 0, count: (n + 7) / 8)
        var masked = 0
        words.withUnsafeBufferPointer { w in
            indices.withUnsafeMutableBufferPointer { out in
                mask.withUnsafeMutableBufferPointer { bits in
                    for i in 0..<n {
                        let v = w[i]
                        if v > 255 { bits[i >> 3] |= UInt8(1) << UInt8(i & 7); masked += 1 } else { out[i] = UInt8(v) }
                    }
                }
            }
        }
        return (indices, masked > 0 ? mask : nil, masked)
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
