/// NumPy-style selections, parsed once and shared by arrays and NeXus fields (as h5py's
/// `_selector`): "0:50, 100:200, ::2", "-1", "...", "3" (drops the axis), and float
/// bounds ("1.5:2.5") that NXdata resolves by axis value.
public struct Selection: Equatable, Sendable {
    public enum Bound: Equatable, Sendable {
        case int(Int)
        case float(Double)
    }

    public enum Item: Equatable, Sendable {
        /// One position; the axis is dropped from the result.
        case index(Bound)
        /// start:stop:step with NumPy's defaults for missing parts.
        case range(Bound?, Bound?, Int?)
        /// "...": as many full ranges as needed.
        case ellipsis
    }

    public var items: [Item]

    public init(_ items: [Item]) { self.items = items }

    /// Parses "a:b:c, i, ..." (spaces allowed). Errors name the text and the bad part.
    public init(parsing text: String) throws {
        var items: [Item] = []
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        for raw in parts {
            let part = raw.trimmingSpaces()
            if part.isEmpty {
                if parts.count == 1 { break }  // "" selects everything
                throw ArrayError("empty index in selection '\(text)'")
            }
            if part == "..." {
                if items.contains(.ellipsis) { throw ArrayError("more than one '...' in selection '\(text)'") }
                items.append(.ellipsis)
                continue
            }
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false).map { $0.trimmingSpaces() }
            guard pieces.count <= 3 else { throw ArrayError("bad slice '\(part)' in selection '\(text)' (start:stop:step expected)") }
            func bound(_ s: Substring) throws -> Bound? {
                if s.isEmpty { return nil }
                if let i = Int(s) { return .int(i) }
                if let d = Double(s), d.isFinite { return .float(d) }
                throw ArrayError("bad index '\(s)' in selection '\(text)' (an integer, a number or nothing expected)")
            }
            if pieces.count == 1 {
                guard let b = try bound(pieces[0]) else { throw ArrayError("empty index in selection '\(text)'") }
                items.append(.index(b))
                continue
            }
            var step: Int? = nil
            if pieces.count == 3, !pieces[2].isEmpty {
                guard let s = Int(pieces[2]) else {
                    throw ArrayError("bad step '\(pieces[2])' in selection '\(text)' (an integer expected)")
                }
                guard s != 0 else { throw ArrayError("slice step cannot be zero in selection '\(text)'") }
                step = s
            }
            items.append(.range(try bound(pieces[0]), try bound(pieces[1]), step))
        }
        self.items = items
    }

    /// Whether any bound is a float (to be resolved by axis value, on NXdata only).
    public var hasFloatBounds: Bool {
        items.contains { item in
            switch item {
            case .index(.float): return true
            case .range(let a, let b, _):
                if case .float = a { return true }
                if case .float = b { return true }
                return false
            default: return false
            }
        }
    }

    /// What one axis of the source contributes: `count` positions from `start` by `step`;
    /// `keepsAxis` is false for an integer index (h5py's per-dimension scalar flag).
    public struct Axis: Equatable, Sendable {
        public var start: Int
        public var count: Int
        public var step: Int
        public var keepsAxis: Bool
    }

    /// Resolves against a shape with NumPy's rules (negative indices count from the end,
    /// ranges are clipped, an index out of range is an error). Float bounds are refused:
    /// arrays select by position.
    public func resolve(shape: [Int]) throws -> [Axis] {
        let explicit = items.filter { $0 != .ellipsis }.count
        guard explicit <= shape.count else {
            throw ArrayError("too many indices: \(explicit) for shape \(NDArray.describe(shape))")
        }
        var expanded: [Item] = []
        for item in items {
            if item == .ellipsis {
                expanded += Array(repeating: .range(nil, nil, nil), count: shape.count - explicit)
            } else {
                expanded.append(item)
            }
        }
        while expanded.count < shape.count { expanded.append(.range(nil, nil, nil)) }

        var axes: [Axis] = []
        for (axis, item) in expanded.enumerated() {
            let n = shape[axis]
            switch item {
            case .index(let b):
                var i = try Selection.integer(b, axis: axis)
                if i < 0 { i += n }
                guard i >= 0, i < n else {
                    throw ArrayError("index \(try Selection.integer(b, axis: axis)) is out of bounds for axis \(axis) with size \(n)")
                }
                axes.append(Axis(start: i, count: 1, step: 1, keepsAxis: false))
            case .range(let a, let b, let s):
                let step = s ?? 1
                let lo = try a.map { try Selection.integer($0, axis: axis) }
                let hi = try b.map { try Selection.integer($0, axis: axis) }
                let (start, count) = Selection.clip(start: lo, stop: hi, step: step, size: n)
                axes.append(Axis(start: start, count: count, step: step, keepsAxis: true))
            case .ellipsis:
                break
            }
        }
        return axes
    }

    static func integer(_ b: Bound, axis: Int) throws -> Int {
        switch b {
        case .int(let i): return i
        case .float(let d):
            throw ArrayError("float index \(d) on axis \(axis): arrays are indexed by position (integers); select by axis value on an NXdata group")
        }
    }

    /// Python's slice.indices + length.
    static func clip(start: Int?, stop: Int?, step: Int, size n: Int) -> (start: Int, count: Int) {
        if step > 0 {
            var lo = start ?? 0, hi = stop ?? n
            if lo < 0 { lo = max(lo + n, 0) } else { lo = min(lo, n) }
            if hi < 0 { hi = max(hi + n, 0) } else { hi = min(hi, n) }
            let count = hi > lo ? (hi - lo + step - 1) / step : 0
            return (lo, count)
        } else {
            var lo = start ?? (n - 1), hi = stop ?? -n - 1
            if lo < 0 { lo = max(lo + n, -1) } else { lo = min(lo, n - 1) }
            if hi < 0 { hi = max(hi + n, -1) } else { hi = min(hi, n - 1) }
            let count = lo > hi ? (lo - hi - step - 1) / (-step) : 0
            return (lo, count)
        }
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}

extension NDArray {
    /// The view a selection makes (shares storage); integer indices drop their axis.
    public func view(_ selection: Selection) throws -> NDArray {
        let axes = try selection.resolve(shape: shape)
        var newShape: [Int] = [], newStrides: [Int] = []
        var newOffset = offset
        for (axis, a) in axes.enumerated() {
            newOffset += a.start * strides[axis]
            if a.keepsAxis {
                newShape.append(a.count)
                newStrides.append(a.count > 0 ? strides[axis] * a.step : strides[axis])
            }
        }
        return NDArray(dtype: dtype, shape: newShape, strides: newStrides, offset: newOffset, storage: storage)
    }

    public func view(_ text: String) throws -> NDArray { try view(Selection(parsing: text)) }
}
