/// Constructors: zeros/ones/full/arange/linspace and from values.
extension NDArray {
    /// An array filled with `value`.
    public static func full(_ shape: [Int], _ value: Double, dtype: DType = .float64) throws -> NDArray {
        try full(shape, .float(value), dtype: dtype)
    }

    /// An array filled with `value` (integers exact): one pass over new memory, not a
    /// zeroing pass and then a filling one.
    public static func full(_ shape: [Int], _ value: Operand, dtype: DType) throws -> NDArray {
        let a = try NDArray(uninitialized: shape, dtype: dtype)
        try a.fill(value)
        return a
    }

    public static func ones(_ shape: [Int], dtype: DType = .float64) throws -> NDArray {
        try full(shape, 1, dtype: dtype)
    }

    /// Values from `start` up to (not including) `stop` by `step`, as NumPy's arange.
    public static func arange(_ start: Double, _ stop: Double, _ step: Double = 1, dtype: DType? = nil) throws -> NDArray {
        guard step != 0, step.isFinite else { throw ArrayError("arange step must be a non-zero number, got \(step)") }
        let n = max(0, Int(((stop - start) / step).rounded(.up)))
        let a = try NDArray(zeros: [n], dtype: dtype ?? .float64)
        for i in 0..<n { try a.setValue(start + Double(i) * step, at: [i]) }
        return a
    }

    /// `num` evenly spaced values from `start` to `stop` (included, as NumPy's default).
    public static func linspace(_ start: Double, _ stop: Double, _ num: Int, dtype: DType = .float64) throws -> NDArray {
        guard num >= 0 else { throw ArrayError("linspace needs a non-negative number of samples, got \(num)") }
        let a = try NDArray(zeros: [num], dtype: dtype)
        let step = num > 1 ? (stop - start) / Double(num - 1) : 0
        for i in 0..<num { try a.setValue(i == num - 1 && num > 1 ? stop : start + Double(i) * step, at: [i]) }
        return a
    }

    /// A contiguous array from values in C order.
    public static func from(_ values: [Double], shape: [Int], dtype: DType = .float64) throws -> NDArray {
        try from(values.map { Operand.float($0) }, shape: shape, dtype: dtype)
    }

    /// A contiguous array from numbers in C order; integers stay exact in integer dtypes.
    public static func from(_ values: [Operand], shape: [Int], dtype: DType) throws -> NDArray {
        guard shape.reduce(1, *) == values.count else {
            throw ArrayError("\(values.count) values cannot fill shape \(describe(shape))")
        }
        let a = try NDArray(zeros: shape, dtype: dtype)
        dtype.dispatch(FillFrom(array: a, values: values))
        return a
    }

    /// Sets every element to `value` (converted to the dtype).
    public func fill(_ value: Double) {
        dtype.dispatch(Fill(array: self, value: value, exact: nil))
    }

    /// Sets every element from a number (integers exact) or an array (broadcast to this
    /// shape): what `a["sel"] = x` does.
    public func fill(_ value: Operand) throws {
        switch value {
        case .array(let other): try other.copy(into: self)
        case .float(let v): fill(v)
        case .integer(let v): dtype.dispatch(Fill(array: self, value: Double(v), exact: v))
        }
    }

    /// All values as Doubles in C order (for printing and tables).
    public func doubles() -> [Double] {
        dtype.dispatch(ToDoubles(array: self))
    }
}

private struct Fill: DTypeVisitor {
    let array: NDArray, value: Double, exact: Int64?
    func visit<T: NDScalar>(_: T.Type) {
        let v = exact.map { T.dtype.isFloat ? T(fromDouble: value) : T(fromInt: $0) } ?? T(fromDouble: value)
        let p = array.base(T.self), s = array.strides.last ?? 1
        if array.isContiguous {
            // new memory: the page faults of a large array are spread over the cores
            let count = array.count, threads = threadCount(elements: count)
            nonisolated(unsafe) let base = p
            parallel(threads) { k in
                let r = partition(count, threads, k)
                (base + r.lowerBound).update(repeating: v, count: r.count)
            }
            return
        }
        forEachRow(shape: array.shape, strides: [array.strides], offsets: [0]) { o, n in
            let row = p + o[0]
            if s == 1 { row.update(repeating: v, count: n) } else { for k in 0..<n { row[k * s] = v } }
        }
    }
}

private struct FillFrom: DTypeVisitor {
    let array: NDArray, values: [Operand]
    func visit<T: NDScalar>(_: T.Type) {
        let p = array.base(T.self)
        for (i, v) in values.enumerated() {
            switch v {
            case .integer(let n): p[i] = T.dtype.isFloat ? T(fromDouble: Double(n)) : T(fromInt: n)
            case .float(let d): p[i] = T(fromDouble: d)
            case .array: break  // not a number: from() is given numbers only
            }
        }
    }
}

private struct ToDoubles: DTypeVisitor {
    let array: NDArray
    func visit<T: NDScalar>(_: T.Type) -> [Double] {
        var out: [Double] = []
        out.reserveCapacity(array.count)
        let p = array.base(T.self), s = array.strides.last ?? 1
        forEachRow(shape: array.shape, strides: [array.strides], offsets: [0]) { o, n in
            for k in 0..<n { out.append(p[o[0] + k * s].asDouble) }
        }
        return out
    }
}
