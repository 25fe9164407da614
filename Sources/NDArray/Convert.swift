/// Copies and dtype conversions (astype), strided in, contiguous out.
extension NDArray {
    /// A contiguous copy, optionally converted to another dtype (NumPy's astype rules:
    /// floats to integers truncate; NaN and out-of-range become 0 or the nearest bound).
    public func copy(as newType: DType? = nil) throws -> NDArray {
        let out = try NDArray(uninitialized: shape, dtype: newType ?? dtype)
        try copy(into: out)
        return out
    }

    /// This array if it is already contiguous with the dtype, else a contiguous copy.
    public func contiguous(as newType: DType? = nil) throws -> NDArray {
        if isContiguous && (newType == nil || newType == dtype) { return self }
        return try copy(as: newType)
    }

    /// Writes this array's values into `out` (same shape, or broadcastable to it).
    public func copy(into out: NDArray) throws {
        let src = try broadcast(to: out.shape)
        dtype.dispatch(ConvertSource(src: src, dst: out))
    }
}

private struct ConvertSource: DTypeVisitor {
    let src: NDArray, dst: NDArray
    func visit<S: NDScalar>(_: S.Type) {
        dst.dtype.dispatch(ConvertDest<S>(src: src, dst: dst))
    }
}

private struct ConvertDest<S: NDScalar>: DTypeVisitor {
    let src: NDArray, dst: NDArray
    func visit<D: NDScalar>(_: D.Type) {
        let s = src.base(S.self), d = dst.base(D.self)
        let ss = src.strides.last ?? 1, ds = dst.strides.last ?? 1
        forEachRow(shape: dst.shape, strides: [src.strides, dst.strides], offsets: [0, 0], interruptible: true) { o, n in
            let sp = s + o[0], dp = d + o[1]
            if S.self == D.self {
                let sp = UnsafeMutableRawPointer(sp).assumingMemoryBound(to: D.self)
                if ss == 1 && ds == 1 {
                    dp.update(from: sp, count: n)
                } else {
                    for k in 0..<n { dp[k * ds] = sp[k * ss] }
                }
            } else if ss == 1 && ds == 1 {
                // unit steps apart: loops the compiler vectorises (int32 -> int64 of a
                // Pilatus 2M frame: 0.5 ms instead of 3 ms with the steps multiplied in)
                if D.dtype.isFloat || S.dtype.isFloat {
                    for k in 0..<n { dp[k] = D(fromDouble: sp[k].asDouble) }
                } else {
                    for k in 0..<n { dp[k] = D(fromInt: sp[k].asInt64) }
                }
            } else if D.dtype.isFloat || S.dtype.isFloat {
                for k in 0..<n { dp[k * ds] = D(fromDouble: sp[k * ss].asDouble) }
            } else {
                for k in 0..<n { dp[k * ds] = D(fromInt: sp[k * ss].asInt64) }
            }
        }
    }
}

extension NDArray {
    /// NumPy's broadcasting: the shape two shapes broadcast to, or an error naming both.
    public static func broadcastShape(_ a: [Int], _ b: [Int]) throws -> [Int] {
        let n = max(a.count, b.count)
        var out = [Int](repeating: 1, count: n)
        for i in 0..<n {
            let x = i < n - a.count ? 1 : a[i - (n - a.count)]
            let y = i < n - b.count ? 1 : b[i - (n - b.count)]
            if x == y || y == 1 { out[i] = x } else if x == 1 { out[i] = y } else {
                throw ArrayError("operands could not be broadcast together with shapes \(describe(a)) \(describe(b))")
            }
        }
        return out
    }

    /// A view of this array with `shape` (stride 0 along broadcast axes).
    public func broadcast(to target: [Int]) throws -> NDArray {
        if target == shape { return self }
        guard target.count >= shape.count else {
            throw ArrayError("cannot broadcast shape \(NDArray.describe(shape)) to \(NDArray.describe(target))")
        }
        let lead = target.count - shape.count
        var newStrides = [Int](repeating: 0, count: target.count)
        for i in 0..<shape.count {
            let t = target[lead + i]
            if shape[i] == t { newStrides[lead + i] = strides[i] } else if shape[i] == 1 { newStrides[lead + i] = 0 } else {
                throw ArrayError("cannot broadcast shape \(NDArray.describe(shape)) to \(NDArray.describe(target))")
            }
        }
        return NDArray(dtype: dtype, shape: target, strides: newStrides, offset: offset, storage: storage)
    }
}
