import NDArray

/// An RGB colour, components 0...1.
public struct RGB: Sendable, Equatable {
    public var r: Double, g: Double, b: Double
    public init(_ r: Double, _ g: Double, _ b: Double) { self.r = r; self.g = g; self.b = b }

    /// "#1f77b4", "#fff", or a few names (matplotlib's basic colours and tab10 "C0".."C9").
    public init?(parsing text: String) {
        let s = text.lowercased()
        let named: [String: String] = [
            "black": "#000000", "k": "#000000", "white": "#ffffff", "w": "#ffffff",
            "red": "#ff0000", "r": "#ff0000", "green": "#008000", "g": "#008000",
            "blue": "#0000ff", "b": "#0000ff", "gray": "#808080", "grey": "#808080",
            "orange": "#ffa500", "purple": "#800080", "magenta": "#ff00ff", "m": "#ff00ff",
            "cyan": "#00ffff", "c": "#00ffff", "yellow": "#ffff00", "y": "#ffff00",
        ]
        var hex = named[s] ?? s
        if hex.hasPrefix("c"), let k = Int(hex.dropFirst()), (0..<10).contains(k) { self = RGB.cycle[k]; return }
        guard hex.hasPrefix("#") else { return nil }
        hex.removeFirst()
        if hex.count == 3 { hex = hex.map { "\($0)\($0)" }.joined() }
        guard hex.count == 6, let v = UInt32(hex, radix: 16) else { return nil }
        self.init(Double(v >> 16 & 255) / 255, Double(v >> 8 & 255) / 255, Double(v & 255) / 255)
    }

    /// matplotlib's default colour cycle (tab10).
    public static let cycle: [RGB] = {
        let hex: [UInt32] = [0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                             0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf]
        return hex.map { (v: UInt32) -> RGB in
            let r = Double((v >> 16) & 255), g = Double((v >> 8) & 255), b = Double(v & 255)
            return RGB(r / 255, g / 255, b / 255)
        }
    }()
}

public enum Marker: String, Sendable, CaseIterable {
    case circle = "o", square = "s", plus = "+", cross = "x", dot = ".", none = "none"
}

/// One curve: points, optional error bars, drawn as a line and/or markers.
public struct Line: Sendable {
    public var x: [Double]
    public var y: [Double]
    public var yerr: [Double]?
    public var label: String?
    public var color: RGB?
    public var marker: Marker
    public var markerSize: Double = 5
    public var line: Bool
    public var width: Double = 1.5

    public init(x: [Double]? = nil, y: [Double], yerr: [Double]? = nil, label: String? = nil,
                color: RGB? = nil, marker: Marker = .none, line: Bool = true) throws {
        let xs = x ?? (0..<y.count).map(Double.init)
        guard !y.isEmpty else { throw PlotError("cannot plot an empty array (no points)") }
        guard xs.count == y.count else {
            throw PlotError("x has \(xs.count) values for \(y.count) y values (they must match)")
        }
        if let e = yerr, e.count != y.count {
            throw PlotError("errors have \(e.count) values for \(y.count) points (they must match)")
        }
        self.x = xs
        self.y = y
        self.yerr = yerr
        self.label = label
        self.color = color
        self.marker = marker
        self.line = line || marker == .none
    }
}

/// Where row 0 of an image goes: at the bottom (NeXus data, NeXpy, matplotlib's
/// origin='lower') or at the top (a camera's view).
public enum Origin: String, Sendable { case lower, upper }

/// An image layer: values, bin edges along x (columns) and y (rows), and how to colour it.
public final class ImageLayer: @unchecked Sendable {
    public let data: ImageData
    /// cols + 1 and rows + 1 monotonic edges (centres given as n values become edges
    /// halfway between them; a uniform index axis by default).
    public let xEdges: [Double]
    public let yEdges: [Double]
    public var colormap: Colormap
    public var scale: Scale
    public var autoscale: Autoscale
    public var vmin: Double?
    public var vmax: Double?
    public var origin: Origin = .lower

    public init(_ data: ImageData, x: [Double]? = nil, y: [Double]? = nil, colormap: Colormap? = nil,
                scale: Scale = .linear, autoscale: Autoscale? = nil, vmin: Double? = nil, vmax: Double? = nil) throws {
        self.data = data
        xEdges = try ImageLayer.edges(x, count: data.cols, axis: "x (columns)")
        yEdges = try ImageLayer.edges(y, count: data.rows, axis: "y (rows)")
        self.colormap = colormap ?? Colormap.named(Colormap.defaultName)!
        self.scale = scale
        // detector frames (integer images) default to 0.5-99.5 percentiles, so one hot
        // pixel does not wash the picture out; float images to their minimum and maximum
        self.autoscale = autoscale ?? (data.dtype.isInteger ? .percentiles(0.5, 99.5) : .minmax)
        self.vmin = vmin
        self.vmax = vmax
    }

    /// Bin edges from axis values: n + 1 values are edges already; n values are centres
    /// (edges halfway, the outer ones half a step out); none gives -0.5 ... n - 0.5.
    public static func edges(_ v: [Double]?, count n: Int, axis: String) throws -> [Double] {
        guard let v else { return (0...n).map { Double($0) - 0.5 } }
        guard v.allSatisfy({ $0.isFinite }) else { throw PlotError("axis \(axis) holds NaN or infinite values") }
        let e: [Double]
        if v.count == n + 1 { e = v }
        else if v.count == n {
            if n == 1 { e = [v[0] - 0.5, v[0] + 0.5] } else {
                var out = [v[0] - (v[1] - v[0]) / 2]
                for i in 0..<(n - 1) { out.append((v[i] + v[i + 1]) / 2) }
                out.append(v[n - 1] + (v[n - 1] - v[n - 2]) / 2)
                e = out
            }
        } else {
            throw PlotError("axis \(axis) has \(v.count) values for \(n) points (expected \(n) centres or \(n + 1) bin edges)")
        }
        let up = zip(e, e.dropFirst()).allSatisfy { $0 < $1 }
        let down = zip(e, e.dropFirst()).allSatisfy { $0 > $1 }
        guard up || down else { throw PlotError("axis \(axis) is not monotonic: cannot draw the image against it") }
        return e
    }

    /// The colour limits (with a note when the data are odd), computed once per setting
    /// (percentiles of a large frame are a pass over it).
    public func limits() -> (Double, Double, note: String?) {
        if let c = cachedLimits, c.scale == scale, c.autoscale == autoscale, c.vmin == vmin, c.vmax == vmax { return c.result }
        let r = data.limits(scale, autoscale: autoscale, vmin: vmin, vmax: vmax)
        cachedLimits = (scale, autoscale, vmin, vmax, r)
        return r
    }
    private var cachedLimits: (scale: Scale, autoscale: Autoscale, vmin: Double?, vmax: Double?,
                               result: (Double, Double, note: String?))?
}

public enum Aspect: String, Sendable { case auto, equal }

/// One set of axes: lines and/or an image, labels, limits, scales.
public final class Panel: @unchecked Sendable {
    public var title: String?
    public var xlabel: String?
    public var ylabel: String?
    public var xlim: (Double, Double)?
    public var ylim: (Double, Double)?
    public var logx = false
    public var logy = false
    public var lines: [Line] = []
    public var image: ImageLayer?
    public var colorbar = true
    public var aspect: Aspect = .auto
    public var legend = true
    /// Notes written on the picture (constant data, nothing to show ...).
    public var notes: [String] = []
    /// Where the axes were drawn the last time (left, top, width, height in pixels), for
    /// tests and cursor readouts; nil before the first drawing.
    public internal(set) var axesRect: (Double, Double, Double, Double)?
    public init() {}

    public var isEmpty: Bool { lines.isEmpty && image == nil }
}

/// A figure: a grid of panels, a size in pixels, an optional overall title.
public final class Figure: @unchecked Sendable {
    public var width: Int
    public var height: Int
    public let rows: Int
    public let cols: Int
    public var panels: [Panel]
    public var title: String?
    /// The panel that lines and images go to (0-based, row by row).
    public var current = 0

    public init(rows: Int = 1, cols: Int = 1, width: Int? = nil, height: Int? = nil) throws {
        guard rows >= 1, cols >= 1, rows * cols <= 64 else { throw PlotError("a figure holds 1 to 64 panels (rows \(rows), cols \(cols))") }
        self.rows = rows
        self.cols = cols
        self.width = width ?? (cols == 1 ? 800 : 520 * cols)
        self.height = height ?? (rows == 1 ? 600 : 420 * rows)
        guard (64...16384).contains(self.width), (64...16384).contains(self.height) else {
            throw PlotError("figure size \(self.width)x\(self.height) pixels is out of range (64 to 16384)")
        }
        panels = (0..<(rows * cols)).map { _ in Panel() }
    }

    public var panel: Panel { panels[current] }
}
