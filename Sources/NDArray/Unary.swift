#if canImport(Glibc)
import Glibc
#endif

/// Elementwise functions of one array, as NumPy's ufuncs.
public enum UnaryOp: String, CaseIterable, Sendable {
    case abs, sqrt, exp, log, log10, sin, cos, tan, floor, ceil, round, isnan, isfinite

    /// Functions that keep integer dtypes (abs, floor, ceil, round); the others compute in
    /// float64 for integer input (float32 stays float32), as NumPy. isnan/isfinite give bools.
    var keepsIntegers: Bool { [.abs, .floor, .ceil, .round].contains(self) }
    var isPredicate: Bool { self == .isnan || self == .isfinite }
}

extension NDArray {
    public func apply(_ op: UnaryOp) throws -> NDArray {
        if op.isPredicate {
            let out = try NDArray(uninitialized: shape, dtype: .bool)
            if dtype.isFloat {
                let x = try contiguous(as: .float64)
                let p = x.base(Double.self), o = out.base(Bool.self)
                for k in 0..<count { o[k] = op == .isnan ? p[k].isNaN : p[k].isFinite }
            } else {
                out.fill(op == .isnan ? 0 : 1)  // integers are never NaN, always finite
            }
            return out
        }
        if dtype.isInteger || dtype == .bool {
            if op.keepsIntegers {
                if op == .abs && dtype.isSignedInteger {
                    return try NDArray.binary(.maximum, .array(self),
                                              .array(try NDArray.binary(.sub, .integer(0), .array(self))))
                }
                return try copy()
            }
            return try copy(as: .float64).apply(op)
        }
        let out = try NDArray(uninitialized: shape, dtype: dtype)
        switch dtype {
        case .float32: Kernels.unary(Float.self, op, try contiguous(), out)
        default: Kernels.unary(Double.self, op, try contiguous(), out)
        }
        return out
    }
}

extension Kernels {
    static func unary<F: BinaryFloatingPoint & NDScalar>(_: F.Type, _ op: UnaryOp, _ a: NDArray, _ out: NDArray) {
        let n = out.count
        let f: @Sendable (F) -> F
        switch op {
        case .abs: f = { Swift.abs($0) }
        case .sqrt: f = { $0.squareRoot() }
        case .exp: f = { F(Glibc.exp(Double($0))) }
        case .log: f = { F(Glibc.log(Double($0))) }
        case .log10: f = { F(Glibc.log10(Double($0))) }
        case .sin: f = { F(Glibc.sin(Double($0))) }
        case .cos: f = { F(Glibc.cos(Double($0))) }
        case .tan: f = { F(Glibc.tan(Double($0))) }
        case .floor: f = { $0.rounded(.down) }
        case .ceil: f = { $0.rounded(.up) }
        case .round: f = { $0.rounded(.toNearestOrEven) }  // NumPy rounds half to even
        case .isnan, .isfinite: return
        }
        let threads = threadCount(elements: n)
        parallel(threads) { t in
            let p = a.base(F.self), o = out.base(F.self)
            interruptibly(partition(n, threads, t)) { r in for k in r { o[k] = f(p[k]) } }
        }
    }
}
