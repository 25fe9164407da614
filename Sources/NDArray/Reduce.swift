/// Reductions over axes: sum, prod, min, max, mean; sums of integers accumulate in int64
/// (uint64 for unsigned), as NumPy's default, and run near memory bandwidth.
///
/// One design serves every axis choice: the output is viewed with stride 0 along the
/// reduced axes, and the loop order puts the reduced axes just inside the kept ones, so
/// that an output row stays in cache while the source streams through once.
public enum Reduction: String, Sendable {
    case sum, prod, min, max
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
        let axes = try normalizedAxes(axes)
        if (op == .min || op == .max), axes.contains(where: { shape[$0] == 0 }) {
            throw ArrayError("zero-size array to reduction operation \(op.rawValue) which has no identity")
        }
        let outType: DType = (op == .sum || op == .prod) ? dtype.accumulator : dtype
        let keptShape = shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
        let out = try NDArray(zeros: keptShape, dtype: outType)
        dtype.dispatch(ReduceSource(src: self, out: out, axes: axes, op: op))
        if keepdims { return out }
        let finalShape = shape.enumerated().filter { !axes.contains($0.offset) }.map { $0.element }
        return NDArray(dtype: outType, shape: finalShape, strides: NDArray.contiguousStrides(finalShape),
                       offset: 0, storage: out.storage)
    }

    /// Folds this array's reduction over `axes` into `out`, which holds the same
    /// reduction of earlier blocks (shape with the reduced axes kept as 1, the
    /// accumulator dtype, contiguous): how a field bigger than memory is reduced block by
    /// block without a temporary per block.
    public func reduce(_ op: Reduction, axes: [Int]?, accumulatingInto out: NDArray) throws {
        let axes = try normalizedAxes(axes)
        let keptShape = shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
        let outType: DType = (op == .sum || op == .prod) ? dtype.accumulator : dtype
        guard out.shape == keptShape, out.dtype == outType, out.isContiguous else {
            throw ArrayError("cannot accumulate a \(op.rawValue) of shape \(NDArray.describe(keptShape)) (\(outType.rawValue)) into an array of shape \(NDArray.describe(out.shape)) (\(out.dtype.rawValue))")
        }
        if count == 0 { return }
        dtype.dispatch(ReduceSource(src: self, out: out, axes: axes, op: op, accumulating: true))
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
    let src: NDArray, out: NDArray, axes: [Int], op: Reduction
    /// `out` holds a partial result already: fold into it instead of starting afresh.
    var accumulating = false
    func visit<S: NDScalar>(_: S.Type) {
        switch (op, src.dtype) {
        case (.sum, .float32), (.sum, .float64), (.prod, .float32), (.prod, .float64):
            run(S.self, S.self)
        case (.sum, _), (.prod, _):
            if src.dtype.isUnsignedInteger { run(S.self, UInt64.self) } else { run(S.self, Int64.self) }
        case (.min, _), (.max, _):
            run(S.self, S.self)
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
        } else if op == .min || op == .max {
            let first = try! src.view(Selection(src.shape.indices.map { axes.contains($0) ? .index(.int(0)) : .range(nil, nil, nil) }))
            try! first.copy(into: NDArray(dtype: out.dtype, shape: first.shape,
                                          strides: out.strides.enumerated().filter { !axes.contains($0.offset) }.map { $0.element },
                                          offset: out.offset, storage: out.storage))
        } else if op == .prod {
            out.fill(1)
        }
        // Fast path: the leading axes of a contiguous array reduce as an (F, M) matrix
        // down its columns, in column blocks whose accumulators stay in L1 while each
        // frame contributes one long contiguous read.
        let k = axes.count
        if nd > 1, k < nd, axes == Array(0..<k), src.isContiguous, out.isContiguous {
            let frames = src.shape[0..<k].reduce(1, *), m = src.count / max(frames, 1)
            let block = 16384  // 128 KB of int64 accumulators: L2-resident (measured best of 1K-128K)
            let blocks = (m + block - 1) / block
            let threads = min(threadCount(elements: src.count), blocks)
            let src = self.src, out = self.out, op = self.op
            let firstFrame = (op == .min || op == .max) && !accumulating ? 1 : 0  // min/max start from frame 0
            parallel(threads) { t in
                let s = src.base(Src.self), o = out.base(Acc.self)
                for b in partition(blocks, threads, t) {
                    if Interruption.requested { return }
                    let lo = b * block, n = min(block, m - lo)
                    var f = firstFrame
                    if op == .sum, Src.self == Int32.self, Acc.self == Int64.self {
                        // four frames per pass: four streams in flight, a quarter of the
                        // accumulator traffic
                        while f + 4 <= frames {
                            addWidening4(UnsafeRawPointer(s + f * m + lo), m * 4, UnsafeMutableRawPointer(o + lo), n)
                            f += 4
                        }
                    }
                    while f < frames {
                        Ops.rowInto(op, s + f * m + lo, 1, o + lo, 1, n)
                        f += 1
                    }
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
        if nd == 0 {
            kernel(Src.self, Acc.self, shape: shape, ss: ss, os: os, srcOffset: 0, outOffset: 0, out: out)
        } else if let partials {
            if op != .sum { for p in partials { try! out.copy(into: p) } }  // same shape: cannot fail
            parallel(threads) { k in
                let r = partition(shape[0], threads, k)
                var sub = shape
                sub[0] = r.count
                kernel(Src.self, Acc.self, shape: sub, ss: ss, os: os,
                       srcOffset: r.lowerBound * ss[0], outOffset: 0, out: partials[k])
            }
            // a sum's partials start from zero: an accumulating sum adds the running result
            combine(Acc.self, partials: partials, into: out, includingOut: accumulating && op == .sum)
        } else {
            let parts = keptOuter ? min(threads, shape[0]) : 1
            parallel(parts) { k in
                let r = partition(shape[0], parts, k)
                var sub = shape
                sub[0] = r.count
                kernel(Src.self, Acc.self, shape: sub, ss: ss, os: os,
                       srcOffset: r.lowerBound * ss[0], outOffset: r.lowerBound * os[0], out: out)
            }
        }
    }

    func combine<Acc: NDScalar>(_: Acc.Type, partials: [NDArray], into out: NDArray, includingOut: Bool) {
        let o = out.base(Acc.self)
        for i in 0..<out.count {
            var v = partials[0].base(Acc.self)[i]
            if includingOut { v = Ops.combine(op, o[i], v) }
            for p in partials.dropFirst() { v = Ops.combine(op, v, p.base(Acc.self)[i]) }
            o[i] = v
        }
    }

    func kernel<Src: NDScalar, Acc: NDScalar>(_: Src.Type, _: Acc.Type, shape: [Int], ss: [Int], os: [Int],
                                              srcOffset: Int, outOffset: Int, out: NDArray) {
        let s = src.base(Src.self) + srcOffset
        let o = out.base(Acc.self) + outOffset
        let sIn = ss.last ?? 1, oIn = os.last ?? 1
        let op = self.op
        forEachRow(shape: shape, strides: [ss, os], offsets: [0, 0]) { offs, n in
            let sp = s + offs[0], op0 = o + offs[1]
            if oIn == 0 {
                op0.pointee = Ops.row(op, sp, sIn, n, into: op0.pointee)
            } else {
                Ops.rowInto(op, sp, sIn, op0, oIn, n)
            }
        }
    }
}

/// The inner loops, specialised per (source, accumulator) type pair.
enum Ops {
    @inline(__always)
    static func combine<A: NDScalar>(_ op: Reduction, _ a: A, _ b: A) -> A {
        switch op {
        case .sum: return add(a, b)
        case .prod: return mul(a, b)
        case .min: return less(b, a) ? b : a
        case .max: return less(a, b) ? b : a
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
                                              _ n: Int, into start: A) -> A {
        if op == .sum, S.self == Int32.self, A.self == Int64.self {
            let p = UnsafeMutableRawPointer(s).assumingMemoryBound(to: Int32.self)
            var acc: Int64 = 0
            if stride == 1 { for k in 0..<n { acc &+= Int64(p[k]) } } else { for k in 0..<n { acc &+= Int64(p[k * stride]) } }
            return unsafeBitCast((start as! Int64) &+ acc, to: A.self)
        }
        var acc = start
        for k in 0..<n { acc = combine(op, acc, convert(s[k * stride], to: A.self)) }
        return acc
    }

    /// Folds a source row elementwise into an output row.
    @inline(__always)
    static func rowInto<S: NDScalar, A: NDScalar>(_ op: Reduction, _ s: UnsafeMutablePointer<S>, _ ss: Int,
                                                  _ o: UnsafeMutablePointer<A>, _ os: Int, _ n: Int) {
        if op == .sum, S.self == Int32.self, A.self == Int64.self, ss == 1, os == 1 {
            addWidening(UnsafeRawPointer(s), UnsafeMutableRawPointer(o), n)
            return
        }
        for k in 0..<n { o[k * os] = combine(op, o[k * os], convert(s[k * ss], to: A.self)) }
    }
}

/// out[k] += Int64(src[k]) for int32 src: explicit SIMD (the compiler does not vectorise
/// the read-modify-write of the wider accumulator by itself).
@inline(__always)
func addWidening(_ src: UnsafeRawPointer, _ out: UnsafeMutableRawPointer, _ n: Int) {
    var k = 0
    while k + 8 <= n {
        let v = src.loadUnaligned(fromByteOffset: k * 4, as: SIMD8<Int32>.self)
        let acc = out.loadUnaligned(fromByteOffset: k * 8, as: SIMD8<Int64>.self)
        out.storeBytes(of: acc &+ SIMD8<Int64>(truncatingIfNeeded: v), toByteOffset: k * 8, as: SIMD8<Int64>.self)
        k += 8
    }
    let p = src.assumingMemoryBound(to: Int32.self), q = out.assumingMemoryBound(to: Int64.self)
    while k < n { q[k] &+= Int64(p[k]); k += 1 }
}

/// out[k] += src0[k] + src1[k] + src2[k] + src3[k] (int32 frames `frameBytes` apart,
/// widened to int64 before adding).
@inline(__always)
func addWidening4(_ src: UnsafeRawPointer, _ frameBytes: Int, _ out: UnsafeMutableRawPointer, _ n: Int) {
    var k = 0
    let s1 = src + frameBytes, s2 = src + 2 * frameBytes, s3 = src + 3 * frameBytes
    while k + 8 <= n {
        let o = k * 4
        var sum = SIMD8<Int64>(truncatingIfNeeded: src.loadUnaligned(fromByteOffset: o, as: SIMD8<Int32>.self))
        sum &+= SIMD8<Int64>(truncatingIfNeeded: s1.loadUnaligned(fromByteOffset: o, as: SIMD8<Int32>.self))
        sum &+= SIMD8<Int64>(truncatingIfNeeded: s2.loadUnaligned(fromByteOffset: o, as: SIMD8<Int32>.self))
        sum &+= SIMD8<Int64>(truncatingIfNeeded: s3.loadUnaligned(fromByteOffset: o, as: SIMD8<Int32>.self))
        let acc = out.loadUnaligned(fromByteOffset: k * 8, as: SIMD8<Int64>.self)
        out.storeBytes(of: acc &+ sum, toByteOffset: k * 8, as: SIMD8<Int64>.self)
        k += 8
    }
    let q = out.assumingMemoryBound(to: Int64.self)
    while k < n {
        var v = Int64(src.load(fromByteOffset: k * 4, as: Int32.self))
        v &+= Int64(s1.load(fromByteOffset: k * 4, as: Int32.self))
        v &+= Int64(s2.load(fromByteOffset: k * 4, as: Int32.self))
        v &+= Int64(s3.load(fromByteOffset: k * 4, as: Int32.self))
        q[k] &+= v
        k += 1
    }
}
