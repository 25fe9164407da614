#if canImport(Glibc)
import Glibc
#endif

/// Elementwise binary operations with NumPy's broadcasting and promotion.
public enum BinaryOp: String, Sendable {
    case add, sub, mul, div, floordiv, mod, pow, minimum, maximum
    case eq, ne, lt, le, gt, ge

    public var isComparison: Bool { [.eq, .ne, .lt, .le, .gt, .ge].contains(self) }
}

/// One side of an elementwise operation or an assignment: an array or a number. Numbers
/// are "weak", as in NumPy 2 (NEP 50): `int32 array * 2` stays int32, `int32 array * 2.5`
/// is float64. Integers stay exact (an int64 above 2^53 is not rounded through a Double).
public enum Operand: Sendable {
    case array(NDArray)
    case integer(Int64)
    case float(Double)

    public var isInteger: Bool { if case .integer = self { return true } else { return false } }
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
        return t
    }

    /// `a op b`, elementwise, broadcasting; comparisons give bool arrays.
    public static func binary(_ op: BinaryOp, _ a: Operand, _ b: Operand) throws -> NDArray {
        let t = computeType(op, a, b)
        func prepared(_ x: Operand) throws -> NDArray {
            if case .array(let arr) = x { return arr.dtype == t ? arr : try arr.copy(as: t) }
            let s = try NDArray(zeros: [], dtype: t)
            try s.fill(x)
            return s
        }
        let x = try prepared(a), y = try prepared(b)
        let shape = try broadcastShape(x.shape, y.shape)
        let out = try NDArray(uninitialized: shape, dtype: op.isComparison ? .bool : t)
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
        return out
    }

    /// The same memory seen as another dtype of the same size (bool <-> uint8).
    func reinterpreted(as t: DType) -> NDArray {
        NDArray(dtype: t, shape: shape, strides: strides, offset: offset, storage: storage)
    }
}

enum Kernels {
    /// Runs `f` over the broadcast operands into the contiguous `out`: fast paths for
    /// contiguous and scalar operands, threads for large outputs, the strided row loop
    /// for everything else.
    @inline(__always)
    static func run<T: NDScalar, R: NDScalar>(_: T.Type, _: R.Type, _ a: NDArray, _ b: NDArray, _ out: NDArray,
                                             _ f: @escaping @Sendable (T, T) -> R) {
        let n = out.count
        let contiguous = (a.isContiguous || a.strides.allSatisfy { $0 == 0 }) && (b.isContiguous || b.strides.allSatisfy { $0 == 0 })
        if contiguous && out.ndim > 0 {
            let aScalar = a.strides.allSatisfy { $0 == 0 } && n > 1
            let bScalar = b.strides.allSatisfy { $0 == 0 } && n > 1
            let threads = threadCount(elements: n)
            parallel(threads) { t in
                let r = partition(n, threads, t)
                let pa = a.base(T.self), pb = b.base(T.self), po = out.base(R.self)
                if aScalar {
                    let x = pa[0]
                    for k in r { po[k] = f(x, pb[k]) }
                } else if bScalar {
                    let y = pb[0]
                    for k in r { po[k] = f(pa[k], y) }
                } else {
                    for k in r { po[k] = f(pa[k], pb[k]) }
                }
            }
            return
        }
        let pa = a.base(T.self), pb = b.base(T.self), po = out.base(R.self)
        let sa = a.strides.last ?? 0, sb = b.strides.last ?? 0, so = out.strides.last ?? 1
        forEachRow(shape: out.shape, strides: [a.strides, b.strides, out.strides], offsets: [0, 0, 0]) { o, len in
            let x = pa + o[0], y = pb + o[1], z = po + o[2]
            for k in 0..<len { z[k * so] = f(x[k * sa], y[k * sb]) }
        }
    }

    static func float<F: BinaryFloatingPoint & NDScalar>(_: F.Type, _ op: BinaryOp, _ a: NDArray, _ b: NDArray, _ out: NDArray) {
        switch op {
        case .add: run(F.self, F.self, a, b, out) { $0 + $1 }
        case .sub: run(F.self, F.self, a, b, out) { $0 - $1 }
        case .mul: run(F.self, F.self, a, b, out) { $0 * $1 }
        case .div: run(F.self, F.self, a, b, out) { $0 / $1 }
        case .floordiv: run(F.self, F.self, a, b, out) { ($0 / $1).rounded(.down) }
        case .mod: run(F.self, F.self, a, b, out) { x, y in
            // Python's sign rule: the result has the sign of the divisor
            let r = x.truncatingRemainder(dividingBy: y)
            return r != 0 && (r < 0) != (y < 0) ? r + y : r
        }
        case .pow: run(F.self, F.self, a, b, out) { F(Glibc.pow(Double($0), Double($1))) }
        case .minimum: run(F.self, F.self, a, b, out) { x, y in x.isNaN || y.isNaN ? F.nan : Swift.min(x, y) }
        case .maximum: run(F.self, F.self, a, b, out) { x, y in x.isNaN || y.isNaN ? F.nan : Swift.max(x, y) }
        case .eq: run(F.self, Bool.self, a, b, out) { $0 == $1 }
        case .ne: run(F.self, Bool.self, a, b, out) { $0 != $1 }
        case .lt: run(F.self, Bool.self, a, b, out) { $0 < $1 }
        case .le: run(F.self, Bool.self, a, b, out) { $0 <= $1 }
        case .gt: run(F.self, Bool.self, a, b, out) { $0 > $1 }
        case .ge: run(F.self, Bool.self, a, b, out) { $0 >= $1 }
        }
    }

    static func integer<I: FixedWidthInteger & NDScalar>(_: I.Type, _ op: BinaryOp, _ a: NDArray, _ b: NDArray, _ out: NDArray) {
        switch op {
        case .add: run(I.self, I.self, a, b, out) { $0 &+ $1 }
        case .sub: run(I.self, I.self, a, b, out) { $0 &- $1 }
        case .mul: run(I.self, I.self, a, b, out) { $0 &* $1 }
        case .div: run(I.self, I.self, a, b, out) { $1 == 0 ? 0 : $0 / $1 }  // not reached: div computes in float
        case .floordiv: run(I.self, I.self, a, b, out) { x, y in
            // NumPy: division by zero gives 0; the quotient rounds toward minus infinity
            if y == 0 { return 0 }
            let (q, overflow) = x.dividedReportingOverflow(by: y)
            if overflow { return q }
            return (x % y != 0) && ((x < 0) != (y < 0)) ? q - 1 : q
        }
        case .mod: run(I.self, I.self, a, b, out) { x, y in
            if y == 0 { return 0 }
            let (r, overflow) = x.remainderReportingOverflow(dividingBy: y)
            if overflow { return 0 }
            return r != 0 && ((r < 0) != (y < 0)) ? r &+ y : r
        }
        case .pow: run(I.self, I.self, a, b, out) { x, y in
            var result: I = 1, base = x, e = y
            while e > 0 {
                if e & 1 == 1 { result = result &* base }
                base = base &* base
                e >>= 1
            }
            return result
        }
        case .minimum: run(I.self, I.self, a, b, out) { Swift.min($0, $1) }
        case .maximum: run(I.self, I.self, a, b, out) { Swift.max($0, $1) }
        case .eq: run(I.self, Bool.self, a, b, out) { $0 == $1 }
        case .ne: run(I.self, Bool.self, a, b, out) { $0 != $1 }
        case .lt: run(I.self, Bool.self, a, b, out) { $0 < $1 }
        case .le: run(I.self, Bool.self, a, b, out) { $0 <= $1 }
        case .gt: run(I.self, Bool.self, a, b, out) { $0 > $1 }
        case .ge: run(I.self, Bool.self, a, b, out) { $0 >= $1 }
        }
    }
}
