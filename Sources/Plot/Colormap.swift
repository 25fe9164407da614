/// Colormaps, in one place for every renderer (figures here, the web viewer later): 256
/// colours each, as 8-bit RGBA. viridis, inferno, magma, plasma, cividis, turbo, gray and
/// RdBu are matplotlib's tables (ColormapTables.swift, generated from matplotlib by
/// scripts/gen_colormaps.py); a name ending in `_r` is the reversed map.
public struct Colormap: Sendable, Equatable {
    public let name: String
    /// 256 colours as r, g, b, a bytes (1024 bytes).
    public let rgba8: [UInt8]
    /// The colour of masked pixels (NaN, gaps, dead pixels, pixel_mask), r, g, b, a.
    public var bad: (UInt8, UInt8, UInt8, UInt8) { Colormap.badColour }

    public static let badColour: (UInt8, UInt8, UInt8, UInt8) = (211, 211, 211, 255)  // lightgray
    public static let defaultName = "viridis"
    /// The base names (each also exists with `_r`).
    public static let names = ["viridis", "inferno", "magma", "plasma", "cividis", "turbo", "gray", "RdBu"]

    public static func == (a: Colormap, b: Colormap) -> Bool { a.name == b.name }

    /// The map called `name` ("viridis", "RdBu_r", ...), nil for an unknown name.
    /// Names are matched exactly first, then without regard to case ("rdbu").
    public static func named(_ name: String) -> Colormap? {
        var base = name
        var reversed = false
        if base.hasSuffix("_r") { base.removeLast(2); reversed = true }
        let key = ColormapTables.tables[base] != nil ? base : names.first { $0.lowercased() == base.lowercased() }
        guard let key, let rgb = ColormapTables.tables[key], rgb.count == 768 else { return nil }
        var out = [UInt8](repeating: 255, count: 1024)
        for i in 0..<256 {
            let src = reversed ? 255 - i : i
            out[4 * i] = rgb[3 * src]
            out[4 * i + 1] = rgb[3 * src + 1]
            out[4 * i + 2] = rgb[3 * src + 2]
        }
        return Colormap(name: reversed ? key + "_r" : key, rgba8: out)
    }

    /// The table index of a normalized value, as matplotlib's Colormap.__call__ with
    /// N = 256: int(x * 256), x = 1 gives 255; below 0 the first colour and above 1 the
    /// last (matplotlib's default under/over colours); NaN gives nil (the bad colour).
    @inline(__always)
    public static func index(_ x: Double) -> Int? {
        if x.isNaN { return nil }
        if x < 0 { return 0 }
        if x >= 1 { return 255 }
        return min(Int(x * 256), 255)
    }

    /// The colour of a normalized value (r, g, b, a).
    public func colour(_ x: Double) -> (UInt8, UInt8, UInt8, UInt8) {
        guard let i = Colormap.index(x) else { return bad }
        return (rgba8[4 * i], rgba8[4 * i + 1], rgba8[4 * i + 2], rgba8[4 * i + 3])
    }

    /// The 256 colours as cairo's ARGB32 words (opaque, so premultiplication changes nothing).
    public let argb32: [UInt32]

    init(name: String, rgba8: [UInt8]) {
        self.name = name
        self.rgba8 = rgba8
        var words = [UInt32](repeating: 0, count: 256)
        for i in 0..<256 {
            let r = UInt32(rgba8[4 * i]), g = UInt32(rgba8[4 * i + 1]), b = UInt32(rgba8[4 * i + 2])
            words[i] = 0xFF00_0000 | (r << 16) | (g << 8) | b
        }
        argb32 = words
    }
}
