/// Reductions over axes: sum, prod, min, max, mean, their NaN-ignoring forms, counts, the
/// sums of valid (non-negative) detector pixels and the second pass of the variance. Sums
/// of integers accumulate in int64 (uint64 for unsigned), as NumPy's default, and run near
/// memory bandwidth.
///
/// One design serves every axis choice: the output is viewed with stride 0 along the
/// reduced axes, and the loop order puts the reduced axes just inside the kept ones, so
/// that an output row stays in cache while the source streams through once.
public enum Reduction: String, Sendable {
    case sum, prod, min, max
    /// NumPy's nansum, nanmin, nanmax: NaN is skipped (an all-NaN slice gives NaN for
    /// nanmin/nanmax, 0 for nansum). For integer dtypes they are the plain reductions.
    case nansum, nanmin, nanmax
    /// How many elements are not zero (NaN counts), in int64.
    case countNonzero = "count_nonzero"
    /// How many elements are not NaN, in int64.
    case countNumbers = "count_numbers"
    /// Detector data: the sum of the elements >= 0 and how many there are. Gap pixels
    /// (-1), dead pixels (-2) and NaN are left out; unsigned elements are all valid.
    case sumValid = "sum_valid", countValid = "count_valid"
    /// The variance's second pass: the sum of (x - c)^2 in float64, with one centre c per
    /// result element; the nan form skips NaN.
    case squaredDeviations = "squared_deviations", nanSquaredDeviations = "nan_squared_deviations"

    /// The dtype of the result for a source dtype, as NumPy's defaults: sums and products
    /// accumulate (int64, uint64, the float itself), min/max keep the dtype, counts are int64.
    public func resultType(_ d: DType) -> DType {
        switch self {
        case .sum, .prod, .nansum, .sumValid: return d.accumulator
        case .min, .max, .nanmin, .nanmax: return d
        case .countNonzero, .countNumbers, .countValid: return .int64
        case .squaredDeviations, .nanSquaredDeviations: return .float64
        }
    }

    /// Sums and counts: they start from zero and merge partial results by adding.
    var isSum: Bool {
        switch self {
        case .sum, .nansum, .countNonzero, .countNumbers, .sumValid, .countValid: return true
        default: return false
        }
    }

    /// min/max start from the first element of each slice (they have no identity).
    var startsFromFirst: Bool { self == .min || self == .max || self == .nanmin || self == .nanmax }

    /// The plain reduction a NaN-aware one is for a dtype without NaN.
    func forDType(_ d: DType) -> Reduction {
        if d.isFloat { return self }
        switch self {
        case .nansum: return .sum
        case .nanmin: return .min
        case .nanmax: return .max
        case .nanSquaredDeviations: return .squaredDeviations
        default: return self
        }
    }
}

extension NDArray {
    /// Normalised axes (negative count from the end); nil means all axes.
    public func normalizedAxes(_ axes: [Int]?) throws -> [Int] {
        try NDArray.normalizedAxes(axes, ndim: ndim)
    }

    /// The same for any number of dimensions (a lazy field's, before it is read).
    public static func normalizedAxes(_ axes: [Int]?, ndim: Int) throws -> [Int] {
        guard let axes else { return Array(0..<ndim) }
        var out: [Int] = []
        for a in axes {
            let n = a < 0 ? a + ndim : a
            guard n >= 0, n < ndim else {
                throw ArrayError("axis \(a) is out of bounds for array of dimension \(ndim)")
            }
            guard !out.contains(n) else { throw ArrayError("duplicate value in 'axis': \(a)") }
            out.append(n)
        }
        return out.sorted()
    }

    /// Reduces over `axes` (nil: all); `keepdims` keeps them with length 1.
    public func reduce(_ op: Reduction, axes: [Int]? = nil, keepdims: Bool = false) throws -> NDArray {
        try reduce(op, normalized: try normalizedAxes(axes), keepdims: keepdims)
    }

    /// The one reduction entry: `axes` normalised; `resultType` overrides the accumulator
    /// (e.g. float64 sums of float32 for the variance); `center` (float64, the kept shape
    /// with length 1 along `axes`) gives the squared deviations their centres.
    func reduce(_ op: Reduction, normalized axes: [Int], keepdims: Bool, resultType: DType? = nil,
                center: NDArray? = nil) throws -> NDArray {
        let op = op.forDType(dtype)
        if op.startsFromFirst, let empty = axes.first(where: { shape[$0] == 0 }) {
            throw ArrayError("zero-size array to reduction operation \(op.rawValue) which has no identity "
                             + "(axis \(empty) of shape \(NDArray.describe(shape)) has length 0)")
        }
        let outType = resultType ?? op.resultType(dtype)
        let keptShape = shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
        let out = try NDArray(zeros: keptShape, dtype: outType)
        precondition(center == nil || (center!.shape == keptShape && center!.dtype == .float64 && center!.isContiguous))
        dtype.dispatch(ReduceSource(src: self, out: out, axes: axes, op: op, center: center))
        if keepdims { return out }
        return out.droppingAxes(axes)
    }

    /// A contiguous result of a keepdims reduction without its length-1 `axes` (a view).
    func droppingAxes(_ axes: [Int]) -> NDArray {
        let finalShape = shape.enumerated().filter { !axes.contains($0.offset) }.map { $0.element }
        return NDArray(dtype: dtype, shape: finalShape, strides: NDArray.contiguousStrides(finalShape),
                       offset: offset, storage: storage)
    }

    /// Folds this array's reduction over `axes` into `out`, which holds the same
    /// reduction of earlier blocks (shape with the reduced axes kept as 1, the
    /// accumulator dtype, contiguous): how a field bigger than memory is reduced block by
    /// block without a temporary per block.
    public func reduce(_ op: Reduction, axes: [Int]?, accumulatingInto out: NDArray) throws {
        let op = op.forDType(dtype)
        guard op != .squaredDeviations && op != .nanSquaredDeviations else {
            throw ArrayError("\(op.rawValue) needs its centres and cannot accumulate")
        }
        let axes = try normalizedAxes(axes)
        let keptShape = shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
        let outType = op.resultType(dtype)
        guard out.shape == keptShape, out.dtype == outType, out.isContiguous else {
            throw ArrayError("cannot accumulate a \(op.rawValue) of shape \(NDArray.describe(keptShape)) (\(outType.rawValue)) into an array of shape \(NDArray.describe(out.shape)) (\(out.dtype.rawValue))")
        }
        if count == 0 { return }
        dtype.dispatch(ReduceSource(src: self, out: out, axes: axes, op: op, center: nil, accumulating: true))
    }

    public func sum(axes: [Int]? = nil, keepdims: Bool = false) throws -> NDArray {
        try reduce(.sum, axes: axes, keepdims: keepdims)
    }

    /// The mean in float64 (float32 stays float32), as NumPy.
    public func mean(axes: [Int]? = nil, keepdims: Bool = false) throws -> NDArray {
        let axes = try normalizedAxes(axes)
        let n = axes.reduce(1) { $0 * shape[$1] }
        let s = try reduce(.sum, axes: axes, keepdims: keepdims)
        let out = try s.copy(as: dtype == .float32 ? .float32 : .float64)
        out.dtype.dispatch(Scale(array: out, factor: 1 / Double(n)))
        return out
    }
}

private struct Scale: DTypeVisitor {
    let array: NDArray, factor: Double
    func visit<T: NDScalar>(_: T.Type) {
        let p = array.base(T.self)
        for i in 0..<array.count { p[i] = T(fromDouble: p[i].asDouble * factor) }
    }
}

private struct ReduceSource: DTypeVisitor {
    let src: NDArray, out: NDArray, axes: [Int], op: Reduction, center: NDArray?
    /// `out` holds a partial result already: fold into it instead of starting afresh.
    var accumulating = false
    func visit<S: NDScalar>(_: S.Type) {
        // one specialisation per (source, accumulator) pair that occurs
        switch out.dtype {
        case src.dtype: run(S.self, S.self)
        case .int64: run(S.self, Int64.self)
        case .uint64: run(S.self, UInt64.self)
        case .float64: run(S.self, Double.self)
        case .float32: run(S.self, Float.self)
        default: preconditionFailure("no \(out.dtype) accumulator for \(src.dtype)")
        }
    }

    func run<Src: NDScalar, Acc: NDScalar>(_: Src.Type, _: Acc.Type) {
        let nd = src.ndim
        // output strides over the source's shape: 0 along reduced axes
        var outStrides = out.strides
        for a in axes { outStrides[a] = 0 }
        // loop order: kept axes (but the last), reduced axes, then the last axis
        let last = nd - 1
        var order: [Int] = []
        if nd > 0 {
            order = (0..<last).filter { !axes.contains($0) } + (0..<last).filter { axes.contains($0) } + [last]
        }
        let shape = order.map { src.shape[$0] }
        let ss = order.map { src.strides[$0] }
        let os = order.map { outStrides[$0] }
        // initial values: the first element along the reduced axes for min/max
        if accumulating {
            // out is the running result: nothing to initialise
        } else if op.startsFromFirst {
            let first = try! src.view(Selection(src.shape.indices.map { axes.contains($0) ? .index(.int(0)) : .range(nil, nil, nil) }))
            try! first.copy(into: NDArray(dtype: out.dtype, shape: first.shape,
                                          strides: out.strides.enumerated().filter { !axes.contains($0.offset) }.map { $0.element },
                                          offset: out.offset, storage: out.storage))
        } else if op == .prod {
            out.fill(1)
        }
        // centres of the squared deviations: laid out as the output
        let center = self.center
        // Fast path: the leading axes of a contiguous array reduce as an (F, M) matrix
        // down its columns, in column blocks whose accumulators stay in L1 while each
        // frame contributes one long contiguous read.
        let k = axes.count
        if nd > 1, k < nd, axes == Array(0..<k), src.isContiguous, out.isContiguous {
            let frames = src.shape[0..<k].reduce(1, *), m = src.shape[k...].reduce(1, *)
            let block = 16384  // 128 KB of int64 accumulators: L2-resident (measured best of 1K-128K)
            let blocks = (m + block - 1) / block
            let threads = max(1, min(threadCount(elements: src.count), blocks))  // blocks may be 0
            let src = self.src, out = self.out, op = self.op
            let firstFrame = op.startsFromFirst && !accumulating ? 1 : 0  // min/max start from frame 0
            let widening = Src.self == Int32.self && Acc.self == Int64.self
            let simd: Int32Terms? = !widening ? nil : op == .sum ? .value : op == .sumValid ? .valid
                : op == .countValid ? .countValid : op == .countNonzero ? .nonzero : nil
            parallel(threads) { t in
                let s = src.base(Src.self), o = out.base(Acc.self), centre = center?.base(Double.self)
                for b in partition(blocks, threads, t) {
                    if Interruption.requested { return }
                    let lo = b * block, n = min(block, m - lo)
                    var f = firstFrame
                    if let simd {
                        // eight frames per pass (then four, then the rest): eight streams
                        // in flight, an eighth of the accumulator traffic
                        while f + 8 <= frames {
                            addWideningFrames(UnsafeRawPointer(s + f * m + lo), m * 4, 8, UnsafeMutableRawPointer(o + lo), n, simd)
                            f += 8
                        }
                        if f + 4 <= frames {
                            addWideningFrames(UnsafeRawPointer(s + f * m + lo), m * 4, 4, UnsafeMutableRawPointer(o + lo), n, simd)
                            f += 4
                        }
                    }
                    while f < frames {
                        Ops.rowInto(op, s + f * m + lo, 1, o + lo, 1, n, centre.map { $0 + lo })
                        f += 1
                    }
                }
            }
            return
        }
        // Fast path: trailing axes of a contiguous array (per-frame sums, full sums) into an
        // integer accumulator. Each result element folds one contiguous block, read in
        // pieces of about a million elements: spread over the cores even when there are
        // fewer results than cores, a Ctrl-C poll after each; integer sums are exact in
        // any order. (The general path went row by row of the last axis, 1475 elements.)
        if nd > 0, k > 0, axes == Array((nd - k)..<nd), src.isContiguous, out.isContiguous, center == nil,
           op.isSum, !Acc.dtype.isFloat {
            let rows = src.shape[0..<(nd - k)].reduce(1, *), m = src.shape[(nd - k)...].reduce(1, *)
            if rows == 0 || m == 0 { return }  // out holds the zeros (or the running result)
            let piece = max(1, Interruption.block)
            let segments = (m + piece - 1) / piece
            let src = self.src, out = self.out, op = self.op
            if segments == 1 {
                // whole results per piece: each thread writes its own
                let rowsPerPiece = max(1, piece / m)
                let pieces = (rows + rowsPerPiece - 1) / rowsPerPiece
                let threads = max(1, min(threadCount(elements: src.count), pieces))
                parallel(threads) { t in
                    let s = src.base(Src.self), o = out.base(Acc.self)
                    for p in partition(pieces, threads, t) {
                        for r in (p * rowsPerPiece)..<min(rows, (p + 1) * rowsPerPiece) {
                            o[r] = Ops.row(op, s + r * m, 1, m, into: o[r], center: 0)
                        }
                        if Interruption.requested { return }
                    }
                }
            } else {
                // pieces of results: partial sums, added up afterwards
                let pieces = rows * segments
                let threads = max(1, min(threadCount(elements: src.count), pieces))
                let partial = UnsafeMutablePointer<Acc>.allocate(capacity: pieces)
                partial.initialize(repeating: Acc.zero, count: pieces)
                defer { partial.deallocate() }
                nonisolated(unsafe) let parts = partial
                parallel(threads) { t in
                    let s = src.base(Src.self)
                    for p in partition(pieces, threads, t) {
                        let r = p / segments, lo = (p % segments) * piece
                        parts[p] = Ops.row(op, s + r * m + lo, 1, min(piece, m - lo), into: Acc.zero, center: 0)
                        if Interruption.requested { return }
                    }
                }
                let o = out.base(Acc.self)
                for r in 0..<rows {
                    var v = o[r]
                    for g in 0..<segments { v = Ops.merge(op, v, partial[r * segments + g]) }
                    o[r] = v
                }
            }
            return
        }
        // parallel over the outermost kept axis when there is one, else over the
        // outermost reduced axis into private partial results
        let threads = threadCount(elements: src.count)
        let keptOuter = order.first.map { !axes.contains($0) } ?? false
        // a full reduction over the outer axis gives each thread a private result; without
        // memory for those, it runs on one thread instead of failing
        let usesPartials = nd > 0 && !keptOuter && threads > 1 && shape[0] >= threads
        let partials = usesPartials ? try? (0..<threads).map { _ in try NDArray(zeros: out.shape, dtype: out.dtype) } : nil
        // outer rows per piece between two Ctrl-C polls (about a million elements)
        let outerStep = nd > 0 ? Interruption.block / max(1, src.count / max(1, shape[0])) : 1
        if nd == 0 {
            kernel(Src.self, Acc.self, shape: shape, ss: ss, os: os, srcOffset: 0, outOffset: 0, out: out, center: center)
        } else if let partials {
            // partials start from the identity (min/max: from out, which merging repeats harmlessly)
            if op.startsFromFirst { for p in partials { try! out.copy(into: p) } } else if op == .prod { for p in partials { p.fill(1) } }
            parallel(threads) { k in
                interruptibly(partition(shape[0], threads, k), step: outerStep) { r in
                    var sub = shape
                    sub[0] = r.count
                    kernel(Src.self, Acc.self, shape: sub, ss: ss, os: os,
                           srcOffset: r.lowerBound * ss[0], outOffset: 0, out: partials[k], center: center)
                }
            }
            // an accumulating reduction merges the running result in too
            combine(Acc.self, partials: partials, into: out, includingOut: accumulating && !op.startsFromFirst)
        } else {
            let parts = keptOuter ? max(1, min(threads, shape[0])) : 1  // shape[0] may be 0
            parallel(parts) { k in
                interruptibly(partition(shape[0], parts, k), step: outerStep) { r in
                    var sub = shape
                    sub[0] = r.count
                    kernel(Src.self, Acc.self, shape: sub, ss: ss, os: os,
                           srcOffset: r.lowerBound * ss[0], outOffset: r.lowerBound * os[0], out: out, center: center)
                }
            }
        }
    }

    func combine<Acc: NDScalar>(_: Acc.Type, partials: [NDArray], into out: NDArray, includingOut: Bool) {
        let o = out.base(Acc.self)
        for i in 0..<out.count {
            var v = partials[0].base(Acc.self)[i]
            if includingOut { v = Ops.merge(op, o[i], v) }
            for p in partials.dropFirst() { v = Ops.merge(op, v, p.base(Acc.self)[i]) }
            o[i] = v
        }
    }

    func kernel<Src: NDScalar, Acc: NDScalar>(_: Src.Type, _: Acc.Type, shape: [Int], ss: [Int], os: [Int],
                                              srcOffset: Int, outOffset: Int, out: NDArray, center: NDArray?) {
        let s = src.base(Src.self) + srcOffset
        let o = out.base(Acc.self) + outOffset
        // the centres sit at the same element offsets as the (main or partial) output
        let c = center.map { $0.base(Double.self) + outOffset }
        let sIn = ss.last ?? 1, oIn = os.last ?? 1
        let op = self.op
        forEachRow(shape: shape, strides: [ss, os], offsets: [0, 0]) { offs, n in
            let sp = s + offs[0], op0 = o + offs[1]
            if oIn == 0 {
                op0.pointee = Ops.row(op, sp, sIn, n, into: op0.pointee, center: c?[offs[1]] ?? 0)
            } else {
                Ops.rowInto(op, sp, sIn, op0, oIn, n, c.map { $0 + offs[1] })
            }
        }
    }
}

/// The inner loops, specialised per (source, accumulator) type pair. Each reduction is a
/// fold of source elements into an accumulator (`row`, `rowInto`) plus a merge of two
/// accumulators (`merge`, for per-thread partial results); the switch over the operation
/// sits outside the loops.
enum Ops {
    /// Merges two partial results of `op`.
    @inline(__always)
    static func merge<A: NDScalar>(_ op: Reduction, _ a: A, _ b: A) -> A {
        switch op {
        case .prod: return mul(a, b)
        case .min: return less(b, a) ? b : a
        case .max: return less(a, b) ? b : a
        case .nanmin: return isNaN(a) || (!isNaN(b) && less(b, a)) ? b : a
        case .nanmax: return isNaN(a) || (!isNaN(b) && less(a, b)) ? b : a
        case .sum, .nansum, .countNonzero, .countNumbers, .sumValid, .countValid,
             .squaredDeviations, .nanSquaredDeviations:
            return add(a, b)
        }
    }

    @inline(__always)
    static func convert<S: NDScalar, A: NDScalar>(_ v: S, to: A.Type) -> A {
        if let x = v as? A { return x }
        if A.dtype.isFloat { return A(fromDouble: v.asDouble) }
        return A(fromInt: v.asInt64)
    }

    @inline(__always)
    static func add<A: NDScalar>(_ a: A, _ b: A) -> A {
        if A.self == Int64.self { return unsafeBitCast((a as! Int64) &+ (b as! Int64), to: A.self) }
        if A.self == UInt64.self { return unsafeBitCast((a as! UInt64) &+ (b as! UInt64), to: A.self) }
        if A.self == Double.self { return unsafeBitCast((a as! Double) + (b as! Double), to: A.self) }
        if A.self == Float.self { return unsafeBitCast((a as! Float) + (b as! Float), to: A.self) }
        return A(fromDouble: a.asDouble + b.asDouble)
    }

    @inline(__always)
    static func mul<A: NDScalar>(_ a: A, _ b: A) -> A {
        if A.self == Int64.self { return unsafeBitCast((a as! Int64) &* (b as! Int64), to: A.self) }
        if A.self == UInt64.self { return unsafeBitCast((a as! UInt64) &* (b as! UInt64), to: A.self) }
        return A(fromDouble: a.asDouble * b.asDouble)
    }

    @inline(__always)
    static func isNaN<A: NDScalar>(_ a: A) -> Bool { A.dtype.isFloat && a.asDouble.isNaN }

    /// Whether an element counts as a valid detector pixel: >= 0 (NaN is not).
    @inline(__always)
    static func isValid<S: NDScalar>(_ x: S) -> Bool {
        if S.dtype.isFloat { return x.asDouble >= 0 }
        if S.dtype.isSignedInteger { return x.asInt64 >= 0 }
        return true
    }

    /// a < b, with NaN propagating as NumPy's min/max do (a NaN wins).
    @inline(__always)
    static func less<A: NDScalar>(_ a: A, _ b: A) -> Bool {
        if A.dtype.isFloat {
            let x = a.asDouble, y = b.asDouble
            if x.isNaN { return false }
            if y.isNaN { return true }
            return x < y
        }
        if A.dtype.isUnsignedInteger { return UInt64(bitPattern: a.asInt64) < UInt64(bitPattern: b.asInt64) }
        return a.asInt64 < b.asInt64
    }

    /// Folds a source row into one accumulator value.
    @inline(__always)
    static func row<S: NDScalar, A: NDScalar>(_ op: Reduction, _ s: UnsafeMutablePointer<S>, _ stride: Int,
                                              _ n: Int, into start: A, center c: Double) -> A {
        if S.self == Int32.self, A.self == Int64.self, op == .sum || op == .sumValid || op == .countValid || op == .countNonzero {
            // int32 detector data: branch-free loops the compiler vectorises
            let p = UnsafeMutableRawPointer(s).assumingMemoryBound(to: Int32.self)
            var acc: Int64 = 0
            switch (op, stride) {
            case (.sum, 1): acc = sumWidening(UnsafeRawPointer(p), n, .value)
            case (.sum, _): for k in 0..<n { acc &+= Int64(p[k * stride]) }
            case (.sumValid, 1): acc = sumWidening(UnsafeRawPointer(p), n, .valid)
            case (.sumValid, _): for k in 0..<n { acc &+= Int64(Int32Terms.valid(p[k * stride])) }
            case (.countNonzero, 1): acc = sumWidening(UnsafeRawPointer(p), n, .nonzero)
            case (.countNonzero, _): for k in 0..<n { acc &+= Int64(Int32Terms.nonzero(p[k * stride])) }
            case (_, 1): acc = sumWidening(UnsafeRawPointer(p), n, .countValid)
            default: for k in 0..<n { acc &+= Int64(Int32Terms.countValid(p[k * stride])) }
            }
            return unsafeBitCast((start as! Int64) &+ acc, to: A.self)
        }
        if S.dtype.isFloat, A.self == S.self, stride == 1, op.startsFromFirst {
            return floatExtreme(op, s, n, start)
        }
        // one loop per operation (the switch stays outside the loops)
        switch op {
        case .sum: return sumRow(s, stride, n, start) { convert($0, to: A.self) }
        case .nansum: return sumRow(s, stride, n, start) { isNaN($0) ? A.zero : convert($0, to: A.self) }
        case .countNonzero: return sumRow(s, stride, n, start) { A(fromInt: bit(!isZero($0))) }
        case .countNumbers: return sumRow(s, stride, n, start) { A(fromInt: bit(!isNaN($0))) }
        case .sumValid: return sumRow(s, stride, n, start) { validTerm($0, A.self) }
        case .countValid: return sumRow(s, stride, n, start) { A(fromInt: bit(isValid($0))) }
        case .squaredDeviations:
            return sumRow(s, stride, n, start) { x in let d = x.asDouble - c; return A(fromDouble: d * d) }
        case .nanSquaredDeviations:
            return sumRow(s, stride, n, start) { x in let d = x.asDouble - c; return isNaN(x) ? A.zero : A(fromDouble: d * d) }
        case .prod: return foldRow(s, stride, n, start) { mul($0, convert($1, to: A.self)) }
        case .min: return foldRow(s, stride, n, start) { merge(.min, $0, convert($1, to: A.self)) }
        case .max: return foldRow(s, stride, n, start) { merge(.max, $0, convert($1, to: A.self)) }
        case .nanmin: return foldRow(s, stride, n, start) { merge(.nanmin, $0, convert($1, to: A.self)) }
        case .nanmax: return foldRow(s, stride, n, start) { merge(.nanmax, $0, convert($1, to: A.self)) }
        }
    }

    /// start + the sum of term(x) over a row; floats in four accumulators (four add chains
    /// in flight, and less rounding error).
    @inline(__always)
    static func sumRow<S: NDScalar, A: NDScalar>(_ s: UnsafeMutablePointer<S>, _ stride: Int, _ n: Int, _ start: A,
                                                 _ term: (S) -> A) -> A {
        if A.dtype.isFloat && stride == 1 && n >= 16 {
            var a0 = A.zero, a1 = A.zero, a2 = A.zero, a3 = A.zero
            var k = 0
            while k + 4 <= n {
                a0 = add(a0, term(s[k]))
                a1 = add(a1, term(s[k + 1]))
                a2 = add(a2, term(s[k + 2]))
                a3 = add(a3, term(s[k + 3]))
                k += 4
            }
            var acc = add(add(a0, a1), add(a2, a3))
            while k < n { acc = add(acc, term(s[k])); k += 1 }
            return add(start, acc)
        }
        var acc = start
        if stride == 1 {
            for k in 0..<n { acc = add(acc, term(s[k])) }
        } else {
            for k in 0..<n { acc = add(acc, term(s[k * stride])) }
        }
        return acc
    }

    /// min/max (NaN wins) and nanmin/nanmax (NaN skipped; NaN if all are) of a contiguous
    /// float row: a select and a NaN flag per element, no branch, so the loop vectorises.
    @inline(__always)
    static func floatExtreme<S: NDScalar, A: NDScalar>(_ op: Reduction, _ s: UnsafeMutablePointer<S>, _ n: Int,
                                                       _ start: A) -> A {
        let skip = op == .nanmin || op == .nanmax, lower = op == .min || op == .nanmin
        let first = start.asDouble
        // NaN flags as integers: `a || b` would be a branch
        var sawNaN = UInt8(truncatingIfNeeded: bit(first.isNaN)), sawNumber = UInt8(truncatingIfNeeded: bit(!first.isNaN))
        var m = first.isNaN ? (lower ? Double.infinity : -Double.infinity) : first
        if lower {
            for k in 0..<n {
                let x = s[k].asDouble
                m = x < m ? x : m
                sawNaN |= UInt8(truncatingIfNeeded: bit(x.isNaN))
                sawNumber |= UInt8(truncatingIfNeeded: bit(!x.isNaN))
            }
        } else {
            for k in 0..<n {
                let x = s[k].asDouble
                m = x > m ? x : m
                sawNaN |= UInt8(truncatingIfNeeded: bit(x.isNaN))
                sawNumber |= UInt8(truncatingIfNeeded: bit(!x.isNaN))
            }
        }
        let nan = skip ? sawNumber == 0 : sawNaN != 0
        return A(fromDouble: nan ? .nan : m)
    }

    @inline(__always)
    static func foldRow<S: NDScalar, A: NDScalar>(_ s: UnsafeMutablePointer<S>, _ stride: Int, _ n: Int, _ start: A,
                                                  _ f: (A, S) -> A) -> A {
        var acc = start
        if stride == 1 {
            for k in 0..<n { acc = f(acc, s[k]) }
        } else {
            for k in 0..<n { acc = f(acc, s[k * stride]) }
        }
        return acc
    }

    /// Folds a source row elementwise into an output row (`c`: centres, laid out as `o`).
    @inline(__always)
    static func rowInto<S: NDScalar, A: NDScalar>(_ op: Reduction, _ s: UnsafeMutablePointer<S>, _ ss: Int,
                                                  _ o: UnsafeMutablePointer<A>, _ os: Int, _ n: Int,
                                                  _ c: UnsafeMutablePointer<Double>? = nil) {
        if S.self == Int32.self, A.self == Int64.self, ss == 1, os == 1 {
            switch op {
            case .sum: addWidening(UnsafeRawPointer(s), UnsafeMutableRawPointer(o), n, .value); return
            case .sumValid: addWidening(UnsafeRawPointer(s), UnsafeMutableRawPointer(o), n, .valid); return
            case .countValid: addWidening(UnsafeRawPointer(s), UnsafeMutableRawPointer(o), n, .countValid); return
            case .countNonzero: addWidening(UnsafeRawPointer(s), UnsafeMutableRawPointer(o), n, .nonzero); return
            default: break
            }
        }
        switch op {
        case .sum: foldInto(s, ss, o, os, n) { add($0, convert($1, to: A.self)) }
        case .nansum: foldInto(s, ss, o, os, n) { isNaN($1) ? $0 : add($0, convert($1, to: A.self)) }
        case .countNonzero: foldInto(s, ss, o, os, n) { add($0, A(fromInt: bit(!isZero($1)))) }
        case .countNumbers: foldInto(s, ss, o, os, n) { add($0, A(fromInt: bit(!isNaN($1)))) }
        case .sumValid: foldInto(s, ss, o, os, n) { add($0, validTerm($1, A.self)) }
        case .countValid: foldInto(s, ss, o, os, n) { add($0, A(fromInt: bit(isValid($1)))) }
        case .squaredDeviations, .nanSquaredDeviations:
            let skip = op == .nanSquaredDeviations
            guard let c else { preconditionFailure("squared deviations need centres") }
            for k in 0..<n {
                let x = s[k * ss], d = x.asDouble - c[k * os]
                if !(skip && isNaN(x)) { o[k * os] = add(o[k * os], A(fromDouble: d * d)) }
            }
        case .prod: foldInto(s, ss, o, os, n) { mul($0, convert($1, to: A.self)) }
        case .min: foldInto(s, ss, o, os, n) { merge(.min, $0, convert($1, to: A.self)) }
        case .max: foldInto(s, ss, o, os, n) { merge(.max, $0, convert($1, to: A.self)) }
        case .nanmin: foldInto(s, ss, o, os, n) { merge(.nanmin, $0, convert($1, to: A.self)) }
        case .nanmax: foldInto(s, ss, o, os, n) { merge(.nanmax, $0, convert($1, to: A.self)) }
        }
    }

    @inline(__always)
    static func foldInto<S: NDScalar, A: NDScalar>(_ s: UnsafeMutablePointer<S>, _ ss: Int, _ o: UnsafeMutablePointer<A>,
                                                   _ os: Int, _ n: Int, _ f: (A, S) -> A) {
        if ss == 1 && os == 1 {
            for k in 0..<n { o[k] = f(o[k], s[k]) }
        } else {
            for k in 0..<n { o[k * os] = f(o[k * os], s[k * ss]) }
        }
    }

    /// 0 or 1 without a branch: counting loops with a data-dependent branch per element
    /// ran 5x slower than the zero-extended compare the vectoriser takes.
    @inline(__always)
    static func bit(_ b: Bool) -> Int64 { Int64(unsafeBitCast(b, to: UInt8.self)) }

    /// x if it is a valid pixel (>= 0, not NaN) else 0; integers by a multiply, not a branch.
    @inline(__always)
    static func validTerm<S: NDScalar, A: NDScalar>(_ x: S, _: A.Type) -> A {
        if S.dtype.isFloat { return isValid(x) ? convert(x, to: A.self) : A.zero }
        return mul(convert(x, to: A.self), A(fromInt: bit(isValid(x))))
    }

    @inline(__always)
    static func isZero<S: NDScalar>(_ x: S) -> Bool {
        S.dtype.isFloat ? x.asDouble == 0 : x.asInt64 == 0
    }
}

/// What an int32 element adds to an int64 sum, branch-free so that SIMD loops stay
/// SIMD: the value, the value if it is >= 0 else 0 (x & ~(x >> 31)), 1 if >= 0 else 0
/// (1 + (x >> 31)), or 1 if not 0 (the sign bit of x | -x). Negative pixels are
/// Pilatus/Eiger gaps (-1) and dead pixels (-2).
enum Int32Terms {
    case value, valid, countValid, nonzero

    @inline(__always) static func valid(_ x: Int32) -> Int32 { x & ~(x &>> 31) }
    @inline(__always) static func countValid(_ x: Int32) -> Int32 { 1 &+ (x &>> 31) }
    @inline(__always) static func nonzero(_ x: Int32) -> Int32 { 0 &- ((x | (0 &- x)) &>> 31) }

    @inline(__always)
    func apply(_ x: Int32) -> Int32 {
        switch self {
        case .value: return x
        case .valid: return Int32Terms.valid(x)
        case .countValid: return Int32Terms.countValid(x)
        case .nonzero: return Int32Terms.nonzero(x)
        }
    }

    @inline(__always)
    func apply(_ v: SIMD8<Int32>) -> SIMD8<Int32> {
        switch self {
        case .value: return v
        case .valid: return v & ~(v &>> 31)
        case .countValid: return 1 &+ (v &>> 31)
        case .nonzero: return 0 &- ((v | (0 &- v)) &>> 31)
        }
    }
}

/// The int64 sum of t(src[k]) over n int32 elements, exact, without widening each element
/// (widening, SSE2's sign-extend-and-unpack, took 13 instructions per 4 elements and made
/// per-frame sums compute-bound): per lane, the int32 sum wraps (it is right mod 2^32)
/// while the high halves x >> 16, in [-2^15, 2^15), sum exactly in int32 over up to 2^16
/// elements; the low halves x & 0xFFFF then sum to (wrapped - high << 16) mod 2^32, below
/// 2^32, and the total is high * 2^16 + low. Lanes fold into the int64 total every 2^16
/// elements per lane.
@inline(__always)
func sumWidening(_ src: UnsafeRawPointer, _ n: Int, _ t: Int32Terms) -> Int64 {
    var total: Int64 = 0
    var q = src  // pointers, not indices: no overflow checks in the loop
    var left = n
    while left >= 16 {
        // two vectors of 8 lanes, each lane at most 2^15 elements per fold: merged, a
        // lane holds 2^16, the most the high sum allows
        let count = min(left & ~15, 16 << 15)
        let end = q + count &* 4
        left &-= count
        var w0 = SIMD8<Int32>(), w1 = SIMD8<Int32>(), h0 = SIMD8<Int32>(), h1 = SIMD8<Int32>()
        while q < end {
            let a = t.apply(q.loadUnaligned(as: SIMD8<Int32>.self))
            let b = t.apply(q.loadUnaligned(fromByteOffset: 32, as: SIMD8<Int32>.self))
            w0 &+= a
            h0 &+= a &>> 16
            w1 &+= b
            h1 &+= b &>> 16
            q += 64
        }
        let w = SIMD8<UInt32>(truncatingIfNeeded: w0 &+ w1), h = h0 &+ h1
        let low = w &- (SIMD8<UInt32>(truncatingIfNeeded: h) &<< 16)
        total &+= (SIMD8<Int64>(truncatingIfNeeded: h) &<< 16 &+ SIMD8<Int64>(truncatingIfNeeded: low)).wrappedSum()
    }
    let p = q.assumingMemoryBound(to: Int32.self)
    for k in 0..<left { total &+= Int64(t.apply(p[k])) }
    return total
}

/// out[k] += Int64(t(src[k])) for int32 src: explicit SIMD (the compiler does not vectorise
/// the read-modify-write of the wider accumulator by itself).
@inline(__always)
func addWidening(_ src: UnsafeRawPointer, _ out: UnsafeMutableRawPointer, _ n: Int, _ t: Int32Terms) {
    var k = 0
    while k + 8 <= n {
        let v = t.apply(src.loadUnaligned(fromByteOffset: k * 4, as: SIMD8<Int32>.self))
        let acc = out.loadUnaligned(fromByteOffset: k * 8, as: SIMD8<Int64>.self)
        out.storeBytes(of: acc &+ SIMD8<Int64>(truncatingIfNeeded: v), toByteOffset: k * 8, as: SIMD8<Int64>.self)
        k += 8
    }
    let p = src.assumingMemoryBound(to: Int32.self), q = out.assumingMemoryBound(to: Int64.self)
    while k < n { q[k] &+= Int64(t.apply(SIMD8(repeating: p[k]))[0]); k += 1 }
}

/// out[k] += t(src0[k]) + ... + t(src{frames-1}[k]) (int32 frames `frameBytes` apart, at
/// most 8) into int64, exactly, widening once per pass instead of once per frame: the
/// frames add up in int32 lanes that wrap, beside the sum of their high halves (as in
/// `sumWidening`). One loop per term, so the term's switch stays outside the loop (inside,
/// it cost a jump per load).
@inline(__always)
func addWideningFrames(_ src: UnsafeRawPointer, _ frameBytes: Int, _ frames: Int, _ out: UnsafeMutableRawPointer,
                       _ n: Int, _ t: Int32Terms) {
    switch t {
    case .value: addFramesLoop(src, frameBytes, frames, out, n, .value)
    case .valid: addFramesLoop(src, frameBytes, frames, out, n, .valid)
    case .countValid: addFramesLoop(src, frameBytes, frames, out, n, .countValid)
    case .nonzero: addFramesLoop(src, frameBytes, frames, out, n, .nonzero)
    }
}

@inline(__always)
private func addFramesLoop(_ src: UnsafeRawPointer, _ frameBytes: Int, _ frames: Int, _ out: UnsafeMutableRawPointer,
                           _ n: Int, _ t: Int32Terms) {
    precondition(frames >= 1 && frames <= 8)  // 8 high halves per lane stay far inside int32
    var k = 0
    while k &+ 8 <= n {
        let o = k &* 4
        let x0 = t.apply(src.loadUnaligned(fromByteOffset: o, as: SIMD8<Int32>.self))
        var w = x0, h = x0 &>> 16
        for f in 1..<frames {
            let x = t.apply((src + f &* frameBytes).loadUnaligned(fromByteOffset: o, as: SIMD8<Int32>.self))
            w &+= x
            h &+= x &>> 16
        }
        // the low halves' sum, below 8 * 2^16
        let low = SIMD8<UInt32>(truncatingIfNeeded: w) &- (SIMD8<UInt32>(truncatingIfNeeded: h) &<< 16)
        let acc = out.loadUnaligned(fromByteOffset: k &* 8, as: SIMD8<Int64>.self)
        let sum = SIMD8<Int64>(truncatingIfNeeded: h) &<< 16 &+ SIMD8<Int64>(truncatingIfNeeded: low)
        out.storeBytes(of: acc &+ sum, toByteOffset: k &* 8, as: SIMD8<Int64>.self)
        k &+= 8
    }
    let q = out.assumingMemoryBound(to: Int64.self)
    while k < n {
        var v: Int64 = 0
        for f in 0..<frames {
            v &+= Int64(t.apply((src + f &* frameBytes).load(fromByteOffset: k &* 4, as: Int32.self)))
        }
        q[k] &+= v
        k += 1
    }
}
