/// NumPy's advanced indexing: boolean masks and integer index arrays. Unlike slices these
/// make copies (`a[mask]`, `a:take(idx)`) and write through on assignment.
extension NDArray {
    // MARK: boolean masks

    /// Checks that `mask` can index this array: a bool array matching the leading axes.
    func checkMask(_ mask: NDArray) throws {
        guard mask.dtype == .bool else {
            throw ArrayError("a mask must be a bool array, got \(mask.dtype.rawValue) (integer arrays select by index)")
        }
        guard mask.ndim > 0 else {
            throw ArrayError("a 0-d bool array cannot index an array of shape \(NDArray.describe(shape)); use a mask with the array's shape")
        }
        guard mask.ndim <= ndim else {
            throw ArrayError("too many indices: a mask of shape \(NDArray.describe(mask.shape)) for an array of shape \(NDArray.describe(shape))")
        }
        for d in 0..<mask.ndim where mask.shape[d] != shape[d] {
            throw ArrayError("boolean mask of shape \(NDArray.describe(mask.shape)) does not match array of shape \(NDArray.describe(shape)) along axis \(d): the array has \(shape[d]), the mask \(mask.shape[d])")
        }
    }

    /// The number of true elements of a bool array.
    func countTrue() -> Int {
        var n = 0
        let p = base(Bool.self), s = strides.last ?? 1
        forEachRow(shape: shape, strides: [strides], offsets: [0]) { o, len in
            let row = p + o[0]
            for k in 0..<len where row[k * s] { n += 1 }
        }
        return n
    }

    /// The elements where `mask` is true, in C order, as a new array: 1-D when the mask
    /// has this array's shape, (n, rest...) when it covers the leading axes (NumPy's
    /// `a[mask]`).
    public func masked(_ mask: NDArray) throws -> NDArray {
        try checkMask(mask)
        let rest = Array(shape[mask.ndim...])
        let out = try NDArray(uninitialized: [mask.countTrue()] + rest, dtype: dtype)
        dtype.dispatch(MaskCopy(array: self, mask: mask, other: out, gather: true))
        return out
    }

    /// Sets the elements where `mask` is true: `value` is a number or an array that
    /// broadcasts to the selection's shape (n, rest...) (NumPy's `a[mask] = value`).
    public func setMasked(_ mask: NDArray, _ value: Operand) throws {
        try checkMask(mask)
        let selected = [mask.countTrue()] + Array(shape[mask.ndim...])
        let v = try assignmentSource(value, selected) {
            "cannot assign an array of shape \(NDArray.describe($0)) to the \(selected[0]) positions the mask selects (selection shape \(NDArray.describe(selected)))"
        }
        dtype.dispatch(MaskCopy(array: self, mask: mask, other: v, gather: false))
    }

    /// `value` as an array of this dtype with the selection's shape (broadcast, so a
    /// number costs nothing), copied first if it shares memory with this array.
    func assignmentSource(_ value: Operand, _ selected: [Int], _ message: ([Int]) -> String) throws -> NDArray {
        var v: NDArray
        switch value {
        case .array(let x):
            v = x.dtype == dtype && x.storage !== storage ? x : try x.copy(as: dtype)
        default:
            v = try NDArray(zeros: [], dtype: dtype)
            try v.fill(value)
        }
        do { v = try v.broadcast(to: selected) } catch { throw ArrayError(message(v.shape)) }
        return v
    }

    // MARK: integer index arrays

    /// `indices` as checked positions along an axis of length `n` (negative count from
    /// the end), in C order.
    static func positions(_ indices: NDArray, axis: Int, length n: Int) throws -> [Int] {
        guard indices.dtype.isInteger else {
            if indices.dtype == .bool {
                throw ArrayError("bool arrays select by mask, not by index: use a[mask] with a mask of the array's leading shape")
            }
            throw ArrayError("arrays used as indices must be of integer (or boolean) type, got \(indices.dtype.rawValue)")
        }
        let raw = indices.dtype.dispatch(IndexValues(array: indices))
        var out: [Int] = []
        out.reserveCapacity(raw.count)
        for r in raw {
            var i: Int
            switch r {
            case .signed(let v): i = Int(v)
            case .unsigned(let v):
                guard v <= UInt64(Int.max) else {
                    throw ArrayError("index \(v) is out of bounds for axis \(axis) with size \(n)")
                }
                i = Int(v)
            }
            let given = i
            if i < 0 { i += n }
            guard i >= 0, i < n else { throw ArrayError("index \(given) is out of bounds for axis \(axis) with size \(n)") }
            out.append(i)
        }
        return out
    }

    /// The elements at integer positions along `axis`, as a new array of shape
    /// shape[..<axis] + indices.shape + shape[axis+1...] (NumPy's take; `a[idx]` is
    /// take along axis 0). Indices may repeat; negative ones count from the end.
    public func take(_ indices: NDArray, axis: Int = 0) throws -> NDArray {
        guard ndim > 0 else { throw ArrayError("cannot take from a 0-d array") }
        let ax = try NDArray.checkedAxis(axis, ndim: ndim, shape: shape)
        let pos = try NDArray.positions(indices, axis: ax, length: shape[ax])
        let outShape = Array(shape[..<ax]) + indices.shape + Array(shape[(ax + 1)...])
        let out = try NDArray(uninitialized: outShape, dtype: dtype)
        // the output seen with the index axes folded into one, of length pos.count
        let flat = NDArray(dtype: dtype, shape: Array(shape[..<ax]) + [pos.count] + Array(shape[(ax + 1)...]),
                           strides: NDArray.contiguousStrides(Array(shape[..<ax]) + [pos.count] + Array(shape[(ax + 1)...])),
                           offset: 0, storage: out.storage)
        dtype.dispatch(TakeCopy(array: self, axis: ax, positions: pos, other: flat, gather: true))
        return out
    }

    /// Sets the elements at integer positions along `axis`; `value` broadcasts to the
    /// shape `take` would give. With repeated indices the last value wins.
    public func put(_ indices: NDArray, _ value: Operand, axis: Int = 0) throws {
        guard ndim > 0 else { throw ArrayError("cannot index a 0-d array with an index array") }
        let ax = try NDArray.checkedAxis(axis, ndim: ndim, shape: shape)
        let pos = try NDArray.positions(indices, axis: ax, length: shape[ax])
        let selected = Array(shape[..<ax]) + indices.shape + Array(shape[(ax + 1)...])
        let v = try assignmentSource(value, selected) {
            "cannot assign an array of shape \(NDArray.describe($0)) to the selection of shape \(NDArray.describe(selected)) (index array \(NDArray.describe(indices.shape)) along axis \(ax))"
        }
        // fold the index axes of the value into one
        let k = indices.ndim
        let pre = Array(selected[..<ax]), post = Array(selected[(ax + k)...])
        var foldedStrides = Array(v.strides[..<ax])
        if k == 0 {
            foldedStrides.append(0)
        } else {
            // the index axes of a broadcast value are either all contiguous-foldable
            // (from a real array) or all stride 0 (broadcast); copy otherwise
            let idxStrides = Array(v.strides[ax..<(ax + k)])
            let idxShape = Array(selected[ax..<(ax + k)])
            if let s = NDArray.foldedStride(idxShape, idxStrides) {
                foldedStrides.append(s)
            } else {
                let c = try v.copy()
                return try put(indices, .array(c), axis: axis)
            }
        }
        foldedStrides += Array(v.strides[(ax + k)...])
        let folded = NDArray(dtype: dtype, shape: pre + [pos.count] + post, strides: foldedStrides,
                             offset: v.offset, storage: v.storage)
        dtype.dispatch(TakeCopy(array: self, axis: ax, positions: pos, other: folded, gather: false))
    }

    /// The one stride that walks axes of `shape` with `strides` in C order, if there is one.
    static func foldedStride(_ shape: [Int], _ strides: [Int]) -> Int? {
        var result: Int? = nil
        var expected: Int? = nil
        for d in stride(from: shape.count - 1, through: 0, by: -1) where shape[d] != 1 {
            if let e = expected {
                guard strides[d] == e else { return nil }
            } else {
                result = strides[d]
            }
            expected = strides[d] * shape[d]
        }
        return result ?? 0
    }

    // MARK: nonzero

    /// The positions of the non-zero (true) elements, one int64 array per axis, in C
    /// order (NumPy's nonzero).
    public func nonzero() throws -> [NDArray] {
        guard ndim > 0 else {
            throw ArrayError("nonzero of a 0-d array is not allowed; reshape it to (1,) first")
        }
        let mask = dtype == .bool ? self : try NDArray.binary(.ne, .array(self), .integer(0))
        let n = mask.countTrue()
        let outs = try (0..<ndim).map { _ in try NDArray(uninitialized: [n], dtype: .int64) }
        if n == 0 { return outs }
        let ptrs = outs.map { $0.base(Int64.self) }
        let p = mask.base(Bool.self)
        // rows of the last axis, with an odometer over the leading axes
        let inner = shape[ndim - 1], s = mask.strides[ndim - 1], last = ptrs[ndim - 1]
        var lead = [Int](repeating: 0, count: ndim - 1)
        var o = 0, j = 0
        while true {
            let row = p + o
            for k in 0..<inner where row[k * s] {
                for d in 0..<(ndim - 1) { ptrs[d][j] = Int64(lead[d]) }
                last[j] = Int64(k)
                j += 1
            }
            var d = ndim - 2
            while d >= 0 {
                lead[d] += 1
                o += mask.strides[d]
                if lead[d] < shape[d] { break }
                o -= mask.strides[d] * shape[d]
                lead[d] = 0
                d -= 1
            }
            if d < 0 { break }
        }
        return outs
    }

    /// The positions of the non-zero elements as an (n, ndim) int64 array, one row per
    /// element (NumPy's argwhere).
    public func argwhere() throws -> NDArray {
        if ndim == 0 {
            let n = try NDArray.binary(.ne, .array(self), .integer(0)).value(at: []) != 0 ? 1 : 0
            return try NDArray(zeros: [n, 0], dtype: .int64)
        }
        return try NDArray.stack(try nonzero(), axis: 1)
    }
}

private enum IndexValue {
    case signed(Int64)
    case unsigned(UInt64)
}

private struct IndexValues: DTypeVisitor {
    let array: NDArray
    func visit<T: NDScalar>(_: T.Type) -> [IndexValue] {
        var out: [IndexValue] = []
        out.reserveCapacity(array.count)
        let p = array.base(T.self), s = array.strides.last ?? 1
        let unsigned = T.dtype == .uint64
        forEachRow(shape: array.shape, strides: [array.strides], offsets: [0]) { o, n in
            let row = p + o[0]
            for k in 0..<n {
                let v = row[k * s].asInt64
                out.append(unsigned ? .unsigned(UInt64(bitPattern: v)) : .signed(v))
            }
        }
        return out
    }
}

/// Copies one block of `shape` between two strided places of the same element type.
@inline(__always)
private func copyBlock<T>(_ src: UnsafeMutablePointer<T>, _ ss: [Int], _ dst: UnsafeMutablePointer<T>, _ ds: [Int], _ shape: [Int]) {
    if shape.isEmpty { dst.pointee = src.pointee; return }
    let si = ss[ss.count - 1], di = ds[ds.count - 1]
    forEachRow(shape: shape, strides: [ss, ds], offsets: [0, 0]) { o, n in
        let sp = src + o[0], dp = dst + o[1]
        for k in 0..<n { dp[k * di] = sp[k * si] }
    }
}

/// Mask gather (array -> other, other contiguous (n, rest...)) or scatter (other, of
/// shape (n, rest...) and any strides, -> array).
private struct MaskCopy: DTypeVisitor {
    let array: NDArray, mask: NDArray, other: NDArray, gather: Bool
    func visit<T: NDScalar>(_: T.Type) {
        let m = mask.ndim
        let lead = Array(array.shape[..<m]), leadStrides = Array(array.strides[..<m])
        let rest = Array(array.shape[m...]), restStrides = Array(array.strides[m...])
        let otherRest = Array(other.strides.dropFirst())
        let o0 = other.strides.first ?? 0
        let pa = array.base(T.self), po = other.base(T.self), pm = mask.base(Bool.self)
        let ms = mask.strides[m - 1], as_ = leadStrides[m - 1]
        var j = 0
        forEachRow(shape: lead, strides: [mask.strides, leadStrides], offsets: [0, 0]) { o, n in
            let mrow = pm + o[0], arow = pa + o[1]
            if rest.isEmpty {
                if gather {
                    for k in 0..<n where mrow[k * ms] { po[j * o0] = arow[k * as_]; j += 1 }
                } else {
                    for k in 0..<n where mrow[k * ms] { arow[k * as_] = po[j * o0]; j += 1 }
                }
            } else {
                for k in 0..<n where mrow[k * ms] {
                    if gather {
                        copyBlock(arow + k * as_, restStrides, po + j * o0, otherRest, rest)
                    } else {
                        copyBlock(po + j * o0, otherRest, arow + k * as_, restStrides, rest)
                    }
                    j += 1
                }
            }
        }
    }
}

/// Take gather (array -> other) or put scatter (other -> array) along `axis`; `other`
/// has the array's shape with the axis length replaced by positions.count.
private struct TakeCopy: DTypeVisitor {
    let array: NDArray, axis: Int, positions: [Int], other: NDArray, gather: Bool
    func visit<T: NDScalar>(_: T.Type) {
        var block = array.shape, aStrides = array.strides, oStrides = other.strides
        block.remove(at: axis)
        aStrides.remove(at: axis)
        oStrides.remove(at: axis)
        let sa = array.strides[axis], so = other.strides[axis]
        let pa = array.base(T.self), po = other.base(T.self)
        if block.isEmpty {
            if gather {
                for (j, i) in positions.enumerated() { po[j * so] = pa[i * sa] }
            } else {
                for (j, i) in positions.enumerated() { pa[i * sa] = po[j * so] }
            }
            return
        }
        if block.contains(0) { return }
        for (j, i) in positions.enumerated() {
            if gather {
                copyBlock(pa + i * sa, aStrides, po + j * so, oStrides, block)
            } else {
                copyBlock(po + j * so, oStrides, pa + i * sa, aStrides, block)
            }
        }
    }
}
