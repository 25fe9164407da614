import Dispatch
import NDArray
#if canImport(Glibc)
import Glibc
#endif

/// Which pixels of an image are left out (drawn in the bad colour, not counted by the
/// autoscale): NaN always; negative values of signed integer frames (Pilatus gaps and
/// dead pixels, -1 and -2); the dtype's maximum of unsigned frames (Eiger gaps,
/// 4294967295 in uint32); nonzero entries of a pixel mask of the image's shape.
public struct MaskRules: Sendable {
    public var negativeIntegers = true
    public var unsignedMaximum = true
    /// Nonzero = masked (NeXus pixel_mask); converted to bytes, C order.
    public var pixelMask: [UInt8]? = nil
    public init(negativeIntegers: Bool = true, unsignedMaximum: Bool = true, pixelMask: [UInt8]? = nil) {
        self.negativeIntegers = negativeIntegers
        self.unsignedMaximum = unsignedMaximum
        self.pixelMask = pixelMask
    }
    public static let none = MaskRules(negativeIntegers: false, unsignedMaximum: false)
}

/// How the colour limits are chosen.
public enum Autoscale: Sendable, Equatable {
    /// The minimum and maximum of the unmasked values (positive ones under a log scale).
    case minmax
    /// Percentiles of the unmasked values (NumPy's linear interpolation), e.g. 0.5, 99.5.
    case percentiles(Double, Double)
}

/// Statistics of the unmasked values of an image, computed once per image.
public struct ImageStats: Sendable {
    public var count = 0          // unmasked values
    public var masked = 0
    public var min = Double.infinity, max = -Double.infinity
    public var minPositive = Double.infinity
}

/// A 2-D image ready for plotting: its values as float64 (masked values NaN), rows x cols.
/// Keeping one float64 copy makes every later step (statistics, reduction, colour) one
/// simple loop whatever the stored dtype.
public final class ImageData: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    /// The values (masked ones NaN), C order; they live in `storage`, an array whose
    /// memory NDArray's block cache hands back for the next frame of the same size (no
    /// zeroing, no page faults: a 2.5 M pixel frame's 20 MB were a third of its time).
    public var values: UnsafeBufferPointer<Double> { UnsafeBufferPointer(start: storage.base(Double.self), count: rows * cols) }
    public let storage: NDArray
    public let dtype: DType
    public let stats: ImageStats
    private var sortedCache: [Double]? = nil

    /// Converts a 2-D array (any dtype) with the mask rules. Throws for the wrong rank,
    /// an empty array, or a pixel mask of another shape.
    public init(_ array: NDArray, mask rules: MaskRules = MaskRules()) throws {
        guard array.ndim == 2 else {
            throw PlotError("an image needs a 2-D array, got shape \(NDArray.describe(array.shape))")
        }
        guard array.count > 0 else { throw PlotError("cannot plot an empty array (shape \(NDArray.describe(array.shape)))") }
        if let m = rules.pixelMask, m.count != array.count {
            throw PlotError("pixel mask has \(m.count) values for an image of shape \(NDArray.describe(array.shape))")
        }
        rows = array.shape[0]
        cols = array.shape[1]
        dtype = array.dtype
        let c = try array.contiguous()
        let values = try NDArray(uninitialized: [c.count], dtype: .float64)
        // one fused pass (convert, mask, count) per part, the parts on the cores; a switch
        // here, not DType.dispatch: each case is a loop specialized for its element type in
        // this module (dispatch's generic visitor is not inlinable)
        let n = c.count
        let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let parts = n >= 1 << 20 ? Swift.max(1, Swift.min(cores, 8)) : 1
        nonisolated(unsafe) let out = values.base(Double.self)
        nonisolated(unsafe) let partial = UnsafeMutableBufferPointer<ImageStats>.allocate(capacity: parts)
        partial.initialize(repeating: ImageStats())
        defer { partial.deallocate() }
        let mask = rules.pixelMask
        @Sendable func part(_ k: Int) {
            let r = (n * k / parts)..<(n * (k + 1) / parts)
            let st: ImageStats
            switch c.dtype {
            case .bool: st = ImageData.convert(c, Bool.self, rules, mask, out, r)
            case .int8: st = ImageData.convert(c, Int8.self, rules, mask, out, r)
            case .int16: st = ImageData.convert(c, Int16.self, rules, mask, out, r)
            case .int32: st = ImageData.convert(c, Int32.self, rules, mask, out, r)
            case .int64: st = ImageData.convert(c, Int64.self, rules, mask, out, r)
            case .uint8: st = ImageData.convert(c, UInt8.self, rules, mask, out, r)
            case .uint16: st = ImageData.convert(c, UInt16.self, rules, mask, out, r)
            case .uint32: st = ImageData.convert(c, UInt32.self, rules, mask, out, r)
            case .uint64: st = ImageData.convert(c, UInt64.self, rules, mask, out, r)
            case .float32: st = ImageData.convert(c, Float.self, rules, mask, out, r)
            case .float64: st = ImageData.convert(c, Double.self, rules, mask, out, r)
            }
            partial[k] = st
        }
        if parts == 1 { part(0) } else { DispatchQueue.concurrentPerform(iterations: parts) { part($0) } }
        var st = ImageStats()
        for p in partial {
            st.count += p.count
            st.min = Swift.min(st.min, p.min); st.max = Swift.max(st.max, p.max)
            st.minPositive = Swift.min(st.minPositive, p.minPositive)
        }
        st.masked = n - st.count
        storage = values
        stats = st
    }

    /// Converts elements `r` to float64 (masked ones NaN) and counts what is left.
    @inline(__always)
    private static func convert<T: NDScalar>(_ array: NDArray, _: T.Type, _ rules: MaskRules, _ mask: [UInt8]?,
                                             _ out: UnsafeMutablePointer<Double>, _ r: Range<Int>) -> ImageStats {
        let p = array.base(T.self)
        let signed = T.dtype.isSignedInteger && rules.negativeIntegers
        var top = Double.nan
        if T.dtype.isUnsignedInteger && rules.unsignedMaximum {
            switch T.dtype {
            case .uint8: top = Double(UInt8.max)
            case .uint16: top = Double(UInt16.max)
            case .uint32: top = Double(UInt32.max)
            case .uint64: top = Double(UInt64.max)
            default: break
            }
        }
        var lo = Double.infinity, hi = -Double.infinity, lop = Double.infinity
        var count = 0
        @inline(__always) func take(_ i: Int, _ v: Double) {
            out[i] = v
            if v == v {
                count += 1
                lo = Swift.min(lo, v); hi = Swift.max(hi, v)
                if v > 0 { lop = Swift.min(lop, v) }
            }
        }
        if let m = mask {
            m.withUnsafeBufferPointer { mb in
                for i in r {
                    let v = p[i].asDouble
                    take(i, (signed && v < 0) || v == top || mb[i] != 0 ? .nan : v)
                }
            }
        } else if signed {
            for i in r { let v = p[i].asDouble; take(i, v < 0 ? .nan : v) }
        } else if !top.isNaN {
            for i in r { let v = p[i].asDouble; take(i, v == top ? .nan : v) }
        } else {
            for i in r { take(i, p[i].asDouble) }
        }
        var st = ImageStats()
        st.count = count
        st.min = lo; st.max = hi; st.minPositive = lop
        return st
    }

    /// The q-th percentile (0...100) of the unmasked values (positive only if asked),
    /// with NumPy's default linear interpolation.
    public func percentile(_ q: Double, positiveOnly: Bool = false) -> Double {
        percentiles(q, q, positiveOnly: positiveOnly).0
    }

    /// Two percentiles at once. Integer images count their values in one histogram
    /// (exact, one pass over the pixels); others sort a copy once.
    public func percentiles(_ qa: Double, _ qb: Double, positiveOnly: Bool = false) -> (Double, Double) {
        let lo = positiveOnly ? stats.minPositive : stats.min
        let hi = stats.max
        guard stats.count > 0, lo <= hi else { return (.nan, .nan) }
        func fraction(_ q: Double) -> Double { Swift.max(0, Swift.min(100, q)) / 100 }
        if dtype.isInteger && hi - lo < Double(1 << 22) {
            let span = Int(hi - lo) + 1
            var counts = [Int32](repeating: 0, count: span)
            var n = 0
            counts.withUnsafeMutableBufferPointer { c in
                for x in values where x >= lo { c[Int(x - lo)] &+= 1; n += 1 }
            }
            // the k-th and (k+1)-th smallest values of both percentiles in one walk
            func orders(_ ks: [Int]) -> [Double] {
                var out = [Double](repeating: hi, count: ks.count)
                var seen = 0, j = 0
                let order = ks.enumerated().sorted { $0.element < $1.element }
                for (i, c) in counts.enumerated() where c > 0 {
                    seen += Int(c)
                    while j < order.count && seen > order[j].element { out[order[j].offset] = lo + Double(i); j += 1 }
                    if j == order.count { break }
                }
                return out
            }
            let pa = fraction(qa) * Double(n - 1), pb = fraction(qb) * Double(n - 1)
            let ka = Int(pa.rounded(.down)), kb = Int(pb.rounded(.down))
            let o = orders([ka, Swift.min(ka + 1, n - 1), kb, Swift.min(kb + 1, n - 1)])
            return (o[0] + (o[1] - o[0]) * (pa - Double(ka)), o[2] + (o[3] - o[2]) * (pb - Double(kb)))
        }
        if sortedCache == nil { sortedCache = values.filter { !$0.isNaN }.sorted() }
        var s = sortedCache![...]
        if positiveOnly {
            guard let first = s.firstIndex(where: { $0 > 0 }) else { return (.nan, .nan) }
            s = s[first...]
        }
        guard !s.isEmpty else { return (.nan, .nan) }
        func at(_ q: Double) -> Double {
            let pos = fraction(q) * Double(s.count - 1)
            let k = Int(pos.rounded(.down)), k1 = Swift.min(k + 1, s.count - 1)
            let a = s[s.startIndex + k], b = s[s.startIndex + k1]
            return a + (b - a) * (pos - Double(k))
        }
        return (at(qa), at(qb))
    }

    /// The colour limits for a scale: fixed values win, then the autoscale; a log scale
    /// counts positive values only. The note says what was odd (all masked, constant,
    /// no positive value under log) for the figure to show; never throws.
    public func limits(_ scale: Scale, autoscale: Autoscale, vmin: Double?, vmax: Double?) -> (Double, Double, note: String?) {
        if stats.count == 0 { return (0, 1, "no unmasked values (all \(stats.masked) pixels masked or NaN)") }
        let log = scale == .log
        var lo: Double, hi: Double
        switch autoscale {
        case .minmax:
            lo = log ? stats.minPositive : stats.min
            hi = stats.max
        case .percentiles(let a, let b):
            (lo, hi) = percentiles(a, b, positiveOnly: log)
        }
        if let vmin { lo = vmin }
        if let vmax { hi = vmax }
        var note: String? = nil
        if log && !(hi > 0) {
            return (1, 10, "log scale: no positive values (maximum \(formatValue(stats.max)))")
        }
        if log && !(lo > 0) { lo = Swift.min(stats.minPositive, hi / 10) ; if !(lo > 0) { lo = hi / 10 } }
        if lo == hi {
            note = "constant value \(formatValue(lo))"
        }
        if lo > hi { swap(&lo, &hi) }
        return (lo, hi, note)
    }
}

func formatValue(_ v: Double) -> String {
    if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
    return String(v)
}

/// Plot errors: messages say what to do instead.
public struct PlotError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
