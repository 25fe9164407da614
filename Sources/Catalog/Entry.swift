/// A declared field's value: as harvested (text, or number with its units) and the
/// normalised form queries compare (SI number, seconds since 1970).
public enum FieldValue: Sendable, Equatable {
    case text(String)
    case number(Double, units: String?, si: Double)
    case integer(Int64)
    case time(String, seconds: Double)

    /// The value range queries and ordering compare.
    public var normalised: CatalogJSON {
        switch self {
        case .text(let s): return .string(s)
        case .number(_, _, let si): return .double(si)
        case .integer(let i): return .int(i)
        case .time(_, let t): return .double(t)
        }
    }

    /// The value as it was in the file.
    public var harvested: CatalogJSON {
        switch self {
        case .text(let s): return .string(s)
        case .number(let v, let u, _): return u.map { .object(["value": .double(v), "units": .string($0)]) } ?? .double(v)
        case .integer(let i): return .int(i)
        case .time(let s, _): return .string(s)
        }
    }

    /// The harvested value read back from its stored JSON.
    public static func from(harvested j: CatalogJSON, normalised n: CatalogJSON?, type: FieldType) -> FieldValue? {
        switch (type, j) {
        case (.text, .string(let s)): return .text(s)
        case (.integer, .int(let i)): return .integer(i)
        case (.integer, .double(let d)): return .integer(Int64(d))
        case (.time, .string(let s)): return .time(s, seconds: n?.doubleValue ?? 0)
        case (.number, .object(let o)):
            guard let v = o["value"]?.doubleValue else { return nil }
            return .number(v, units: o["units"]?.stringValue, si: n?.doubleValue ?? v)
        case (.number, _):
            guard let v = j.doubleValue else { return nil }
            return .number(v, units: nil, si: n?.doubleValue ?? v)
        default: return nil
        }
    }
}

/// One catalog entry: an NXentry of a file (or the file itself when it could not be read).
public struct CatalogEntry: Sendable, Equatable {
    /// The file's absolute path.
    public var path: String
    /// The NXentry's name; "" for a file that could not be read.
    public var entry: String
    /// Declared fields (path, entry, kind and status among them).
    public var fields: [String: FieldValue]
    /// Undeclared small values of the entry, by their path inside it.
    public var metadata: [String: String]
    /// Catalog id (0 until stored).
    public var id: Int64 = 0

    public init(path: String, entry: String, fields: [String: FieldValue] = [:], metadata: [String: String] = [:]) {
        self.path = path
        self.entry = entry
        self.fields = fields
        self.metadata = metadata
        self.fields["path"] = .text(path)
        self.fields["entry"] = .text(entry)
    }

    public subscript(_ name: String) -> FieldValue? {
        get { fields[name] }
        set { fields[name] = newValue }
    }

    public var kind: String { if case .text(let k)? = fields["kind"] { return k } else { return "raw" } }
    public var status: String { if case .text(let s)? = fields["status"] { return s } else { return "ok" } }

    /// What free text matches: every text field and the undeclared text values.
    public var freeText: String {
        var parts: [String] = []
        for (name, v) in fields.sorted(by: { $0.key < $1.key }) where name != "path" {
            if case .text(let s) = v { parts.append(s) }
        }
        parts.append(path.split(separator: "/").last.map(String.init) ?? path)
        for (_, v) in metadata.sorted(by: { $0.key < $1.key }) where v.count <= 512 { parts.append(v) }
        return parts.joined(separator: " ")
    }
}

/// Plain JSON for the catalog's stored columns (SQLite's json_extract and PostgreSQL's
/// JSONB read the same text).
public enum CatalogJSON: Sendable, Equatable {
    case null, bool(Bool), int(Int64), double(Double), string(String)
    case array([CatalogJSON]), object([String: CatalogJSON])

    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }

    public var text: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isFinite {
                if d == d.rounded(), abs(d) < 1e15 { out += String(Int64(d)) + ".0" } else { out += "\(d)" }
            } else { out += "null" }
        case .string(let s): CatalogJSON.quote(s, into: &out)
        case .array(let a):
            out += "["
            for (i, x) in a.enumerated() { if i > 0 { out += "," }; x.write(to: &out) }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, k) in o.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                CatalogJSON.quote(k, into: &out)
                out += ":"
                o[k]!.write(to: &out)
            }
            out += "}"
        }
    }

    static func quote(_ s: String, into out: inout String) {
        out += "\""
        // most values need no escape: one append instead of one per character
        if !s.utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) {
            out += s
            out += "\""
            return
        }
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{0}": continue  // PostgreSQL's text and JSONB refuse NUL; HDF5 pads strings with it
            case "\u{1}"..."\u{1f}":
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }

    /// Parses JSON text (the catalog reads back only what it wrote).
    public static func parse(_ text: String) throws -> CatalogJSON {
        var p = Parser(bytes: Array(text.utf8))
        let v = try p.value()
        p.skip()
        guard p.i == p.bytes.count else { throw CatalogError("catalog JSON: trailing text at \(p.i)") }
        return v
    }

    struct Parser {
        let bytes: [UInt8]
        var i = 0
        mutating func skip() { while i < bytes.count, [32, 9, 10, 13].contains(bytes[i]) { i += 1 } }
        mutating func value() throws -> CatalogJSON {
            skip()
            guard i < bytes.count else { throw CatalogError("catalog JSON: unexpected end") }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                var o: [String: CatalogJSON] = [:]
                skip()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                while true {
                    skip()
                    guard case .string(let k) = try value() else { throw CatalogError("catalog JSON: key expected at \(i)") }
                    skip()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw CatalogError("catalog JSON: ':' expected at \(i)") }
                    i += 1
                    o[k] = try value()
                    skip()
                    guard i < bytes.count else { throw CatalogError("catalog JSON: unexpected end") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                    throw CatalogError("catalog JSON: ',' or '}' expected at \(i)")
                }
            case UInt8(ascii: "["):
                i += 1
                var a: [CatalogJSON] = []
                skip()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                while true {
                    a.append(try value())
                    skip()
                    guard i < bytes.count else { throw CatalogError("catalog JSON: unexpected end") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                    throw CatalogError("catalog JSON: ',' or ']' expected at \(i)")
                }
            case UInt8(ascii: "\""):
                i += 1
                var out = [UInt8]()
                while i < bytes.count {
                    let c = bytes[i]
                    i += 1
                    if c == UInt8(ascii: "\"") { return .string(String(decoding: out, as: UTF8.self)) }
                    if c == UInt8(ascii: "\\"), i < bytes.count {
                        let e = bytes[i]
                        i += 1
                        switch e {
                        case UInt8(ascii: "n"): out.append(10)
                        case UInt8(ascii: "r"): out.append(13)
                        case UInt8(ascii: "t"): out.append(9)
                        case UInt8(ascii: "b"): out.append(8)
                        case UInt8(ascii: "f"): out.append(12)
                        case UInt8(ascii: "u"):
                            guard i + 4 <= bytes.count, var code = UInt32(String(decoding: bytes[i..<i + 4], as: UTF8.self), radix: 16) else {
                                throw CatalogError("catalog JSON: bad \\u escape")
                            }
                            i += 4
                            // a surrogate pair (PostgreSQL writes non-BMP characters so)
                            if (0xD800..<0xDC00).contains(code), i + 6 <= bytes.count, bytes[i] == UInt8(ascii: "\\"),
                               let low = UInt32(String(decoding: bytes[i + 2..<i + 6], as: UTF8.self), radix: 16) {
                                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                                i += 6
                            }
                            out += Array(String(Unicode.Scalar(code).map(Character.init) ?? "\u{FFFD}").utf8)
                        default: out.append(e)
                        }
                        continue
                    }
                    out.append(c)
                }
                throw CatalogError("catalog JSON: unterminated string")
            case UInt8(ascii: "t"): i += 4; return .bool(true)
            case UInt8(ascii: "f"): i += 5; return .bool(false)
            case UInt8(ascii: "n"): i += 4; return .null
            default:
                let start = i
                var isDouble = false
                while i < bytes.count, let c = Optional(bytes[i]), (c >= 48 && c <= 57) || c == 45 || c == 43 || c == 46 || c == 101 || c == 69 {
                    if c == 46 || c == 101 || c == 69 { isDouble = true }
                    i += 1
                }
                let s = String(decoding: bytes[start..<i], as: UTF8.self)
                if !isDouble, let n = Int64(s) { return .int(n) }
                guard let d = Double(s) else { throw CatalogError("catalog JSON: bad value at \(start)") }
                return .double(d)
            }
        }
    }
}

public struct CatalogError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
