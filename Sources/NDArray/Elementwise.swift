#if canImport(Glibc)
import Glibc
#endif

/// Elementwise binary operations with NumPy's broadcasting and promotion.
public enum BinaryOp: String, Sendable {
    case add, sub, mul, div, floordiv, mod, pow, minimum, maximum
    case eq, ne, lt, le, gt, ge
    /// NumPy's logical_and/or/xor: non-zero is true, the result is bool.
    case logicalAnd = "logical_and", logicalOr = "logical_or", logicalXor = "logical_xor"

    /// Comparisons and logical operations give bool arrays.
    public var isComparison: Bool { [.eq, .ne, .lt, .le, .gt, .ge, .logicalAnd, .logicalOr, .logicalXor].contains(self) }
}

/// One side of an elementwise operation or an assignment: an array or a number. Numbers
/// are "weak", as in NumPy 2 (NEP 50): `int32 array * 2` stays int32, `int32 array * 2.5`
/// is float64. Integers stay exact (an int64 above 2^53 is not rounded through a Double).
public enum Operand: Sendable {
    case array(NDArray)
    case integer(Int64)
    case float(Double)

    public var isInteger: Bool { if case .integer = self { return true } else { return false } }
    var integerValue: Int64? { if case .integer(let v) = self { return v } else { return nil } }
}

extension DType {
    /// Whether an integer dtype can hold `v` exactly.
    func holds(_ v: Int64) -> Bool {
        switch self {
        case .int8: return Int64(Int8.min)...Int64(Int8.max) ~= v
        case .int16: return Int64(Int16.min)...Int64(Int16.max) ~= v
        case .int32: return Int64(Int32.min)...Int64(Int32.max) ~= v
        case .uint8: return 0...Int64(UInt8.max) ~= v
        case .uint16: return 0...Int64(UInt16.max) ~= v
        case .uint32: return 0...Int64(UInt32.max) ~= v
        case .uint64: return v >= 0
        default: return true
        }
    }
}

extension NDArray {
    /// The dtype an operation computes in.
    static func computeType(_ op: BinaryOp, _ a: Operand, _ b: Operand) -> DType {
        func weak(_ x: DType, integer: Bool) -> DType {
            if integer { return x == .bool ? .int64 : x }
            return x.isFloat ? x : .float64
        }
        var t: DType
        switch (a, b) {
        case (.array(let x), .array(let y)): t = DType.promote(x.dtype, y.dtype)
        case (.array(let x), _): t = weak(x.dtype, integer: b.isInteger)
        case (_, .array(let y)): t = weak(y.dtype, integer: a.isInteger)
        default: t = a.isInteger && b.isInteger ? .int64 : .float64
        }
        if t == .bool && !op.isComparison && op != .minimum && op != .maximum { t = .int64 }
        if op == .div && !t.isFloat { t = .float64 }
        // NumPy 2: a comparison with an integer the array's type cannot hold is still
        // exact (uint8 array < 300 is all true), so it computes in a wider type
        if op.isComparison, t.isInteger, let v = a.integerValue ?? b.integerValue, !t.holds(v) {
            t = t == .uint64 ? .float64 : .int64
        }
        return t
    }

    /// `a op b`, elementwise, broadcasting; comparisons give bool arrays.
    public static func binary(_ op: BinaryOp, _ a: Operand, _ b: Operand) throws -> NDArray {
        let t = computeType(op, a, b)
        let (x, y) = try prepared(t, a, b)
        let shape = try broadcastShape(x.shape, y.shape)
        let out = try NDArray(uninitialized: shape, dtype: op.isComparison ? .bool : t)
        try compute(op, t, x, y, into: out)
        return out
    }

    /// `a op= b` (NumPy's `a += b`): the result is written into `a` itself, which keeps
    /// its dtype and shape. As NumPy's "same_kind" rule, a float result does not go into
    /// an integer array, nor a number into a bool array: convert with astype first.
    public func binaryInPlace(_ op: BinaryOp, _ b: Operand) throws {
        let t = NDArray.computeType(op, .array(self), b)
        let result: DType = op.isComparison ? .bool : t
        if (result.isFloat && !dtype.isFloat) || (result != .bool && dtype == .bool) {
            throw ArrayError("cannot write the \(result.rawValue) result of \(op.rawValue) into a \(dtype.rawValue) array in place (same_kind rule); use astype first")
        }
        // an operand of another dtype and this shape (an int32 frame added into an int64
        // sum) is converted a block at a time: no operand-sized temporary to allocate
        // (fresh pages) and one pass over memory less
        if case .array(let b0) = b, b0.dtype != t, dtype == t, result == t, b0.shape == shape,
           isContiguous, b0.isContiguous, b0.storage !== storage, count >= NDArray.blockedMinimum {
            try NDArray.blockedInPlace(op, t, self, b0)
            return
        }
        let (x, y) = try NDArray.prepared(t, .array(self), b)
        guard try NDArray.broadcastShape(shape, y.shape) == shape else {
            throw ArrayError("operands could not be broadcast together with shapes \(NDArray.describe(shape)) \(NDArray.describe(y.shape)) in place")
        }
        // an operand overlapping the output in another layout is read from a copy first
        // (a:add_(a["::-1"])), as NumPy does
        var yy = y
        if y.storage === storage && !(y.offset == offset && y.strides == strides && y.shape == shape) { yy = try y.copy() }
        if result == dtype && x.storage === storage {
            try NDArray.compute(op, t, x, yy, into: self)
        } else {
            let tmp = try NDArray(uninitialized: shape, dtype: result)
            try NDArray.compute(op, t, x, yy, into: tmp)
            try tmp.copy(into: self)
        }
    }

    /// Arrays of at least this many elements take the blocked path of binaryInPlace.
    static let blockedMinimum = 1 << 16

    /// `out op= y` for contiguous arrays of one shape, `out` in the compute dtype `t` and
    /// `y` not: each thread converts `y` into a small buffer of `t`, a block at a time,
    /// then runs the kernel over that block of `out`.
    static func blockedInPlace(_ op: BinaryOp, _ t: DType, _ out: NDArray, _ y: NDArray) throws {
        let n = out.count, block = 1 << 14
        let threads = threadCount(elements: n)
        let failure = FirstError()
        parallel(threads) { k in
            let r = partition(n, threads, k)
            let buffer: NDArray
            do { buffer = try NDArray(uninitialized: [block], dtype: t) } catch {
                failure.keep(error)
                return
            }
            interruptibly(r, step: block) { part in
                let len = part.count
                let xs = NDArray(dtype: t, shape: [len], strides: [1], offset: out.offset + part.lowerBound, storage: out.storage)
                let ys = NDArray(dtype: y.dtype, shape: [len], strides: [1], offset: y.offset + part.lowerBound, storage: y.storage)
                let converted = NDArray(dtype: t, shape: [len], strides: [1], offset: 0, storage: buffer.storage)
                do {
                    try ys.copy(into: converted)
                    try compute(op, t, xs, converted, into: xs)
                } catch {
                    failure.keep(error)
                }
            }
        }
        try failure.rethrow()
    }

    /// Both operands in the compute dtype (numbers as 0-d arrays).
    static func prepared(_ t: DType, _ a: Operand, _ b: Operand) throws -> (NDArray, NDArray) {
        func one(_ x: Operand) throws -> NDArray {
            if case .array(let arr) = x { return arr.dtype == t ? arr : try arr.copy(as: t) }
            // NumPy 2 (NEP 50) refuses what would wrap silently: uint8 array + 300
            if case .integer(let v) = x, t.isInteger, !t.holds(v) {
                throw ArrayError("integer \(v) is out of bounds for \(t.rawValue)")
            }
            let s = try NDArray(zeros: [], dtype: t)
            try s.fill(x)
            return s
        }
        return (try one(a), try one(b))
    }

    /// Runs the kernel of `op` in dtype `t` over broadcast operands into `out` (any strides).
    static func compute(_ op: BinaryOp, _ t: DType, _ x: NDArray, _ y: NDArray, into out: NDArray) throws {
        let shape = out.shape
        let xb = try x.broadcast(to: shape), yb = try y.broadcast(to: shape)
        if op == .pow, t.isInteger, (try? yb.reduce(.min))?.doubles().first.map({ $0 < 0 }) == true {
            throw ArrayError("integers to negative integer powers are not allowed")
        }
        switch t {
        case .float64: Kernels.float(Double.self, op, xb, yb, out)
        case .float32: Kernels.float(Float.self, op, xb, yb, out)
        case .int8: Kernels.integer(Int8.self, op, xb, yb, out)
        case .int16: Kernels.integer(Int16.self, op, xb, yb, out)
        case .int32: Kernels.integer(Int32.self, op, xb, yb, out)
        case .int64: Kernels.integer(Int64.self, op, xb, yb, out)
        case .uint8: Kernels.integer(UInt8.self, op, xb, yb, out)
        case .uint16: Kernels.integer(UInt16.self, op, xb, yb, out)
        case .uint32: Kernels.integer(UInt32.self, op, xb, yb, out)
        case .uint64: Kernels.integer(UInt64.self, op, xb, yb, out)
        case .bool: Kernels.integer(UInt8.self, op, xb.reinterpreted(as: .uint8), yb.reinterpreted(as: .uint8), out)
        }
    }

    /// The same memory seen as another dtype of the same size (bool <-> uint8).
    func reinterpreted(as t: DType) -> NDArray {
        NDArray(dtype: t, shape: shape, strides: strides, offset: offset, storage: storage)
    }
}

enum Kernels {
    /// Runs kernel `K` over the broadcast operands into `out`: fast paths for contiguous
    /// and scalar operands, threads for large outputs, the strided row loop for everything
    /// else. The operation is a type, not a closure, so that it is inlined into each loop
    /// (a closure was called indirectly per element: 1.4 G elements/s instead of memory speed).
    @inline(__always)
    static func run<K: PairKernel>(_: K.Type, _ a: NDArray, _ b: NDArray, _ out: NDArray) {
        typealias T = K.Input
        typealias R = K.Output
        let n = out.count
        let contiguous = out.isContiguous && (a.isContiguous || a.strides.allSatisfy { $0 == 0 }) && (b.isContiguous || b.strides.allSatisfy { $0 == 0 })
        if contiguous && out.ndim > 0 {
            let aScalar = a.strides.allSatisfy { $0 == 0 } && n > 1
            let bScalar = b.strides.allSatisfy { $0 == 0 } && n > 1
            let threads = threadCount(elements: n)
            parallel(threads) { t in
                let r = partition(n, threads, t)
                let pa = a.base(T.self), pb = b.base(T.self), po = out.base(R.self)
                interruptibly(r) { r in
                    if aScalar {
                        let x = pa[0]
                        for k in r { po[k] = K.apply(x, pb[k]) }
                    } else if bScalar {
                        let y = pb[0]
                        for k in r { po[k] = K.apply(pa[k], y) }
                    } else {
                        for k in r { po[k] = K.apply(pa[k], pb[k]) }
                    }
                }
            }
            return
        }
        let pa = a.base(T.self), pb = b.base(T.self), po = out.base(R.self)
        let sa = a.strides.last ?? 0, sb = b.strides.last ?? 0, so = out.strides.last ?? 1
        forEachRow(shape: out.shape, strides: [a.strides, b.strides, out.strides], offsets: [0, 0, 0]) { o, len in
            let x = pa + o[0], y = pb + o[1], z = po + o[2]
            for k in 0..<len { z[k * so] = K.apply(x[k * sa], y[k * sb]) }
        }
    }

    static func float<F: BinaryFloatingPoint & NDScalar>(_: F.Type, _ op: BinaryOp, _ a: NDArray, _ b: NDArray, _ out: NDArray) {
        switch op {
        case .add: run(FloatOps<F>.Add.self, a, b, out)
        case .sub: run(FloatOps<F>.Sub.self, a, b, out)
        case .mul: run(FloatOps<F>.Mul.self, a, b, out)
        case .div: run(FloatOps<F>.Div.self, a, b, out)
        case .floordiv: run(FloatOps<F>.FloorDiv.self, a, b, out)
        case .mod: run(FloatOps<F>.Mod.self, a, b, out)
        case .pow: run(FloatOps<F>.Pow.self, a, b, out)
        case .minimum: run(FloatOps<F>.Minimum.self, a, b, out)
        case .maximum: run(FloatOps<F>.Maximum.self, a, b, out)
        case .eq: run(Compare<F>.Eq.self, a, b, out)
        case .ne: run(Compare<F>.Ne.self, a, b, out)
        case .lt: run(Compare<F>.Lt.self, a, b, out)
        case .le: run(Compare<F>.Le.self, a, b, out)
        case .gt: run(Compare<F>.Gt.self, a, b, out)
        case .ge: run(Compare<F>.Ge.self, a, b, out)
        case .logicalAnd: run(Compare<F>.And.self, a, b, out)
        case .logicalOr: run(Compare<F>.Or.self, a, b, out)
        case .logicalXor: run(Compare<F>.Xor.self, a, b, out)
        }
    }

    static func integer<I: FixedWidthInteger & NDScalar>(_: I.Type, _ op: BinaryOp, _ a: NDArray, _ b: NDArray, _ out: NDArray) {
        switch op {
        case .add: run(IntegerOps<I>.Add.self, a, b, out)
        case .sub: run(IntegerOps<I>.Sub.self, a, b, out)
        case .mul: run(IntegerOps<I>.Mul.self, a, b, out)
        case .div: run(IntegerOps<I>.Div.self, a, b, out)  // not reached: div computes in float
        case .floordiv: run(IntegerOps<I>.FloorDiv.self, a, b, out)
        case .mod: run(IntegerOps<I>.Mod.self, a, b, out)
        case .pow: run(IntegerOps<I>.Pow.self, a, b, out)
        case .minimum: run(IntegerOps<I>.Minimum.self, a, b, out)
        case .maximum: run(IntegerOps<I>.Maximum.self, a, b, out)
        case .eq: run(Compare<I>.Eq.self, a, b, out)
        case .ne: run(Compare<I>.Ne.self, a, b, out)
        case .lt: run(Compare<I>.Lt.self, a, b, out)
        case .le: run(Compare<I>.Le.self, a, b, out)
        case .gt: run(Compare<I>.Gt.self, a, b, out)
        case .ge: run(Compare<I>.Ge.self, a, b, out)
        case .logicalAnd: run(Compare<I>.And.self, a, b, out)
        case .logicalOr: run(Compare<I>.Or.self, a, b, out)
        case .logicalXor: run(Compare<I>.Xor.self, a, b, out)
        }
    }
}

/// One elementwise operation as a type: `apply` is resolved statically in each
/// specialised loop.
protocol PairKernel {
    associatedtype Input: NDScalar
    associatedtype Output: NDScalar
    static func apply(_ a: Input, _ b: Input) -> Output
}

enum FloatOps<F: BinaryFloatingPoint & NDScalar> {
    enum Add: PairKernel { @inline(__always) static func apply(_ a: F, _ b: F) -> F { a + b } }
    enum Sub: PairKernel { @inline(__always) static func apply(_ a: F, _ b: F) -> F { a - b } }
    enum Mul: PairKernel { @inline(__always) static func apply(_ a: F, _ b: F) -> F { a * b } }
    enum Div: PairKernel { @inline(__always) static func apply(_ a: F, _ b: F) -> F { a / b } }
    enum FloorDiv: PairKernel { @inline(__always) static func apply(_ a: F, _ b: F) -> F { (a / b).rounded(.down) } }
    enum Mod: PairKernel {
        // Python's sign rule: the result has the sign of the divisor
        @inline(__always) static func apply(_ x: F, _ y: F) -> F {
            let r = x.truncatingRemainder(dividingBy: y)
            return r != 0 && (r < 0) != (y < 0) ? r + y : r
        }
    }
    enum Pow: PairKernel { @inline(__always) static func apply(_ a: F, _ b: F) -> F { F(Glibc.pow(Double(a), Double(b))) } }
    enum Minimum: PairKernel { @inline(__always) static func apply(_ x: F, _ y: F) -> F { x.isNaN || y.isNaN ? F.nan : Swift.min(x, y) } }
    enum Maximum: PairKernel { @inline(__always) static func apply(_ x: F, _ y: F) -> F { x.isNaN || y.isNaN ? F.nan : Swift.max(x, y) } }
}

enum IntegerOps<I: FixedWidthInteger & NDScalar> {
    enum Add: PairKernel { @inline(__always) static func apply(_ a: I, _ b: I) -> I { a &+ b } }
    enum Sub: PairKernel { @inline(__always) static func apply(_ a: I, _ b: I) -> I { a &- b } }
    enum Mul: PairKernel { @inline(__always) static func apply(_ a: I, _ b: I) -> I { a &* b } }
    enum Div: PairKernel { @inline(__always) static func apply(_ a: I, _ b: I) -> I { b == 0 ? 0 : a / b } }
    enum FloorDiv: PairKernel {
        // NumPy: division by zero gives 0; the quotient rounds toward minus infinity
        @inline(__always) static func apply(_ x: I, _ y: I) -> I {
            if y == 0 { return 0 }
            let (q, overflow) = x.dividedReportingOverflow(by: y)
            if overflow { return q }
            return (x % y != 0) && ((x < 0) != (y < 0)) ? q - 1 : q
        }
    }
    enum Mod: PairKernel {
        @inline(__always) static func apply(_ x: I, _ y: I) -> I {
            if y == 0 { return 0 }
            let (r, overflow) = x.remainderReportingOverflow(dividingBy: y)
            if overflow { return 0 }
            return r != 0 && ((r < 0) != (y < 0)) ? r &+ y : r
        }
    }
    enum Pow: PairKernel {
        @inline(__always) static func apply(_ x: I, _ y: I) -> I {
            var result: I = 1, base = x, e = y
            while e > 0 {
                if e & 1 == 1 { result = result &* base }
                base = base &* base
                e >>= 1
            }
            return result
        }
    }
    enum Minimum: PairKernel { @inline(__always) static func apply(_ a: I, _ b: I) -> I { Swift.min(a, b) } }
    enum Maximum: PairKernel { @inline(__always) static func apply(_ a: I, _ b: I) -> I { Swift.max(a, b) } }
}

/// Comparisons and logical operations (non-zero is true) for any element type.
enum Compare<T: NDScalar & Comparable & Numeric> {
    enum Eq: PairKernel { @inline(__always) static func apply(_ a: T, _ b: T) -> Bool { a == b } }
    enum Ne: PairKernel { @inline(__always) static func apply(_ a: T, _ b: T) -> Bool { a != b } }
    enum Lt: PairKernel { @inline(__always) static func apply(_ a: T, _ b: T) -> Bool { a < b } }
    enum Le: PairKernel { @inline(__always) static func apply(_ a: T, _ b: T) -> Bool { a <= b } }
    enum Gt: PairKernel { @inline(__always) static func apply(_ a: T, _ b: T) -> Bool { a > b } }
    enum Ge: PairKernel { @inline(__always) static func apply(_ a: T, _ b: T) -> Bool { a >= b } }
    enum And: PairKernel { @inline(__always) static func apply(_ a: T, _ b: T) -> Bool { a != 0 && b != 0 } }
    enum Or: PairKernel { @inline(__always) static func apply(_ a: T, _ b: T) -> Bool { a != 0 || b != 0 } }
    enum Xor: PairKernel { @inline(__always) static func apply(_ a: T, _ b: T) -> Bool { (a != 0) != (b != 0) } }
}
