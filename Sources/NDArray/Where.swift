/// Choosing elements: where(cond, x, y) and clip(lo, hi).
extension NDArray {
    /// Elementwise `cond ? x : y`, broadcasting all three (NumPy's where). The dtype is
    /// the promotion of x and y, with numbers weak as in arithmetic: an int32 array with
    /// 0 stays int32, with 0.5 it becomes float64. A non-bool `cond` counts non-zero
    /// elements as true.
    public static func `where`(_ cond: NDArray, _ x: Operand, _ y: Operand) throws -> NDArray {
        let c = cond.dtype == .bool ? cond : try binary(.ne, .array(cond), .integer(0))
        // .maximum: the promotion of arithmetic, but bool with bool stays bool
        let t = computeType(.maximum, x, y)
        func prepared(_ v: Operand) throws -> NDArray {
            if case .array(let a) = v { return a.dtype == t ? a : try a.copy(as: t) }
            let s = try NDArray(zeros: [], dtype: t)
            try s.fill(v)
            return s
        }
        let a = try prepared(x), b = try prepared(y)
        let shape: [Int]
        do {
            shape = try broadcastShape(try broadcastShape(c.shape, a.shape), b.shape)
        } catch {
            throw ArrayError("where: cond, x and y could not be broadcast together with shapes \(describe(c.shape)) \(describe(a.shape)) \(describe(b.shape))")
        }
        let out = try NDArray(uninitialized: shape, dtype: t)
        t.dispatch(Select(cond: try c.broadcast(to: shape), x: try a.broadcast(to: shape),
                          y: try b.broadcast(to: shape), out: out))
        return out
    }

    /// The values limited to [lo, hi]; either bound may be nil (no limit). Bounds are
    /// numbers or arrays that broadcast; NaN propagates, and lo > hi gives hi, as NumPy.
    /// Number bounds are weak: integer arrays stay integer with integer bounds (a bound
    /// beyond the dtype's range limits nothing), float bounds give floats.
    public func clipped(_ lo: Operand?, _ hi: Operand?) throws -> NDArray {
        func bound(_ b: Operand?, isLow: Bool) throws -> Operand? {
            guard let b, case .integer(let v) = b, dtype.isInteger else { return b }
            let (mn, mx) = dtype.integerRange
            if isLow {
                if v > mx { throw ArrayError("clip: lower bound \(v) is above the largest \(dtype.rawValue) (\(mx))") }
                return v < mn ? nil : b
            } else {
                if v < mn { throw ArrayError("clip: upper bound \(v) is below the smallest \(dtype.rawValue) (\(mn))") }
                return v > mx ? nil : b
            }
        }
        let l = try bound(lo, isLow: true), h = try bound(hi, isLow: false)
        // dropping an integer bound changes no dtype: weak integers keep integer dtypes
        var r = self
        if let l { r = try NDArray.binary(.maximum, .array(r), l) }
        if let h { r = try NDArray.binary(.minimum, .array(r), h) }
        return r.storage === storage ? try copy() : r
    }
}

extension DType {
    /// The smallest and largest values of an integer dtype (uint64's top clamps to Int64.max).
    var integerRange: (Int64, Int64) {
        switch self {
        case .bool: return (0, 1)
        case .int8: return (Int64(Int8.min), Int64(Int8.max))
        case .int16: return (Int64(Int16.min), Int64(Int16.max))
        case .int32: return (Int64(Int32.min), Int64(Int32.max))
        case .uint8: return (0, Int64(UInt8.max))
        case .uint16: return (0, Int64(UInt16.max))
        case .uint32: return (0, Int64(UInt32.max))
        case .uint64: return (0, Int64.max)
        default: return (Int64.min, Int64.max)
        }
    }
}

private struct Select: DTypeVisitor {
    let cond: NDArray, x: NDArray, y: NDArray, out: NDArray
    func visit<T: NDScalar>(_: T.Type) {
        let pc = cond.base(Bool.self), px = x.base(T.self), py = y.base(T.self), po = out.base(T.self)
        let sc = cond.strides.last ?? 0, sx = x.strides.last ?? 0, sy = y.strides.last ?? 0, so = out.strides.last ?? 1
        forEachRow(shape: out.shape, strides: [cond.strides, x.strides, y.strides, out.strides], offsets: [0, 0, 0, 0]) { o, n in
            let c = pc + o[0], a = px + o[1], b = py + o[2], d = po + o[3]
            if sc == 1 && sx == 1 && sy == 1 && so == 1 {
                for k in 0..<n { d[k] = c[k] ? a[k] : b[k] }
            } else {
                for k in 0..<n { d[k * so] = c[k * sc] ? a[k * sx] : b[k * sy] }
            }
        }
    }
}
