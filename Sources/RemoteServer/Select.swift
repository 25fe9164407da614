import NeXus

/// A malformed or out-of-range selection: the client gets 400 with this message.
public struct SelectionError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The `select` query parameter of `GET /datasets/{id}/value`, HSDS's syntax:
/// `[a:b:s, c:d, i, [i,j,k]]`, one item per axis: a slice (start, stop, step > 0, each
/// optional, 0-based, stop exclusive), an index, or an increasing list of indices.
public struct ValueSelection: Equatable, Sendable {
    /// Per axis, runs in increasing order (see `NXField.readRaw`).
    public let runs: [[NXRun]]
    /// Elements per axis.
    public var shape: [Int] { runs.map { $0.reduce(0) { $0 + $1.count } } }
    public var count: Int { shape.reduce(1, *) }

    /// Hyperslab combinations above this are refused (each costs an HDF5 call).
    public static let maxCombinations = 100_000

    /// Everything of an extent.
    public static func all(_ dims: [Int]) -> ValueSelection {
        ValueSelection(runs: dims.map { [NXRun(start: 0, step: 1, count: $0)] })
    }

    init(runs: [[NXRun]]) { self.runs = runs }

    /// Parses `text` against the dataset's extent `dims`.
    public static func parse(_ text: String, dims: [Int]) throws -> ValueSelection {
        var s = Substring(text.filter { !$0.isWhitespace })
        guard s.hasPrefix("["), s.hasSuffix("]"), s.count >= 2 else {
            throw SelectionError("select '\(text)': '[' ... ']' expected, one item per axis (start:stop:step, an index or [i,j,...])")
        }
        s = s.dropFirst().dropLast()
        let items = try splitTopLevel(s, text)
        guard items.count == dims.count else {
            throw SelectionError("select '\(text)' has \(items.count) item\(items.count == 1 ? "" : "s") for a dataset of \(dims.count) ax\(dims.count == 1 ? "is" : "es") (shape \(dims))")
        }
        var runs: [[NXRun]] = []
        var combinations = 1
        for (axis, item) in items.enumerated() {
            let r = try parseItem(item, extent: dims[axis], axis: axis, text)
            combinations = combinations.multipliedReportingOverflow(by: max(1, r.count)).partialValue
            guard combinations <= maxCombinations else {
                throw SelectionError("select '\(text)' makes more than \(maxCombinations) hyperslabs; split the request")
            }
            runs.append(r)
        }
        return ValueSelection(runs: runs)
    }

    /// Splits on commas outside brackets.
    static func splitTopLevel(_ s: Substring, _ text: String) throws -> [Substring] {
        if s.isEmpty { return [] }
        var items: [Substring] = []
        var depth = 0
        var start = s.startIndex
        for i in s.indices {
            switch s[i] {
            case "[": depth += 1
            case "]":
                depth -= 1
                if depth < 0 { throw SelectionError("select '\(text)': unbalanced ']'") }
            case "," where depth == 0:
                items.append(s[start..<i])
                start = s.index(after: i)
            default: break
            }
        }
        guard depth == 0 else { throw SelectionError("select '\(text)': unbalanced '['") }
        items.append(s[start...])
        return items
    }

    static func integer(_ s: Substring, _ what: String, _ text: String) throws -> Int {
        guard let v = Int(s) else { throw SelectionError("select '\(text)': \(what) '\(s)' is not an integer") }
        return v
    }

    static func parseItem(_ item: Substring, extent: Int, axis: Int, _ text: String) throws -> [NXRun] {
        if item.isEmpty { throw SelectionError("select '\(text)': axis \(axis) is empty (':' selects all)") }
        if item.hasPrefix("[") {
            guard item.hasSuffix("]") else { throw SelectionError("select '\(text)': axis \(axis): bad index list") }
            let body = item.dropFirst().dropLast()
            guard !body.isEmpty else { throw SelectionError("select '\(text)': axis \(axis): empty index list") }
            var runs: [NXRun] = []
            var last = -1
            for part in body.split(separator: ",", omittingEmptySubsequences: false) {
                let v = try integer(part, "index", text)
                guard v >= 0, v < extent else {
                    throw SelectionError("select '\(text)': index \(v) out of range 0..<\(extent) on axis \(axis)")
                }
                guard v > last else { throw SelectionError("select '\(text)': index lists must increase (axis \(axis))") }
                if let r = runs.last, r.start + r.count == v, r.step == 1 {
                    runs[runs.count - 1] = NXRun(start: r.start, step: 1, count: r.count + 1)
                } else {
                    runs.append(NXRun(start: v, step: 1, count: 1))
                }
                last = v
            }
            return runs
        }
        let parts = item.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count == 1 {
            let v = try integer(parts[0], "index", text)
            guard v >= 0, v < extent else {
                throw SelectionError("select '\(text)': index \(v) out of range 0..<\(extent) on axis \(axis)")
            }
            return [NXRun(start: v, step: 1, count: 1)]
        }
        guard parts.count <= 3 else { throw SelectionError("select '\(text)': axis \(axis): start:stop:step expected, got '\(item)'") }
        let start = parts[0].isEmpty ? 0 : try integer(parts[0], "start", text)
        let stop = parts[1].isEmpty ? extent : try integer(parts[1], "stop", text)
        let step = parts.count < 3 || parts[2].isEmpty ? 1 : try integer(parts[2], "step", text)
        guard step > 0 else { throw SelectionError("select '\(text)': step \(step) on axis \(axis) must be positive") }
        guard start >= 0, start <= extent, stop >= start, stop <= extent else {
            throw SelectionError("select '\(text)': \(start):\(stop) is outside 0:\(extent) on axis \(axis) (start <= stop expected)")
        }
        return [NXRun(start: start, step: step, count: (stop - start + step - 1) / step)]
    }

    /// Point selections (`POST /datasets/{id}/value`, binary body): `n` points of
    /// `rank` little-endian uint64 coordinates each, checked against the extent.
    public static func points(_ body: [UInt8], dims: [Int]) throws -> [[Int]] {
        let rank = max(1, dims.count)
        guard !dims.isEmpty else { throw SelectionError("a scalar dataset takes no point selection") }
        guard body.count % (8 * rank) == 0, !body.isEmpty else {
            throw SelectionError("a point selection is n x \(rank) little-endian uint64 coordinates; got \(body.count) bytes")
        }
        var out: [[Int]] = []
        out.reserveCapacity(body.count / (8 * rank))
        var k = 0
        while k < body.count {
            var point: [Int] = []
            for axis in 0..<rank {
                var u: UInt64 = 0
                for b in 0..<8 { u |= UInt64(body[k + b]) << (8 * UInt64(b)) }
                k += 8
                guard u < UInt64(dims[axis]) else {
                    throw SelectionError("point coordinate \(u) out of range 0..<\(dims[axis]) on axis \(axis)")
                }
                point.append(Int(u))
            }
            out.append(point)
        }
        return out
    }
}
