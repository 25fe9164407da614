/// Histograms with NumPy's rules (numpy.histogram): bins of equal width over a range, or
/// given edges; every bin is half-open [e_i, e_i+1) but the last, which also holds its
/// right edge; values outside the edges and NaN are not counted.
public enum HistogramBins: Sendable, Equatable {
    /// This many bins of equal width over the range (default: the data's min to max).
    case count(Int)
    /// Monotonically increasing edges (n + 1 edges make n bins).
    case edges([Double])
}

extension NDArray {
    /// Counts (int64; float64 sums of `weights` when given) and the bin edges (float64).
    /// `range` applies to `.count` bins. `density` divides each count by the total and by
    /// its bin's width (float64), as NumPy's density=True.
    public func histogram(bins: HistogramBins, range: (Double, Double)? = nil, weights: NDArray? = nil,
                          density: Bool = false) throws -> (counts: NDArray, edges: NDArray) {
        if let weights, weights.shape != shape {
            throw ArrayError("histogram weights must have the shape of the data: weights \(NDArray.describe(weights.shape)), "
                             + "data \(NDArray.describe(shape))")
        }
        let edges: [Double]
        var uniform: (lo: Double, hi: Double, n: Int)? = nil
        switch bins {
        case .count(let n):
            guard n >= 1 else { throw ArrayError("histogram bins must be a positive integer, got \(n)") }
            var (lo, hi) = try histogramRange(range)
            if lo == hi { lo -= 0.5; hi += 0.5 }  // NumPy: an empty range becomes one unit wide
            edges = try NDArray.linspace(lo, hi, n + 1).doubles()
            for i in 0..<n where !(edges[i] < edges[i + 1]) {
                throw ArrayError("too many bins for the data range: cannot make \(n) bins of finite width in [\(lo), \(hi)]")
            }
            uniform = (lo, hi, n)
        case .edges(let e):
            guard e.count >= 2 else {
                throw ArrayError("histogram bin edges: at least 2 edges are needed, got \(e.count)")
            }
            if let bad = e.firstIndex(where: { $0.isNaN }) { throw ArrayError("histogram bin edge \(bad) is NaN") }
            for i in 0..<(e.count - 1) where e[i] > e[i + 1] {
                throw ArrayError("histogram bin edges must increase monotonically: edge \(i) is \(e[i]), edge \(i + 1) is \(e[i + 1])")
            }
            edges = e
        }
        let nbins = edges.count - 1
        let edgeArray = try NDArray.from(edges, shape: [edges.count])
        let counts = try NDArray(zeros: [nbins], dtype: weights == nil ? .int64 : .float64)
        if count > 0 {
            // weights walk with the data: both contiguous (copies if needed), as flat arrays
            let data = weights == nil ? self : try contiguous().reshapedView([count])
            let w = try weights.map { try $0.contiguous(as: .float64).reshapedView([count]) }
            if let u = uniform {
                dtype.dispatch(HistogramSource(src: data, weights: w, counts: counts,
                                               binner: try UniformBins(lo: u.lo, hi: u.hi, n: u.n, edges: edges)))
            } else {
                dtype.dispatch(HistogramSource(src: data, weights: w, counts: counts, binner: try EdgeBins(edges: edges)))
            }
        }
        guard density else { return (counts, edgeArray) }
        let d = try counts.copy(as: .float64)
        let p = d.base(Double.self)
        let total = (0..<nbins).reduce(0.0) { $0 + p[$1] }
        for i in 0..<nbins { p[i] = p[i] / (edges[i + 1] - edges[i]) / total }
        return (d, edgeArray)
    }

    /// The outer edges: the given range (checked), else the data's min and max (finite).
    private func histogramRange(_ range: (Double, Double)?) throws -> (Double, Double) {
        if let (lo, hi) = range {
            guard lo <= hi else { throw ArrayError("histogram range: max must be larger than min, got [\(lo), \(hi)]") }
            guard lo.isFinite, hi.isFinite else { throw ArrayError("histogram range [\(lo), \(hi)] is not finite") }
            return (lo, hi)
        }
        if count == 0 { return (0, 1) }
        let lo = try reduce(.min).value(at: []), hi = try reduce(.max).value(at: [])
        if lo.isNaN || hi.isNaN {
            throw ArrayError("histogram: the data contain NaN, so no range can be autodetected (NumPy: autodetected "
                             + "range of [nan, nan] is not finite); give a range, e.g. {range = {0, 100}}, to count "
                             + "the numbers in it and leave NaN out")
        }
        guard lo.isFinite, hi.isFinite else {
            throw ArrayError("histogram: autodetected range of [\(lo), \(hi)] is not finite; give a range")
        }
        return (lo, hi)
    }
}

/// Maps a value to its bin, or -1 for none.
protocol Binner: Sendable {
    var count: Int { get }
    func bin(_ x: Double) -> Int
}

/// Doubles or integers the binning loops read through plain pointers (no array retain or
/// bounds check per element); the storage keeps them alive.
struct Table<T>: @unchecked Sendable {
    let storage: Storage
    let p: UnsafeMutablePointer<T>

    init(_ values: [T]) throws {
        storage = try Storage(byteCount: values.count * MemoryLayout<T>.stride, zeroed: false)
        p = storage.bytes.bindMemory(to: T.self, capacity: values.count)
        for (i, v) in values.enumerated() { p[i] = v }
    }

    @inline(__always) subscript(i: Int) -> T { p[i] }
}

/// Equal widths: the bin is computed, not searched, exactly as NumPy computes it (so that
/// values on an edge land in the same bin): ((x - lo) / (hi - lo)) * n, truncated, then
/// corrected by one against the edges.
final class UniformBins: Binner, @unchecked Sendable {
    let lo: Double, hi: Double, n: Int, edges: Table<Double>
    let width: Double, scale: Double

    init(lo: Double, hi: Double, n: Int, edges: [Double]) throws {
        self.lo = lo; self.hi = hi; self.n = n
        self.edges = try Table(edges)
        width = hi - lo
        scale = Double(n)
    }

    var count: Int { n }

    @inline(__always)
    func bin(_ x: Double) -> Int {
        guard x >= lo && x <= hi else { return -1 }  // NaN fails both
        var i = Int(((x - lo) / width) * scale)
        if i == n { i -= 1 }
        if x < edges[i] { return i - 1 }
        if i != n - 1 && x >= edges[i + 1] { return i + 1 }
        return i
    }
}

/// Given edges: a binary search for the last edge <= x; the right edge belongs to the
/// last bin. A coarse table over equal cells of [first, last edge] narrows the search to
/// the bins a cell can hold (usually one or two), so that nearly uniform edges cost about
/// what computed bins cost; edges with infinities, or all equal, search the whole list.
final class EdgeBins: Binner, @unchecked Sendable {
    let n: Int, edges: Table<Double>
    /// cells[j]: the bin of the value first + j / cellScale, for j in 0...cellCount + 1
    let cells: Table<Int>
    let first: Double, last: Double, cellScale: Double, cellCount: Int

    init(edges e: [Double]) throws {
        n = e.count - 1
        edges = try Table(e)
        first = e[0]
        last = e[n]
        guard first.isFinite, last.isFinite, last > first else {
            cells = try Table([0]); cellScale = 0; cellCount = 0
            return
        }
        let count = Swift.min(Swift.max(4 * n, 16), 1 << 16)
        cellCount = count
        cellScale = Double(count) / (last - first)
        let width = (last - first) / Double(count)
        var starts = [Int](repeating: 0, count: count + 2)
        for j in 0...(count + 1) {
            starts[j] = EdgeBins.search(e, Swift.min(first + Double(j) * width, last), 0, n)
        }
        cells = try Table(starts)
    }

    var count: Int { n }

    /// The last i in lo..<hi with e[i] <= x (e[lo] <= x assumed), by bisection.
    static func search(_ e: [Double], _ x: Double, _ lo: Int, _ hi: Int) -> Int {
        var lo = lo, hi = hi
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if e[mid] <= x { lo = mid } else { hi = mid }
        }
        return lo
    }

    @inline(__always)
    static func search(_ e: Table<Double>, _ x: Double, _ lo: Int, _ hi: Int) -> Int {
        // e[lo] <= x < e[lo + len] (or the end): halve len, moving lo by selects, not
        // branches (which data make unpredictable)
        var lo = lo, len = hi - lo
        while len > 1 {
            let half = len / 2
            lo = e[lo + half] <= x ? lo + half : lo
            len -= half
        }
        return lo
    }

    @inline(__always)
    func bin(_ x: Double) -> Int {
        if !(x >= first && x <= last) { return -1 }  // NaN fails both
        if x == last { return n - 1 }
        var lo = 0, hi = n
        if cellCount > 0 {
            // the computed cell may be one off at a cell boundary, and a cell's start an
            // ulp off: the bins of the cells two away bound x's bin with a cell to spare
            let c = Swift.min(Swift.max(Int((x - first) * cellScale), 0), cellCount)
            let a = cells[Swift.max(c - 2, 0)], b = Swift.min(cells[Swift.min(c + 3, cellCount + 1)] + 1, n)
            if edges[a] <= x { lo = a; hi = b }  // else (never, by the margin) the whole list
        }
        return EdgeBins.search(edges, x, lo, hi)
    }
}

/// One pass over the data; threads count into private histograms, added at the end.
private struct HistogramSource<B: Binner>: DTypeVisitor {
    let src: NDArray, weights: NDArray?, counts: NDArray, binner: B

    func visit<S: NDScalar>(_: S.Type) {
        let n = binner.count
        let threads = min(threadCount(elements: src.count), max(src.shape.first ?? 1, 1))
        // a private histogram per thread but the first; without memory for them, one thread
        let extra = threads == 1 ? [] : (try? (1..<threads).map { _ in try NDArray(zeros: [n], dtype: counts.dtype) }) ?? []
        let parts = [counts] + extra
        let src = self.src, weights = self.weights, binner = self.binner
        let shape = src.ndim == 0 ? [1] : src.shape, strides = src.ndim == 0 ? [0] : src.strides
        parallel(parts.count) { t in
            let r = partition(shape[0], parts.count, t)
            var sub = shape
            sub[0] = r.count
            let s = src.base(S.self), sIn = strides.last!
            if let weights {
                // data and weights are flat and contiguous here
                let w = weights.base(Double.self), h = parts[t].base(Double.self)
                for k in r {
                    let i = binner.bin(s[k].asDouble)
                    if i >= 0 { h[i] += w[k] }
                }
                return
            }
            let h = parts[t].base(Int64.self)
            forEachRow(shape: sub, strides: [strides], offsets: [r.lowerBound * strides[0]]) { offs, len in
                HistogramSource.count(s + offs[0], len, sIn, into: h, binner)
            }
        }
        for p in extra {
            if weights == nil {
                let h = counts.base(Int64.self), q = p.base(Int64.self)
                for i in 0..<n { h[i] &+= q[i] }
            } else {
                let h = counts.base(Double.self), q = p.base(Double.self)
                for i in 0..<n { h[i] += q[i] }
            }
        }
    }

    /// Counts one row (a function of its own: Swift 6.3's SimplifyCFG crashed on this loop
    /// inlined into the thread closure for bool sources with EdgeBins).
    static func count<S: NDScalar>(_ row: UnsafeMutablePointer<S>, _ n: Int, _ stride: Int,
                                   into h: UnsafeMutablePointer<Int64>, _ binner: B) {
        for k in 0..<n {
            let i = binner.bin(row[k * stride].asDouble)
            if i >= 0 { h[i] &+= 1 }
        }
    }
}
