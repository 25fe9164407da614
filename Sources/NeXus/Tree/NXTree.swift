#if canImport(Glibc)
import Glibc
#endif
import NDArray

/// Text forms of the tree, as nexusformat prints them (children in natural order,
/// attributes by name, small values shown, big fields as `int32(200x512x512)`). Written
/// once for local and remote nodes (NXReadable), so both print the same text.
extension NXReadableNode {
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
        if let g = readableGroup {
            for e in try g.entries() {
                switch e.kind {
                case .missing:
                    try? render(missing: e, into: &out, pad: "  ")
                default:
                    guard let c = try g.childNode(e.name) else { continue }
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
        let group = readableGroup
        if let g = group {
            out += "\(pad)\(name):\(g.nxclass)\n"
        } else if let f = readableField {
            out += "\(pad)\(name) = \(try f.summary())\n"
        }
        if attributes {
            for (n, v) in attrs where !(group != nil && n == "NX_class") {
                out += "\(pad)  @\(n) = \(NXText.attribute(v))\n"
            }
        }
        guard recursive, let g = group else { return }
        for e in try g.entries() {
            switch e.kind {
            case .missing:
                render(missing: e, into: &out, pad: pad + "  ")
            default:
                guard let c = try g.childNode(e.name) else { continue }
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

extension NXReadableField {
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

    /// Names in natural order ("frame_9" before "frame_10"), as groups list their children.
    public static func naturalSorted(_ names: [String]) -> [String] {
        names.map { (key: NaturalKey($0), name: $0) }.sorted { $0.key < $1.key }.map(\.name)
    }

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
            return "[" + NDArray.floatTexts(values, float32: a.dtype == .float32, precision: 6).joined(separator: " ") + "]"
        }
        let width = texts.map(\.count).max() ?? 0
        return "[" + texts.map { String(repeating: " ", count: width - $0.count) + $0 }.joined(separator: " ") + "]"
    }

    /// Shortest text that reads back as x (Python's repr).
    public static func number(_ x: Double) -> String {
        if x.isNaN { return "nan" }
        if x.isInfinite { return x > 0 ? "inf" : "-inf" }
        return "\(x)"
    }
}
