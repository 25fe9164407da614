#if canImport(Glibc)
import Glibc
#endif
import NDArray

/// Text forms of the tree, as nexusformat prints them (children in natural order,
/// attributes by name, small values shown, big fields as `int32(200x512x512)`).
extension NXNode {
    /// The full tree, attributes and values included (nexusformat's .tree).
    public func tree() throws -> String {
        var out = ""
        try render(into: &out, name: path == "/" ? "root" : name, indent: 0, attributes: true, viaLink: link)
        if out.hasSuffix("\n") { out.removeLast() }
        return out
    }

    /// nexusformat's short_tree: this object with its attributes, then one line per child.
    public func shortTree() throws -> String {
        var out = ""
        try render(into: &out, name: path == "/" ? "root" : name, indent: 0, attributes: true, viaLink: link, recursive: false)
        if let g = self as? NXGroup {
            for e in try g.entries() {
                switch e.kind {
                case .missing:
                    try? render(missing: e, into: &out, pad: "  ")
                default:
                    guard let c = try g.child(e.name) else { continue }
                    try c.render(into: &out, name: e.name, indent: 2, attributes: false, viaLink: e.link, recursive: false)
                }
            }
        }
        if out.hasSuffix("\n") { out.removeLast() }
        return out
    }

    /// One line: "entry:NXentry", "counts = int32(3x4)", "x -> /entry/sample/x".
    public func headline() throws -> String {
        var out = ""
        try render(into: &out, name: path == "/" ? "root" : name, indent: 0, attributes: false, viaLink: link, recursive: false)
        return out.split(separator: "\n").first.map(String.init) ?? ""
    }

    private func render(into out: inout String, name: String, indent: Int, attributes: Bool,
                        viaLink: NXLinkKind?, recursive: Bool = true) throws {
        let pad = String(repeating: " ", count: indent)
        switch viaLink {
        case .soft(let t)?:
            out += "\(pad)\(name) -> \(t)\n"
            return
        case .external(let f, let t)?:
            out += "\(pad)\(name) -> \(f)['\(t)']\n"
            return
        default: break
        }
        let attrs = attributes ? try self.attributes() : []
        let target: String? = attributes
            ? attrs.first { $0.name == "target" }.flatMap { if case .strings(let s, _) = $0.value { return s.first }; return nil }
            : stringAttribute("target")
        if path != "/", let target, target != path {
            out += "\(pad)\(name) -> \(target)\n"
            return
        }
        if let g = self as? NXGroup {
            out += "\(pad)\(name):\(g.nxclass)\n"
        } else if let f = self as? NXField {
            out += "\(pad)\(name) = \(try f.summary())\n"
        }
        if attributes {
            for (n, v) in attrs where !(self is NXGroup && n == "NX_class") {
                out += "\(pad)  @\(n) = \(NXText.attribute(v))\n"
            }
        }
        guard recursive, let g = self as? NXGroup else { return }
        for e in try g.entries() {
            switch e.kind {
            case .missing:
                render(missing: e, into: &out, pad: pad + "  ")
            default:
                guard let c = try g.child(e.name) else { continue }
                try c.render(into: &out, name: e.name, indent: indent + 2, attributes: attributes, viaLink: e.link)
            }
        }
    }

    /// A child that leads nowhere: the link and its target.
    private func render(missing e: NXEntry, into out: inout String, pad: String) {
        switch e.link {
        case .soft(let t): out += "\(pad)\(e.name) -> \(t)\n"
        case .external(let f, let t): out += "\(pad)\(e.name) -> \(f)['\(t)']\n"
        case .hard: out += "\(pad)\(e.name) (unreadable)\n"
        }
    }
}

extension NXField {
    /// "int32(200x512x512)" for big or multi-dimensional fields, else the value.
    public func summary() throws -> String {
        let shape = try self.shape
        let type = try elementType
        let dims = shape.isEmpty ? "" : shape.map(String.init).joined(separator: "x")
        let length = shape.first ?? 1
        guard let v = try? smallValue() else { return "\(type.name)(\(dims))" }
        switch v {
        case .strings(let s, _):
            if s.count == 1 { return NXText.quoted(s[0], limit: 60) }
            if length <= 3 && shape.count == 1 { return "[" + s.map { NXText.quoted($0, limit: 60) }.joined(separator: " ") + "]" }
        case .array(let a):
            if shape.count <= 1 && length <= 3 { return NXText.plain(a) }
        case .records:
            break
        }
        return "\(type.name)(\(dims))"
    }
}

public enum NXText {
    static func naturalLess(_ a: String, _ b: String) -> Bool { NaturalKey(a) < NaturalKey(b) }

    /// A name cut into runs of digits (compared as numbers) and other text, so that
    /// "frame_10" sorts after "frame_9"; made once per name when sorting a group.
    struct NaturalKey: Comparable {
        let chunks: [(isNumber: Bool, text: Substring, value: Double)]

        init(_ s: String) {
            var out: [(Bool, Substring, Double)] = []
            var i = s.startIndex
            while i < s.endIndex {
                let digit = s[i].isASCII && s[i].isNumber
                var j = i
                while j < s.endIndex, (s[j].isASCII && s[j].isNumber) == digit { j = s.index(after: j) }
                let part = s[i..<j]
                out.append((digit, part, digit ? Double(part) ?? 0 : 0))
                i = j
            }
            chunks = out
        }

        static func < (a: NaturalKey, b: NaturalKey) -> Bool {
            for (x, y) in zip(a.chunks, b.chunks) {
                if x.isNumber && y.isNumber {
                    if x.value != y.value { return x.value < y.value }
                } else if x.text != y.text {
                    if x.isNumber != y.isNumber { return x.isNumber }
                    return x.text < y.text
                }
            }
            return a.chunks.count < b.chunks.count
        }

        static func == (a: NaturalKey, b: NaturalKey) -> Bool { !(a < b) && !(b < a) }
    }

    /// 'text', first line only, cut at `limit` characters.
    static func quoted(_ s: String, limit: Int) -> String {
        var t = s
        if let nl = t.firstIndex(of: "\n") { t = String(t[..<nl]) + "..." }
        if t.count > limit { t = String(t.prefix(limit - 4)) + "..." }
        return "'\(t)'"
    }

    /// An attribute value: strings quoted, lists as ['a', 'b'], numbers as NumPy's str.
    public static func attribute(_ v: NXValue) -> String {
        var text: String
        switch v {
        case .strings(let s, let shape):
            text = shape.isEmpty && s.count == 1 ? "'\(s[0])'" : "[" + s.map { "'\($0)'" }.joined(separator: ", ") + "]"
        case .array(let a):
            text = plain(a)
        case .records(let r, _):
            text = "<\(r.count) records>"
        }
        if let nl = text.firstIndex(of: "\n") { text = String(text[..<nl]) + "..." }
        if text.count > 50 { text = String(text.prefix(46)) + "..." }
        return text
    }

    /// A number or a short array as NumPy's str ("3.25", "[ 1 10]", "[ 0. 11. 11.]", "True"):
    /// elements padded to one width, floats aligned on the point, exponents when NumPy uses them.
    public static func plain(_ a: NDArray) -> String {
        let values = (try? a.copy())?.doubles() ?? []
        if a.ndim == 0 || (a.ndim == 1 && a.count == 1) {
            guard let x = values.first else { return "" }
            if a.dtype == .bool { return x != 0 ? "True" : "False" }
            if a.dtype.isInteger { return (try? a.integerText(at: Array(repeating: 0, count: a.ndim))) ?? "" }
            return number(x)
        }
        if a.count > 6 { return "\(a.dtype.rawValue)(\(a.shape.map(String.init).joined(separator: "x")))" }
        let texts: [String]
        if a.dtype == .bool {
            texts = values.map { $0 != 0 ? "True" : "False" }
        } else if a.dtype.isInteger {
            let flat = (try? a.copy().reshapedView([a.count])) ?? a
            texts = (0..<a.count).map { (try? flat.integerText(at: [$0])) ?? "" }
        } else {
            return "[" + floatTexts(values, float32: a.dtype == .float32).joined(separator: " ") + "]"
        }
        let width = texts.map(\.count).max() ?? 0
        return "[" + texts.map { pad($0, width) }.joined(separator: " ") + "]"
    }

    private static func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - s.count))
        return right ? s + fill : fill + s
    }

    /// NumPy's float printing for a few values as nexusformat sets it (floatmode "maxprec",
    /// precision 6): each value with its shortest round-trip digits, at most 6 decimals, points aligned;
    /// scientific for all when the largest is >= 1e8, the smallest non-zero < 1e-4, or their
    /// ratio > 1000.
    static func floatTexts(_ values: [Double], float32: Bool) -> [String] {
        let finite = values.filter(\.isFinite)
        let magnitudes = finite.map(abs).filter { $0 != 0 }
        let big = magnitudes.max() ?? 0, small = magnitudes.min() ?? 0
        let scientific = !magnitudes.isEmpty && (big >= 1e8 || small < 1e-4 || big / small > 1000)
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
            return String(nulTerminated: buf)
        }
        var texts: [String?]
        if scientific {
            let precision = min(6, finite.map { digits($0).digits.count - 1 }.max() ?? 0)
            var parts = values.map { x -> (String, String)? in
                guard x.isFinite else { return nil }
                let t = c("%#.\(precision)e", x).split(separator: "e")
                return (String(t[0]), String(t[1]))
            }
            let expWidth = parts.compactMap { $0.map { $0.1.count - 1 } }.max() ?? 2
            for i in parts.indices {
                guard let (m, e) = parts[i] else { continue }
                let sign = e.first!, body = e.dropFirst()
                parts[i] = (m, String(sign) + String(repeating: "0", count: max(0, expWidth - body.count)) + body)
            }
            texts = parts.map { $0.map { "\($0.0)e\($0.1)" } }
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
                if fraction.count > 6 {
                    var t = c("%.6f", abs(x))
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
        let width = max(texts.compactMap { $0?.count }.max() ?? 0, values.filter { !$0.isFinite }.map { number($0).count }.max() ?? 0)
        return zip(values, texts).map { x, t in pad(t ?? number(x), width) }
    }

    /// Shortest text that reads back as x (Python's repr).
    public static func number(_ x: Double) -> String {
        if x.isNaN { return "nan" }
        if x.isInfinite { return x > 0 ? "inf" : "-inf" }
        return "\(x)"
    }
}
