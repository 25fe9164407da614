/// NumPy-style text of an array: `array([[0, 1], [2, 3]], dtype=int32)`, summarised
/// with "..." beyond `threshold` elements (NumPy's default 1000, 3 items at each edge).
extension NDArray {
    /// The exact decimal text of an integer element (uint64 above 2^63 included).
    public func integerText(at index: [Int]) throws -> String {
        let v = try integer(at: index)
        return dtype == .uint64 ? String(UInt64(bitPattern: v)) : String(v)
    }

    public func formatted(threshold: Int = 1000, edgeItems: Int = 3) -> String {
        let summarise = count > threshold
        let values = self
        func element(_ index: [Int]) -> String {
            let v = (try? values.value(at: index)) ?? .nan
            switch dtype {
            case .bool: return v != 0 ? "True" : "False"
            case .float32, .float64:
                if v.isNaN { return "nan" }
                if v.isInfinite { return v > 0 ? "inf" : "-inf" }
                if v == v.rounded(), abs(v) < 1e16 { return "\(Int64(v))." }
                return "\(v)"
            default:
                return (try? values.integerText(at: index)) ?? "0"
            }
        }
        func render(_ prefix: [Int], indent: String) -> String {
            let axis = prefix.count
            if axis == ndim { return element(prefix) }
            let n = shape[axis]
            var items: [String] = []
            let cut = summarise && n > 2 * edgeItems
            for i in 0..<n {
                if cut && i == edgeItems { items.append("...") }
                if cut && i >= edgeItems && i < n - edgeItems { continue }
                items.append(render(prefix + [i], indent: indent + " "))
            }
            let sep = axis == ndim - 1 ? ", " : ",\n" + String(repeating: "\n", count: max(0, ndim - axis - 2)) + indent + " "
            return "[" + items.joined(separator: sep) + "]"
        }
        let body = ndim == 0 ? element([]) : render([], indent: "      ")
        let showType = !(dtype == .float64 || dtype == .int64 || dtype == .bool) || count == 0
        var text = "array(" + body
        if count == 0 { text = "array([]" }
        if showType { text += ", dtype=\(dtype.rawValue)" }
        if count == 0 && ndim > 1 { text += ", shape=\(NDArray.describe(shape))" }
        return text + ")"
    }
}
