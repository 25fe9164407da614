#if canImport(Glibc)
import Glibc
#endif

/// NumPy-style text of an array, as NumPy's repr lays it out: `array([[ 0, 10],
/// [20, 30]], dtype=int32)` with every element padded to one width, floats aligned on
/// the point with up to 8 decimals (scientific when NumPy would use it), rows wrapped at
/// 75 columns, and "..." beyond `threshold` elements (3 items at each edge).
extension NDArray {
    /// The exact decimal text of an integer element (uint64 above 2^63 included).
    public func integerText(at index: [Int]) throws -> String {
        let v = try integer(at: index)
        return dtype == .uint64 ? String(UInt64(bitPattern: v)) : String(v)
    }

    public func formatted(threshold: Int = 1000, edgeItems: Int = 3) -> String {
        let showType = !(dtype == .float64 || dtype == .int64 || dtype == .bool) || count == 0
        let typeText = showType ? ", dtype=\(dtype.rawValue)" : ""
        if count == 0 {
            return "array([]" + (ndim > 1 ? ", shape=\(NDArray.describe(shape))" : "") + typeText + ")"
        }
        let summarise = count > threshold
        // the elements shown, in the order the layout visits them
        func shown(_ axis: Int) -> [Int] {
            let n = shape[axis]
            return summarise && n > 2 * edgeItems ? Array(0..<edgeItems) + Array((n - edgeItems)..<n) : Array(0..<n)
        }
        var indices: [[Int]] = [[]]
        for axis in 0..<ndim { indices = indices.flatMap { prefix in shown(axis).map { prefix + [$0] } } }
        var words: [String]
        switch dtype {
        case .bool: words = indices.map { ((try? value(at: $0)) ?? 0) != 0 ? "True" : "False" }
        case .float32, .float64:
            words = NDArray.floatTexts(indices.map { (try? value(at: $0)) ?? .nan }, float32: dtype == .float32, precision: 8)
        default: words = indices.map { (try? integerText(at: $0)) ?? "0" }
        }
        let width = words.map(\.count).max() ?? 0
        words = words.map { String(repeating: " ", count: width - $0.count) + $0 }
        if ndim == 0 { return "array(\(words[0])\(typeText))" }

        // NumPy's _formatArray: a hanging indent per nesting level, rows wrapped so that a
        // line stays within the width (75 less the closing parenthesis)
        var next = 0
        func recurse(_ axis: Int, _ hanging: String, _ width: Int) -> String {
            if axis == ndim { defer { next += 1 }; return words[next] }
            let n = shape[axis]
            let cut = summarise && n > 2 * edgeItems
            let items = cut ? 2 * edgeItems : n
            var s = ""
            if axis == ndim - 1 {
                var line = hanging
                func extend(_ word: String, _ limit: Int) {
                    if line.count + word.count > limit && line.count > hanging.count {
                        s += String(line.reversed().drop(while: { $0 == " " }).reversed()) + "\n"
                        line = hanging
                    }
                    line += word
                }
                for i in 0..<items {
                    if cut && i == edgeItems { extend("...", width - 1); line += ", " }
                    let word = recurse(axis + 1, hanging + " ", width - 1)
                    if i == items - 1 { extend(word, width) } else { extend(word, width - 1); line += ", " }
                }
                s += line
            } else {
                let separator = "," + String(repeating: "\n", count: ndim - axis - 1)
                for i in 0..<items {
                    if cut && i == edgeItems { s += hanging + "..." + separator }
                    let nested = recurse(axis + 1, hanging + " ", width - 1)
                    s += hanging + nested + (i == items - 1 ? "" : separator)
                }
            }
            return "[" + s.dropFirst(hanging.count) + "]"
        }
        var text = "array(" + recurse(0, "       ", 74)
        let lastLine = text.split(separator: "\n", omittingEmptySubsequences: false).last ?? ""
        if !typeText.isEmpty && lastLine.count + typeText.count + 1 > 75 {
            text += ",\n      " + typeText.dropFirst(2)
        } else {
            text += typeText
        }
        return text + ")"
    }

    /// NumPy's float printing of the values one array shows (floatmode "maxprec"): each
    /// value with its shortest round-trip digits, at most `precision` decimals, points
    /// aligned; scientific for all when the largest is >= 1e8, the smallest non-zero
    /// < 1e-4, or their ratio > 1000. Every text has the same width.
    public static func floatTexts(_ values: [Double], float32: Bool, precision: Int) -> [String] {
        let finite = values.filter(\.isFinite)
        let magnitudes = finite.map(abs).filter { $0 != 0 }
        let big = magnitudes.max() ?? 0, small = magnitudes.min() ?? 0
        let scientific = !magnitudes.isEmpty && (big >= 1e8 || small < 1e-4 || big / small > 1000)
        func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
            let fill = String(repeating: " ", count: max(0, width - s.count))
            return right ? s + fill : fill + s
        }
        // shortest digits: value = 0.d1d2...dn x 10^(exponent + 1)
        func digits(_ x: Double) -> (digits: [Character], exponent: Int) {
            var text = float32 ? Float(x).description : x.description
            if text.hasPrefix("-") { text.removeFirst() }
            let parts = text.split(separator: "e")
            var exponent = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            let mantissa = parts[0]
            let point = mantissa.firstIndex(of: ".").map { mantissa.distance(from: mantissa.startIndex, to: $0) } ?? mantissa.count
            var ds = Array(mantissa.filter { $0 != "." })
            exponent += point - 1
            while let f = ds.first, f == "0", ds.count > 1 { ds.removeFirst(); exponent -= 1 }
            while let l = ds.last, l == "0", ds.count > 1 { ds.removeLast() }
            if ds == ["0"] { exponent = 0 }
            return (ds, exponent)
        }
        func c(_ format: String, _ x: Double) -> String {
            var buf = [CChar](repeating: 0, count: 64)
            _ = withVaList([x]) { vsnprintf(&buf, buf.count, format, $0) }
            return String(cString: buf)
        }
        var texts: [String?]
        if scientific {
            let digitsNeeded = min(precision, finite.map { digits($0).digits.count - 1 }.max() ?? 0)
            var parts = values.map { x -> (String, String)? in
                guard x.isFinite else { return nil }
                let t = c("%#.\(digitsNeeded)e", x).split(separator: "e")
                return (String(t[0]), String(t[1]))
            }
            let expWidth = parts.compactMap { $0.map { $0.1.count - 1 } }.max() ?? 2
            for i in parts.indices {
                guard let (m, e) = parts[i] else { continue }
                let sign = e.first!, body = e.dropFirst()
                parts[i] = (m, String(sign) + String(repeating: "0", count: max(0, expWidth - body.count)) + body)
            }
            let mantissaWidth = parts.compactMap { $0?.0.count }.max() ?? 0
            texts = parts.map { $0.map { pad($0.0, mantissaWidth) + "e" + $0.1 } }
        } else {
            let split = values.map { x -> (String, String)? in
                guard x.isFinite else { return nil }
                if x == x.rounded(), abs(x) < 1e15 {  // the common case, without digit strings
                    return ((x.sign == .minus ? "-" : "") + String(Int64(abs(x))), "")
                }
                let (ds, e) = digits(x)
                var whole: String, fraction: String
                if e >= 0 {
                    whole = String(ds.prefix(e + 1)) + String(repeating: "0", count: max(0, e + 1 - ds.count))
                    fraction = String(ds.dropFirst(e + 1))
                } else {
                    whole = "0"
                    fraction = String(repeating: "0", count: -e - 1) + String(ds)
                }
                if ds == ["0"] { fraction = "" }
                if fraction.count > precision {
                    var t = c("%.\(precision)f", abs(x))
                    while t.hasSuffix("0") { t.removeLast() }
                    let p = t.split(separator: ".", omittingEmptySubsequences: false)
                    whole = String(p[0]); fraction = p.count > 1 ? String(p[1]) : ""
                }
                return ((x.sign == .minus ? "-" : "") + whole, fraction)
            }
            let left = split.compactMap { $0?.0.count }.max() ?? 0
            let right = split.compactMap { $0?.1.count }.max() ?? 0
            texts = split.map { $0.map { pad($0.0, left) + "." + pad($0.1, right, right: true) } }
        }
        func special(_ x: Double) -> String { x.isNaN ? "nan" : x > 0 ? "inf" : "-inf" }
        let width = max(texts.compactMap { $0?.count }.max() ?? 0, values.filter { !$0.isFinite }.map { special($0).count }.max() ?? 0)
        return zip(values, texts).map { x, t in pad(t ?? special(x), width) }
    }
}
