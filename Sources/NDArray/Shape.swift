/// Shape operations: views that only rearrange shape and strides (transpose, squeeze,
/// expand, ravel), and the copies that join arrays (concatenate, stack).
extension NDArray {
    /// An axis counted from the end when negative, checked against `ndim`.
    static func checkedAxis(_ axis: Int, ndim: Int, shape: [Int]) throws -> Int {
        let a = axis < 0 ? axis + ndim : axis
        guard a >= 0, a < ndim else {
            throw ArrayError("axis \(axis) is out of bounds for array of dimension \(ndim) (shape \(describe(shape)))")
        }
        return a
    }

    // MARK: views

    /// The axes permuted: axis k of the result is axis `perm[k]` of this array (a view).
    /// Without `perm` the axes are reversed, as NumPy's `a.T`.
    public func transposed(_ perm: [Int]? = nil) throws -> NDArray {
        let perm = perm ?? Array((0..<ndim).reversed())
        guard perm.count == ndim else {
            throw ArrayError("axes \(NDArray.describe(perm)) don't match array of shape \(NDArray.describe(shape)): \(ndim) axes expected, got \(perm.count)")
        }
        var seen = [Bool](repeating: false, count: ndim)
        var axes: [Int] = []
        for p in perm {
            let a = try NDArray.checkedAxis(p, ndim: ndim, shape: shape)
            guard !seen[a] else {
                throw ArrayError("repeated axis \(p) in transpose axes \(NDArray.describe(perm)) for array of shape \(NDArray.describe(shape))")
            }
            seen[a] = true
            axes.append(a)
        }
        return NDArray(dtype: dtype, shape: axes.map { shape[$0] }, strides: axes.map { strides[$0] },
                       offset: offset, storage: storage)
    }

    /// Without the length-1 axes (all of them, or those given; a view). Naming an axis
    /// whose length is not 1 is an error.
    public func squeezed(_ axes: [Int]? = nil) throws -> NDArray {
        var drop = Set<Int>()
        if let axes {
            for a in axes {
                let n = try NDArray.checkedAxis(a, ndim: ndim, shape: shape)
                guard shape[n] == 1 else {
                    throw ArrayError("cannot squeeze axis \(a) of shape \(NDArray.describe(shape)): its length is \(shape[n]), not 1")
                }
                drop.insert(n)
            }
        } else {
            drop = Set(shape.indices.filter { shape[$0] == 1 })
        }
        let keep = shape.indices.filter { !drop.contains($0) }
        return NDArray(dtype: dtype, shape: keep.map { shape[$0] }, strides: keep.map { strides[$0] },
                       offset: offset, storage: storage)
    }

    /// A new axis of length 1 at `axis` (0...ndim, negative counts from the end of the
    /// result, as NumPy's expand_dims); a view.
    public func expanded(_ axis: Int) throws -> NDArray {
        guard axis >= -(ndim + 1), axis <= ndim else {
            throw ArrayError("axis \(axis) is out of bounds for a new axis of an array of shape \(NDArray.describe(shape)) (\(-(ndim + 1)) to \(ndim) allowed)")
        }
        let n = axis < 0 ? axis + ndim + 1 : axis
        var s = shape, st = strides
        s.insert(1, at: n)
        st.insert(n < ndim ? strides[n] * max(shape[n], 1) : 1, at: n)
        return NDArray(dtype: dtype, shape: s, strides: st, offset: offset, storage: storage)
    }

    /// The elements in C order as a new contiguous 1-D array.
    public func flattened() throws -> NDArray {
        try copy().reshapedView([count])
    }

    /// The elements in C order as a 1-D array: a view when this array is contiguous,
    /// else a copy (as NumPy's ravel).
    public func raveled() throws -> NDArray {
        isContiguous ? try reshapedView([count]) : try flattened()
    }

    // MARK: joining

    /// The arrays joined along an existing axis (NumPy's concatenate); the dtype is the
    /// promotion of all their dtypes. Shapes must agree except along `axis`.
    public static func concatenate(_ arrays: [NDArray], axis: Int = 0) throws -> NDArray {
        guard let first = arrays.first else { throw ArrayError("need at least one array to concatenate") }
        guard first.ndim > 0 else {
            throw ArrayError("zero-dimensional arrays cannot be concatenated (array #1 has shape ())")
        }
        let ax = try checkedAxis(axis, ndim: first.ndim, shape: first.shape)
        var total = 0
        var type = first.dtype
        for (k, a) in arrays.enumerated() {
            guard a.ndim == first.ndim else {
                throw ArrayError("all the arrays must have the same number of dimensions, but array #1 has shape \(describe(first.shape)) and array #\(k + 1) has shape \(describe(a.shape))")
            }
            for d in 0..<a.ndim where d != ax && a.shape[d] != first.shape[d] {
                throw ArrayError("array #1 has shape \(describe(first.shape)) and array #\(k + 1) has shape \(describe(a.shape)): they differ along axis \(d), and only the concatenation axis \(ax) may differ")
            }
            total += a.shape[ax]
            type = DType.promote(type, a.dtype)
        }
        var outShape = first.shape
        outShape[ax] = total
        let out = try NDArray(uninitialized: outShape, dtype: type)
        var start = 0
        for a in arrays {
            let part = NDArray(dtype: type, shape: a.shape, strides: out.strides,
                               offset: start * out.strides[ax], storage: out.storage)
            try a.copy(into: part)
            start += a.shape[ax]
        }
        return out
    }

    /// The arrays joined along a new axis (NumPy's stack): all shapes must be equal;
    /// `axis` is in 0...ndim (negative counts from the end of the result).
    public static func stack(_ arrays: [NDArray], axis: Int = 0) throws -> NDArray {
        guard let first = arrays.first else { throw ArrayError("need at least one array to stack") }
        for (k, a) in arrays.enumerated() where a.shape != first.shape {
            throw ArrayError("all the arrays to stack must have the same shape, but array #1 has shape \(describe(first.shape)) and array #\(k + 1) has shape \(describe(a.shape))")
        }
        _ = try first.expanded(axis)  // checks the axis, naming the shape
        let ax = axis < 0 ? axis + first.ndim + 1 : axis
        return try concatenate(arrays.map { try $0.expanded(ax) }, axis: ax)
    }
}
