#if canImport(Glibc)
import Glibc
#endif

/// Errors of the event reader; every message names the file, the object and what was expected.
public struct EventError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Bins along one axis by their edges: half-open [edge i, edge i+1), as scipp's `hist`
/// (NumPy closes its last bin; a value equal to the last edge is outside here). Equal
/// widths and equal ratios (logarithmic bins) find the bin by arithmetic, any other edges
/// by binary search; the arithmetic guess is then checked against the edges themselves,
/// so every form puts a value in the same bin as a search of the edges would.
public struct EventBins: Sendable {
    public let edges: [Double]
    public enum Spacing: Sendable { case linear, logarithmic, irregular }
    public let spacing: Spacing
    let lo: Double, hi: Double, scale: Double, logLo: Double  // read by the histogram kernel too

    public var count: Int { edges.count - 1 }

    public init(edges: [Double]) throws {
        guard edges.count >= 2 else { throw EventError("bin edges: at least 2 edges are needed, got \(edges.count)") }
        for i in 1..<edges.count where !(edges[i] > edges[i - 1]) {
            throw EventError("bin edges must increase, edge \(i) (\(edges[i])) follows \(edges[i - 1])")
        }
        self.edges = edges
        lo = edges.first!
        hi = edges.last!
        let n = Double(edges.count - 1)
        func close(_ a: [Double]) -> Bool {
            let step = (a.last! - a.first!) / n
            return a.indices.allSatisfy { abs(a[$0] - (a.first! + Double($0) * step)) <= 1e-9 * max(abs(step), 1e-300) * n }
        }
        if close(edges) {
            spacing = .linear
            scale = n / (hi - lo)
            logLo = 0
        } else if lo > 0, close(edges.map { Glibc.log($0) }) {
            spacing = .logarithmic
            logLo = Glibc.log(lo)
            scale = n / (Glibc.log(hi) - logLo)
        } else {
            spacing = .irregular
            scale = 0
            logLo = 0
        }
    }

    /// `count` equal bins from lo to hi (NumPy's linspace edges).
    public static func linear(_ lo: Double, _ hi: Double, count: Int) throws -> EventBins {
        guard count >= 1, hi > lo else { throw EventError("linear bins need hi > lo and at least 1 bin, got \(lo), \(hi), \(count)") }
        let step = (hi - lo) / Double(count)
        return try EventBins(edges: (0...count).map { $0 == count ? hi : lo + Double($0) * step })
    }

    /// `count` bins of equal ratio from lo to hi (NumPy's geomspace edges), lo > 0.
    public static func logarithmic(_ lo: Double, _ hi: Double, count: Int) throws -> EventBins {
        guard count >= 1, hi > lo, lo > 0 else { throw EventError("logarithmic bins need 0 < lo < hi and at least 1 bin, got \(lo), \(hi), \(count)") }
        let a = Glibc.log(lo), b = Glibc.log(hi)
        return try EventBins(edges: (0...count).map { $0 == 0 ? lo : ($0 == count ? hi : Glibc.exp(a + (b - a) * Double($0) / Double(count))) })
    }

    /// The same bins in other units (edges times `factor`).
    public func scaled(by factor: Double) throws -> EventBins {
        factor == 1 ? self : try EventBins(edges: edges.map { $0 * factor })
    }

    /// The bin of x, or -1 outside [first edge, last edge) (NaN included).
    @inline(__always)
    public func index(_ x: Double) -> Int {
        guard x >= lo && x < hi else { return -1 }
        let last = edges.count - 2
        var i: Int
        switch spacing {
        case .linear: i = Int((x - lo) * scale)
        case .logarithmic: i = Int((Glibc.log(x) - logLo) * scale)
        case .irregular:
            var a = 0, b = last + 1  // edges[a] <= x < edges[b]
            while b - a > 1 {
                let m = (a + b) >> 1
                if edges[m] <= x { a = m } else { b = m }
            }
            return a
        }
        if i > last { i = last }
        if i < 0 { i = 0 }
        return edges.withUnsafeBufferPointer { e in
            while i > 0 && x < e[i] { i -= 1 }
            while i < last && x >= e[i + 1] { i += 1 }
            return i
        }
    }
}
