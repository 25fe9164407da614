#if canImport(Glibc)
import Glibc
#endif

/// How values map onto [0, 1] before the colormap: matplotlib's Normalize, LogNorm,
/// PowerNorm(gamma = 0.5) and SymLogNorm(linthresh, linscale = 1, base = 10).
public enum Scale: Sendable, Equatable {
    case linear
    case log
    case sqrt
    case symlog(linthresh: Double)

    public static func named(_ s: String, linthresh: Double = 1) -> Scale? {
        switch s.lowercased() {
        case "linear", "lin": return .linear
        case "log": return .log
        case "sqrt", "power": return .sqrt
        case "symlog": return .symlog(linthresh: linthresh)
        default: return nil
        }
    }

    public var name: String {
        switch self {
        case .linear: return "linear"
        case .log: return "log"
        case .sqrt: return "sqrt"
        case .symlog: return "symlog"
        }
    }
}

/// A scale with its limits: `callAsFunction` gives matplotlib's normalized value.
public struct Norm: Sendable, Equatable {
    public let scale: Scale
    public let vmin: Double
    public let vmax: Double
    /// transform(vmin) and transform(vmax), once (a figure maps every pixel through them).
    private let ta: Double
    private let tb: Double

    public init(_ scale: Scale, vmin: Double, vmax: Double) {
        self.scale = scale
        self.vmin = vmin
        self.vmax = vmax
        ta = Norm.transform(scale, vmin)
        tb = Norm.transform(scale, vmax)
    }

    /// The value in the scale's own space (log10, symlog's transform); linear and sqrt
    /// are affine there (sqrt is applied after normalizing, as PowerNorm does).
    @inline(__always)
    public func transform(_ v: Double) -> Double { Norm.transform(scale, v) }

    @inline(__always)
    static func transform(_ scale: Scale, _ v: Double) -> Double {
        switch scale {
        case .linear, .sqrt: return v
        case .log: return v > 0 ? log10(v) : -.infinity
        case .symlog(let t):
            // matplotlib's SymmetricalLogTransform with linscale 1, base 10
            let linscaleAdj = 1.0 / (1.0 - 1.0 / 10.0)
            let a = abs(v)
            if a <= t { return v * linscaleAdj }
            return (v < 0 ? -1 : 1) * t * (linscaleAdj + log10(a / t))
        }
    }

    /// matplotlib's norm(v): 0 at vmin, 1 at vmax; NaN stays NaN (the bad colour);
    /// non-positive values under a log scale give -inf (the first colour: see docs/plots.md).
    @inline(__always)
    public func callAsFunction(_ v: Double) -> Double {
        if v.isNaN { return .nan }
        if vmin == vmax { return 0 }  // as matplotlib: a constant image takes the first colour
        switch scale {
        case .sqrt:
            let r = (v - vmin) / (vmax - vmin)
            return r < 0 ? 0 : r.squareRoot()
        default:
            return (transform(v) - ta) / (tb - ta)
        }
    }

    /// The value at normalized position x (the inverse; for colorbars and ticks).
    public func inverse(_ x: Double) -> Double {
        switch scale {
        case .linear: return vmin + x * (vmax - vmin)
        case .sqrt: return vmin + x * x * (vmax - vmin)
        case .log:
            let a = log10(vmin), b = log10(vmax)
            return pow(10, a + x * (b - a))
        case .symlog(let t):
            let linscaleAdj = 1.0 / (1.0 - 1.0 / 10.0)
            let a = transform(vmin), b = transform(vmax)
            let y = a + x * (b - a)
            if abs(y) <= t * linscaleAdj { return y / linscaleAdj }
            return (y < 0 ? -1 : 1) * t * pow(10, abs(y) / t - linscaleAdj)
        }
    }
}
