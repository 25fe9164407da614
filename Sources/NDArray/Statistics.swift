/// Statistics over axes, built on the reductions of Reduce.swift: variance and standard
/// deviation (two passes), NaN-ignoring means, counts and truth tests, the means of valid
/// detector pixels, and the positions of extremes (argmin/argmax).
extension NDArray {
    // MARK: means, variances

    /// NumPy's nanmean: the mean of the elements that are not NaN (NaN for an all-NaN
    /// slice). Integer arrays have no NaN: their mean. float32 stays float32.
    public func nanmean(axes: [Int]? = nil, keepdims: Bool = false) throws -> NDArray {
        guard dtype.isFloat else { return try mean(axes: axes, keepdims: keepdims) }
        let ax = try normalizedAxes(axes)
        let s = try reduce(.nansum, normalized: ax, keepdims: keepdims, resultType: .float64)
        let n = try reduce(.countNumbers, normalized: ax, keepdims: keepdims)
        return try NDArray.quotient(s, n, as: dtype)
    }

    /// Detector data: the mean of the elements >= 0 (gap and dead pixels, marked -1 and
    /// -2, and NaN left out), NaN where a slice has none. float64 (float32 stays float32).
    public func meanValid(axes: [Int]? = nil, keepdims: Bool = false) throws -> NDArray {
        let ax = try normalizedAxes(axes)
        let s = try reduce(.sumValid, normalized: ax, keepdims: keepdims, resultType: dtype.isFloat ? .float64 : nil)
        let n = try reduce(.countValid, normalized: ax, keepdims: keepdims)
        return try NDArray.quotient(s, n, as: dtype)
    }

    /// s / n elementwise in float64 (float32 when `like` is float32), for means.
    static func quotient(_ s: NDArray, _ n: NDArray, as like: DType) throws -> NDArray {
        let q = try s.copy(as: .float64)
        let p = q.base(Double.self), c = n.base(Int64.self)
        for i in 0..<q.count { p[i] /= Double(c[i]) }
        return like == .float32 ? try q.copy(as: .float32) : q
    }

    /// The variance, in float64, by two passes (the mean of each slice, then the mean of
    /// the squared deviations from it), so that data far from zero (1e8 + noise) keep their
    /// digits. Divides by N - ddof, as NumPy (NaN, or inf, where that is not positive).
    /// `skippingNaN`: NumPy's nanvar (NaN elements left out; an all-NaN slice gives NaN).
    public func variance(axes: [Int]? = nil, keepdims: Bool = false, ddof: Double = 0,
                         skippingNaN: Bool = false) throws -> NDArray {
        let ax = try normalizedAxes(axes)
        let nan = skippingNaN && dtype.isFloat
        // first pass: the sums (exact int64 for integers, float64 for floats) and counts
        let sums = try reduce(nan ? .nansum : .sum, normalized: ax, keepdims: true,
                              resultType: dtype.isFloat ? .float64 : nil).copy(as: .float64)
        let counts: NDArray? = nan ? try reduce(.countNumbers, normalized: ax, keepdims: true) : nil
        let n = ax.reduce(1) { $0 * shape[$1] }
        let center = sums.base(Double.self)
        for i in 0..<sums.count { center[i] /= Double(counts?.base(Int64.self)[i] ?? Int64(n)) }
        // second pass: the squared deviations from each slice's mean
        let out = try reduce(nan ? .nanSquaredDeviations : .squaredDeviations, normalized: ax, keepdims: true,
                             center: sums)
        let p = out.base(Double.self)
        for i in 0..<out.count {
            let count = Double(counts?.base(Int64.self)[i] ?? Int64(n))
            p[i] /= Swift.max(count - ddof, 0)
        }
        return keepdims ? out : out.droppingAxes(ax)
    }

    /// The standard deviation: the square root of `variance` (same arguments).
    public func standardDeviation(axes: [Int]? = nil, keepdims: Bool = false, ddof: Double = 0,
                                  skippingNaN: Bool = false) throws -> NDArray {
        let v = try variance(axes: axes, keepdims: keepdims, ddof: ddof, skippingNaN: skippingNaN)
        let p = v.base(Double.self)
        for i in 0..<v.count { p[i] = p[i].squareRoot() }
        return v
    }

    // MARK: counts and truth tests

    /// How many elements are not zero (NaN counts), in int64.
    public func countNonzero(axes: [Int]? = nil, keepdims: Bool = false) throws -> NDArray {
        try reduce(.countNonzero, axes: axes, keepdims: keepdims)
    }

    /// Whether any element is not zero (NaN is), as a bool array; false for empty slices.
    public func any(axes: [Int]? = nil, keepdims: Bool = false) throws -> NDArray {
        try truth(axes, keepdims) { count, _ in count > 0 }
    }

    /// Whether every element is not zero, as a bool array; true for empty slices.
    public func all(axes: [Int]? = nil, keepdims: Bool = false) throws -> NDArray {
        try truth(axes, keepdims) { count, n in count == n }
    }

    private func truth(_ axes: [Int]?, _ keepdims: Bool, _ test: (Int64, Int64) -> Bool) throws -> NDArray {
        let ax = try normalizedAxes(axes)
        let n = Int64(ax.reduce(1) { $0 * shape[$1] })
        let counts = try reduce(.countNonzero, normalized: ax, keepdims: keepdims)
        let out = try NDArray(uninitialized: counts.shape, dtype: .bool)
        let c = counts.base(Int64.self), o = out.base(Bool.self)
        for i in 0..<out.count { o[i] = test(c[i], n) }
        return out
    }
}

// MARK: - argmin, argmax

/// The position of the smallest or largest element. The plain forms let NaN win as
/// NumPy's do (the first NaN is the answer); the nan forms skip NaN and refuse an
/// all-NaN slice. For integer arrays both forms are the same.
public enum ArgReduction: String, Sendable {
    case argmin, argmax, nanargmin, nanargmax

    var plain: ArgReduction {
        switch self {
        case .nanargmin: return .argmin
        case .nanargmax: return .argmax
        default: return self
        }
    }
}

extension NDArray {
    /// The int64 indices of the first extreme along `axis`, or, without an axis, the flat
    /// (C order) index in the whole array, as NumPy's argmin/argmax. `keepdims` keeps the
    /// reduced axis (or all axes) with length 1.
    public func argReduce(_ op: ArgReduction, axis: Int? = nil, keepdims: Bool = false) throws -> NDArray {
        let op = dtype.isFloat ? op : op.plain
        let reduced = try axis.map { try normalizedAxes([$0]) } ?? Array(0..<ndim)
        if let empty = reduced.first(where: { shape[$0] == 0 }) {
            throw ArrayError("attempt to get \(op.rawValue) of an empty sequence (axis \(empty) of shape "
                             + "\(NDArray.describe(shape)) has length 0)")
        }
        let keptShape = shape.enumerated().map { reduced.contains($0.offset) ? 1 : $0.element }
        let index = try NDArray(zeros: keptShape, dtype: .int64)
        let best = try NDArray(zeros: keptShape, dtype: dtype)
        if index.count > 0 {
            let allNaN = dtype.dispatch(ArgSource(src: self, axis: axis == nil ? nil : reduced[0], op: op,
                                                  best: best, index: index))
            if let flat = allNaN {
                throw ArrayError(allNaNMessage(op, flat: flat, keptShape: keptShape, reduced: reduced, whole: axis == nil))
            }
        }
        return keepdims ? index : index.droppingAxes(reduced)
    }

    /// "All-NaN slice encountered in nanargmax: a[2, :] of shape (4, 3) is all NaN".
    private func allNaNMessage(_ op: ArgReduction, flat: Int, keptShape: [Int], reduced: [Int], whole: Bool) -> String {
        if whole {
            return "All-NaN slice encountered in \(op.rawValue): all \(count) elements of shape \(NDArray.describe(shape)) are NaN"
        }
        var rest = flat
        var items = [String](repeating: ":", count: ndim)
        for axis in stride(from: ndim - 1, through: 0, by: -1) where !reduced.contains(axis) {
            items[axis] = String(rest % keptShape[axis])
            rest /= keptShape[axis]
        }
        return "All-NaN slice encountered in \(op.rawValue): a[\(items.joined(separator: ", "))] of shape "
            + "\(NDArray.describe(shape)) is all NaN"
    }
}

/// Which of two elements an arg-reduction prefers; strict, so that the first of equal
/// elements stays (the loops visit positions in increasing order).
protocol ArgOrder: Sendable {
    static func better<S: NDScalar>(_ x: S, than best: S) -> Bool
}

extension ArgOrder {
    /// The better of two integers, branch-free (vectorises): a block's candidate.
    @inline(__always)
    static func pick<S: NDScalar>(_ a: S, _ b: S) -> S { better(b, than: a) ? b : a }
}

enum ArgMinOrder: ArgOrder {
    @inline(__always)
    static func better<S: NDScalar>(_ x: S, than b: S) -> Bool {
        if S.dtype.isFloat {
            let u = x.asDouble, v = b.asDouble
            if v.isNaN { return false }
            return u.isNaN || u < v
        }
        return Ops.less(x, b)
    }
}

enum ArgMaxOrder: ArgOrder {
    @inline(__always)
    static func better<S: NDScalar>(_ x: S, than b: S) -> Bool {
        if S.dtype.isFloat {
            let u = x.asDouble, v = b.asDouble
            if v.isNaN { return false }
            return u.isNaN || u > v
        }
        return Ops.less(b, x)
    }
}

enum NanArgMinOrder: ArgOrder {
    @inline(__always)
    static func better<S: NDScalar>(_ x: S, than b: S) -> Bool {
        let u = x.asDouble, v = b.asDouble
        if u.isNaN { return false }
        return v.isNaN || u < v
    }
}

enum NanArgMaxOrder: ArgOrder {
    @inline(__always)
    static func better<S: NDScalar>(_ x: S, than b: S) -> Bool {
        let u = x.asDouble, v = b.asDouble
        if u.isNaN { return false }
        return v.isNaN || u > v
    }
}

/// The arg-reduction loops. Three operands walk together: the source, the results (best
/// value and its index; stride 0 along the reduced axes) and a position operand whose
/// offset is the index along the reduced axis (stride 1 there) or, for the whole array,
/// the flat C-order index (C-order strides). Returns the flat result index of the first
/// all-NaN slice, if the nan forms met one.
private struct ArgSource: DTypeVisitor {
    let src: NDArray, axis: Int?, op: ArgReduction, best: NDArray, index: NDArray

    func visit<S: NDScalar>(_: S.Type) -> Int? {
        switch op {
        case .argmin: run(S.self, ArgMinOrder.self)
        case .argmax: run(S.self, ArgMaxOrder.self)
        case .nanargmin: run(S.self, NanArgMinOrder.self)
        case .nanargmax: run(S.self, NanArgMaxOrder.self)
        }
        guard op == .nanargmin || op == .nanargmax else { return nil }
        let b = best.base(S.self)
        return (0..<best.count).first { b[$0].asDouble.isNaN }
    }

    func run<S: NDScalar, O: ArgOrder>(_: S.Type, _: O.Type) {
        let nd = src.ndim
        if nd == 0 { return }  // index 0
        var outStrides = best.strides
        var posStrides: [Int]
        if let axis {
            outStrides[axis] = 0
            posStrides = [Int](repeating: 0, count: nd)
            posStrides[axis] = 1
        } else {
            outStrides = [Int](repeating: 0, count: nd)
            posStrides = NDArray.contiguousStrides(src.shape)
        }
        // loop order: the other axes but the last, the reduced axis, the last axis (so the
        // inner loop runs along memory and visits positions in increasing order)
        let last = nd - 1
        var order = Array(0..<nd)
        if let axis, axis != last {
            order = (0..<nd).filter { $0 != axis && $0 != last } + [axis, last]
        }
        let shape = order.map { src.shape[$0] }, ss = order.map { src.strides[$0] }
        let os = order.map { outStrides[$0] }, ps = order.map { posStrides[$0] }
        let threads = threadCount(elements: src.count)

        if let axis {
            // start from the first element of each slice
            let first = try! src.view(Selection(src.shape.indices.map { $0 == axis ? .index(.int(0)) : .range(nil, nil, nil) }))
            try! first.copy(into: best.droppingAxes([axis]))
            // the outer loop axis is kept: threads write disjoint results
            let parts = order[0] != axis ? min(threads, shape[0]) : 1
            let source = self.src, best = self.best, index = self.index
            parallel(parts) { t in
                let r = partition(shape[0], parts, t)
                var sub = shape
                sub[0] = r.count
                ArgSource.kernel(S.self, O.self, src: source, best: best, index: index, shape: sub, ss: ss, os: os, ps: ps,
                                 srcOffset: r.lowerBound * ss[0], outOffset: r.lowerBound * os[0],
                                 posOffset: r.lowerBound * ps[0])
            }
            return
        }
        // the whole array: each thread takes a range of the outer axis into its own 0-d
        // result, merged in order (a later range wins only when strictly better)
        let parts = shape[0] >= threads ? threads : 1
        let partials = parts == 1 ? nil : try? (0..<parts).map { _ in
            (try NDArray(zeros: [], dtype: src.dtype), try NDArray(zeros: [], dtype: .int64))
        }
        let results = partials ?? [(best.droppingAxes(Array(0..<nd)), index.droppingAxes(Array(0..<nd)))]
        let source = self.src
        parallel(results.count) { t in
            let r = partition(shape[0], results.count, t)
            var sub = shape
            sub[0] = r.count
            let (b, i) = results[t]
            b.base(S.self).pointee = (source.base(S.self) + r.lowerBound * ss[0]).pointee
            i.base(Int64.self).pointee = Int64(r.lowerBound * ps[0])
            ArgSource.kernel(S.self, O.self, src: source, best: b, index: i, shape: sub, ss: ss, os: os, ps: ps,
                             srcOffset: r.lowerBound * ss[0], outOffset: 0, posOffset: r.lowerBound * ps[0])
        }
        if partials != nil {
            var b = results[0].0.base(S.self).pointee, i = results[0].1.base(Int64.self).pointee
            for (pb, pi) in results.dropFirst() where O.better(pb.base(S.self).pointee, than: b) {
                b = pb.base(S.self).pointee
                i = pi.base(Int64.self).pointee
            }
            best.base(S.self).pointee = b
            index.base(Int64.self).pointee = i
        }
    }

    static func kernel<S: NDScalar, O: ArgOrder>(_: S.Type, _: O.Type, src: NDArray, best: NDArray, index: NDArray,
                                                 shape: [Int], ss: [Int], os: [Int], ps: [Int],
                                                 srcOffset: Int, outOffset: Int, posOffset: Int) {
        let s = src.base(S.self) + srcOffset
        let b = best.base(S.self) + outOffset, ix = index.base(Int64.self) + outOffset
        let sIn = ss.last!, oIn = os.last!, pIn = ps.last!
        forEachRow(shape: shape, strides: [ss, os, ps], offsets: [0, 0, posOffset], interruptible: true) { offs, n in
            let row = s + offs[0]
            if oIn == 0 {
                // along the reduced axis: the row's best, kept in registers
                var v = b[offs[1]], at = ix[offs[1]]
                if !S.dtype.isFloat && sIn == 1 {
                    // integers: the extreme of each block by a vectorised loop; only a block
                    // that beats the best so far is scanned for its first position
                    var k = 0
                    while k < n {
                        let e = Swift.min(k + 512, n)
                        var m = row[k]
                        for j in (k + 1)..<e { m = O.pick(m, row[j]) }
                        if O.better(m, than: v) {
                            for j in k..<e where O.better(row[j], than: v) {
                                v = row[j]
                                at = Int64(offs[2] + j * pIn)
                            }
                        }
                        k = e
                    }
                } else {
                    for k in 0..<n where O.better(row[k * sIn], than: v) {
                        v = row[k * sIn]
                        at = Int64(offs[2] + k * pIn)
                    }
                }
                b[offs[1]] = v
                ix[offs[1]] = at
            } else {
                // across kept positions: one candidate per result element, branch-free
                let bo = b + offs[1], io = ix + offs[1], p = Int64(offs[2])
                if sIn == 1 && oIn == 1 {
                    for k in 0..<n {
                        let x = row[k], old = bo[k], take = O.better(x, than: old)
                        bo[k] = take ? x : old
                        io[k] = take ? p : io[k]
                    }
                } else {
                    for k in 0..<n {
                        let x = row[k * sIn], old = bo[k * oIn], take = O.better(x, than: old)
                        bo[k * oIn] = take ? x : old
                        io[k * oIn] = take ? p : io[k * oIn]
                    }
                }
            }
        }
    }
}
