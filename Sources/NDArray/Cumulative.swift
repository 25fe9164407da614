/// Running sums and products along an axis (NumPy's cumsum and cumprod).
public enum Accumulation: String, Sendable {
    case cumsum, cumprod

    var reduction: Reduction { self == .cumsum ? .sum : .prod }
}

extension NDArray {
    /// The running sum or product along `axis`; without an axis, of the flattened array
    /// (C order), as NumPy. Integers accumulate in int64 (uint64 for unsigned, int64 for
    /// bool), floats keep their dtype.
    public func accumulate(_ op: Accumulation, axis: Int? = nil) throws -> NDArray {
        let outType = dtype.accumulator
        if let axis {
            let r = try normalizedAxes([axis])[0]
            let out = try NDArray(uninitialized: shape, dtype: outType)
            if count > 0 { dtype.dispatch(AccumulateSource(src: self, out: out, axis: r, op: op.reduction)) }
            return out
        }
        let out = try NDArray(uninitialized: [count], dtype: outType)
        if count > 0 { dtype.dispatch(AccumulateSource(src: self, out: out, axis: nil, op: op.reduction)) }
        return out
    }
}

private struct AccumulateSource: DTypeVisitor {
    let src: NDArray, out: NDArray, axis: Int?, op: Reduction

    func visit<S: NDScalar>(_: S.Type) {
        switch out.dtype {
        case src.dtype: run(S.self, S.self)
        case .int64: run(S.self, Int64.self)
        case .uint64: run(S.self, UInt64.self)
        default: preconditionFailure("no \(out.dtype) accumulator for \(src.dtype)")
        }
    }

    func run<S: NDScalar, A: NDScalar>(_: S.Type, _: A.Type) {
        let op = self.op
        let s = src.base(S.self), o = out.base(A.self)
        guard let axis else {
            // flattened: the rows in C order, one running value carried across them
            if src.ndim == 0 { o[0] = Ops.convert(s[0], to: A.self); return }
            let sIn = src.strides.last!
            var acc = Ops.convert(s[0], to: A.self)
            var first = true
            forEachRow(shape: src.shape, strides: [src.strides, NDArray.contiguousStrides(src.shape)], offsets: [0, 0],
                       interruptible: true) { offs, n in
                let row = s + offs[0], dst = o + offs[1]
                for k in 0..<n {
                    let x = Ops.convert(row[k * sIn], to: A.self)
                    acc = first ? x : Ops.merge(op, acc, x)
                    first = false
                    dst[k] = acc
                }
            }
            return
        }
        // along an axis: loop order (other axes but the last, the axis, the last axis); a
        // position operand (stride 1 along the axis) tells the first element of each run
        let nd = src.ndim, last = nd - 1
        let order = axis == last ? Array(0..<nd) : (0..<nd).filter { $0 != axis && $0 != last } + [axis, last]
        var pos = [Int](repeating: 0, count: nd)
        pos[axis] = 1
        let shape = order.map { src.shape[$0] }, ss = order.map { src.strides[$0] }
        let os = order.map { out.strides[$0] }, ps = order.map { pos[$0] }
        let back = out.strides[axis]  // from one element to the one before it along the axis
        let sIn = ss.last!, oIn = os.last!
        // threads split an outer axis other than the accumulated one, else the last axis
        let split = order[0] != axis ? 0 : axis != last ? shape.count - 1 : -1
        let parts = split < 0 ? 1 : min(threadCount(elements: src.count), shape[split])
        let source = self.src, target = self.out
        parallel(parts) { t in
            let s = source.base(S.self), o = target.base(A.self)
            var sub = shape
            var start = [0, 0, 0]
            if split >= 0 {
                let r = partition(shape[split], parts, t)
                sub[split] = r.count
                start = [r.lowerBound * ss[split], r.lowerBound * os[split], 0]
            }
            forEachRow(shape: sub, strides: [ss, os, ps], offsets: start, interruptible: true) { offs, n in
                let row = s + offs[0], dst = o + offs[1]
                if axis == last {
                    var acc = Ops.convert(row[0], to: A.self)
                    dst[0] = acc
                    for k in 1..<max(n, 1) {
                        acc = Ops.merge(op, acc, Ops.convert(row[k * sIn], to: A.self))
                        dst[k] = acc
                    }
                } else if offs[2] == 0 {
                    for k in 0..<n { dst[k * oIn] = Ops.convert(row[k * sIn], to: A.self) }
                } else {
                    let prev = dst - back
                    for k in 0..<n { dst[k * oIn] = Ops.merge(op, prev[k * oIn], Ops.convert(row[k * sIn], to: A.self)) }
                }
            }
        }
    }
}
