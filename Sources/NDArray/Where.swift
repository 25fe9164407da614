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
        // one pass for number bounds that keep the dtype (the common case: a frame
        // clipped to a range); arrays and promoting bounds go through maximum/minimum
        let keeps = [l, h].allSatisfy { b in
            guard let b else { return true }
            if case .array = b { return false }
            return NDArray.computeType(.maximum, .array(self), b) == dtype
        }
        if keeps && dtype != .bool {
            let out = try NDArray(uninitialized: shape, dtype: dtype)
            dtype.dispatch(ClipNumbers(src: self, out: out, lo: l, hi: h))
            return out
        }
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
        forEachRow(shape: out.shape, strides: [cond.strides, x.strides, y.strides, out.strides], offsets: [0, 0, 0, 0],
                   interruptible: true) { o, n in
            let c = pc + o[0], a = px + o[1], b = py + o[2], d = po + o[3]
            if sc == 1 && sx == 1 && sy == 1 && so == 1 {
                for k in 0..<n { d[k] = c[k] ? a[k] : b[k] }
            } else {
                for k in 0..<n { d[k * so] = c[k * sc] ? a[k * sx] : b[k * sy] }
            }
        }
    }
}

/// clip with number bounds of the array's own dtype, in one pass: NaN data stays NaN, a
/// NaN bound makes every element NaN, and lo > hi gives hi (NumPy's maximum-then-minimum).
private struct ClipNumbers: DTypeVisitor {
    let src: NDArray, out: NDArray, lo: Operand?, hi: Operand?
    func visit<T: NDScalar>(_: T.Type) {
        func value(_ b: Operand?) -> T? {
            switch b {
            case .integer(let v)?: return T.dtype.isFloat ? T(fromDouble: Double(v)) : T(fromInt: v)
            case .float(let v)?: return T(fromDouble: v)
            default: return nil
            }
        }
        let l = value(lo), h = value(hi)
        let n = out.count
        let po = out.base(T.self)
        if T.dtype.isFloat, (l.map { $0.asDouble.isNaN } ?? false) || (h.map { $0.asDouble.isNaN } ?? false) {
            for k in 0..<n { po[k] = T(fromDouble: .nan) }
            return
        }
        let ps = src.base(T.self), ss = src.strides.last ?? 1
        var k = 0
        forEachRow(shape: src.shape, strides: [src.strides], offsets: [0], interruptible: true) { o, len in
            let row = ps + o[0], dst = po + k
            switch (l, h) {
            case let (a?, b?):
                if ss == 1 { for i in 0..<len { dst[i] = clamp(row[i], a, b) } } else { for i in 0..<len { dst[i] = clamp(row[i * ss], a, b) } }
            case let (a?, nil):
                for i in 0..<len { let x = row[i * ss]; dst[i] = below(x, a) ? a : x }
            case let (nil, b?):
                for i in 0..<len { let x = row[i * ss]; dst[i] = below(b, x) ? b : x }
            case (nil, nil):
                for i in 0..<len { dst[i] = row[i * ss] }
            }
            k += len
        }
    }
}

/// a < b for clip: false when either is NaN (so NaN data passes through unchanged).
@inline(__always)
private func below<T: NDScalar>(_ a: T, _ b: T) -> Bool {
    if T.dtype.isFloat { return a.asDouble < b.asDouble }
    if T.dtype.isUnsignedInteger { return UInt64(bitPattern: a.asInt64) < UInt64(bitPattern: b.asInt64) }
    return a.asInt64 < b.asInt64
}

/// x limited to [lo, hi] (lo > hi gives hi); a NaN x stays NaN.
@inline(__always)
private func clamp<T: NDScalar>(_ x: T, _ lo: T, _ hi: T) -> T {
    let r = below(x, lo) ? lo : x
    return below(hi, r) ? hi : r
}
