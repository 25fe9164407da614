import Foundation

/// The kinds of scan events (docs/macros.md lists each one's fields).
public enum EventKind: String, CaseIterable, Sendable, Codable {
    case runStart = "run.start"
    case streamOpen = "stream.open"
    case framesReady = "frames.ready"
    case point = "point"
    case fileClosed = "file.closed"
    case runStop = "run.stop"

    /// A kind from its name, with an error naming the valid ones.
    public init(parsing name: String) throws {
        guard let k = EventKind(rawValue: name) else {
            throw EventError("unknown event kind '\(name)' (expected one of \(EventKind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self = k
    }
}

/// A JSON-able value: the payload of an event and the values a macro sees.
public enum EventValue: Sendable, Equatable, Codable, CustomStringConvertible {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([EventValue])
    case object([String: EventValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([EventValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: EventValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        // JSON has no NaN or infinity: such readings travel as null
        case .double(let d): if d.isFinite { try c.encode(d) } else { try c.encodeNil() }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// A command-line or form value: integers, numbers, true/false and null are typed,
    /// `[...]`/`{...}` parsed as JSON, the rest kept as text.
    public init(parsingText text: String) {
        if let i = Int(text) { self = .int(i); return }
        if let d = Double(text), d.isFinite { self = .double(d); return }
        switch text {
        case "true": self = .bool(true); return
        case "false": self = .bool(false); return
        case "null": self = .null; return
        default: break
        }
        if let first = text.first, first == "[" || first == "{",
           let v = try? JSONDecoder().decode(EventValue.self, from: Data(text.utf8)) {
            self = v; return
        }
        self = .string(text)
    }

    public subscript(key: String) -> EventValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var intValue: Int? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d == d.rounded(): return Int(exactly: d)
        default: return nil
        }
    }

    public var description: String { jsonText }

    /// Compact JSON with sorted keys (stable: payloads compare equal as text). Written by
    /// hand: Foundation's JSONEncoder took most of an append's time.
    public var jsonText: String {
        var out = ""
        EventValue.write(self, to: &out)
        return out
    }

    static func write(_ v: EventValue, to out: inout String) {
        switch v {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += d.isFinite ? "\(d)" : "null"   // JSON has no NaN or infinity
        case .string(let s): writeString(s, to: &out)
        case .array(let items):
            out += "["
            for (k, item) in items.enumerated() {
                if k > 0 { out += "," }
                write(item, to: &out)
            }
            out += "]"
        case .object(let members): writeObject(members, to: &out)
        }
    }

    static func writeObject(_ members: [String: EventValue], to out: inout String) {
        out += "{"
        for (k, key) in members.keys.sorted().enumerated() {
            if k > 0 { out += "," }
            writeString(key, to: &out)
            out += ":"
            write(members[key]!, to: &out)
        }
        out += "}"
    }

    static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }
}

extension JSONEncoder {
    /// Stable output (sorted keys): payloads compare and hash the same every time.
    static let sorted: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()
}

/// An event to append: its sequence number is given by the journal.
public struct NewEvent: Sendable, Equatable {
    public var kind: EventKind
    /// The run's unique id: every event of one scan carries it.
    public var run: String
    /// Kind-specific fields (docs/macros.md).
    public var payload: [String: EventValue]
    /// Idempotency key: appending an event whose key is already journaled does nothing
    /// (a source that retries after a crash cannot announce twice). nil: always appended.
    public var key: String?
    /// Who sent it (stack, trigger, http:user, replay).
    public var source: String
    /// Seconds since 1970 when the source saw it.
    public var time: Double

    public init(kind: EventKind, run: String, payload: [String: EventValue] = [:], key: String? = nil,
                source: String, time: Double = Date().timeIntervalSince1970) {
        self.kind = kind
        self.run = run
        self.payload = payload
        self.key = key
        self.source = source
        self.time = time
    }
}

/// A journaled event.
public struct Event: Sendable, Equatable {
    /// Global sequence number: gapless order of the journal (1, 2, ...).
    public var seq: Int64
    public var kind: EventKind
    public var run: String
    public var payload: [String: EventValue]
    public var key: String?
    public var source: String
    public var time: Double

    public init(seq: Int64, kind: EventKind, run: String, payload: [String: EventValue], key: String?, source: String, time: Double) {
        self.seq = seq
        self.kind = kind
        self.run = run
        self.payload = payload
        self.key = key
        self.source = source
        self.time = time
    }

    /// The key a handler uses to stay idempotent: the run and, for frames, the range.
    public var handlerKey: String {
        if kind == .framesReady, let lo = payload["first"]?.intValue, let hi = payload["stop"]?.intValue {
            let stream = payload["stream"]?.stringValue ?? "detector"
            return "\(run)/\(stream)/\(lo)-\(hi)"
        }
        return "\(run)/\(kind.rawValue)/\(seq)"
    }
}

public struct EventError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A new run uid: time-ordered and unique (time, process, counter, randomness).
public func makeRunUID() -> String {
    var tv = timespec()
    clock_gettime(CLOCK_REALTIME, &tv)
    let r = UInt32.random(in: 0...UInt32.max)
    return String(format: "%08x-%04x-%08x", UInt32(truncatingIfNeeded: tv.tv_sec), UInt32(truncatingIfNeeded: getpid()) & 0xffff, r)
}
