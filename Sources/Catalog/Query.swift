/// A malformed query or one the catalog cannot answer: the message names the position
/// (1-based, in characters) and what was expected.
public struct QueryError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    /// 1-based character position in the query text (0: not tied to a position).
    public let position: Int
    public init(_ message: String, at position: Int) {
        self.message = message
        self.position = position
    }
    public var description: String { position > 0 ? "at position \(position): \(message)" : message }
}

/// A bound of a range: the value's text (a number with optional units, or a time).
public struct QueryBound: Sendable, Equatable {
    public let text: String
    public let inclusive: Bool
    public let position: Int
    public init(_ text: String, inclusive: Bool, at position: Int) {
        self.text = text
        self.inclusive = inclusive
        self.position = position
    }
}

/// What a query asks, before the catalog's fields give it meaning (Query.parse makes
/// it from text, Lua tables and URL parameters build it directly). Tiled's query
/// objects, with OR and NOT, which its users had to emulate.
public indirect enum CatalogQuery: Sendable, Equatable {
    case all
    case and([CatalogQuery])
    case or([CatalogQuery])
    case not(CatalogQuery)
    /// field:value (text compared case-insensitively; numbers with units within 1e-9).
    case equals(field: String, value: String, position: Int)
    /// field:[lo TO hi], field:>lo, field:<=hi; nil bounds are open.
    case range(field: String, lower: QueryBound?, upper: QueryBound?, position: Int)
    /// field:* or exists:field.
    case exists(field: String, position: Int)
    /// Free text: every word, in this order (a phrase).
    case text(String, position: Int)

    /// Parses the query language:
    ///
    ///     sample:LaB6 AND temperature:[100 K TO 300 K] AND "rotation"
    ///     (sample:LaB6 OR sample:Si) NOT kind:derived
    ///     temperature:>=250K   start_time:[2026-12-01 TO *]   exists:wavelength   wavelength:*
    ///     meta.instrument/detector/sensor_material:Si
    ///
    /// Terms next to each other are ANDed; AND binds tighter than OR; NOT, AND, OR are
    /// upper case (lower case they are words to search for).
    public static func parse(_ text: String) throws -> CatalogQuery {
        var p = QueryParser(text)
        if p.atEnd { return .all }
        let q = try p.parseOr()
        if !p.atEnd {
            if p.peek == ")" { throw QueryError("unbalanced ')'", at: p.position) }
            throw QueryError("unexpected '\(p.peekWord())'", at: p.position)
        }
        return q
    }
}

struct QueryParser {
    let chars: [Character]
    var i = 0

    init(_ text: String) { chars = Array(text) }

    var position: Int { i + 1 }
    var atEnd: Bool { mutating get { skipSpaces(); return i >= chars.count } }
    var peek: Character? { i < chars.count ? chars[i] : nil }

    mutating func skipSpaces() { while i < chars.count, chars[i].isWhitespace { i += 1 } }

    static let stops: Set<Character> = ["(", ")", "\""]

    func peekWord() -> String {
        var j = i
        var out = ""
        while j < chars.count, !chars[j].isWhitespace, !(QueryParser.stops.contains(chars[j]) && j > i) { out.append(chars[j]); j += 1 }
        return out
    }

    mutating func keyword(_ k: String) -> Bool {
        skipSpaces()
        let w = peekWord()
        guard w == k else { return false }
        i += k.count
        return true
    }

    mutating func parseOr() throws -> CatalogQuery {
        var parts = [try parseAnd()]
        while keyword("OR") {
            if atEnd { throw QueryError("a term expected after OR", at: position) }
            parts.append(try parseAnd())
        }
        return parts.count == 1 ? parts[0] : .or(parts)
    }

    mutating func parseAnd() throws -> CatalogQuery {
        var parts = [try parseNot()]
        while true {
            skipSpaces()
            if i >= chars.count || peek == ")" || peekWord() == "OR" { break }
            if keyword("AND") {
                if atEnd { throw QueryError("a term expected after AND", at: position) }
            }
            parts.append(try parseNot())
        }
        return parts.count == 1 ? parts[0] : .and(parts)
    }

    mutating func parseNot() throws -> CatalogQuery {
        skipSpaces()
        if keyword("NOT") {
            if atEnd { throw QueryError("a term expected after NOT", at: position) }
            return .not(try parseNot())
        }
        return try parsePrimary()
    }

    mutating func parsePrimary() throws -> CatalogQuery {
        skipSpaces()
        let start = position
        guard let c = peek else { throw QueryError("a term expected", at: start) }
        if c == "(" {
            i += 1
            if atEnd { throw QueryError("a term expected after '('", at: position) }
            if peek == ")" { throw QueryError("empty parentheses", at: position) }
            let q = try parseOr()
            skipSpaces()
            guard peek == ")" else { throw QueryError("')' expected to close the '(' at position \(start)", at: position) }
            i += 1
            return q
        }
        if c == ")" { throw QueryError("unbalanced ')'", at: start) }
        if c == "\"" { return .text(try quoted(), position: start) }
        // field:value, or a bare word of free text
        var j = i
        while j < chars.count, chars[j].isLetter || chars[j].isNumber || chars[j] == "_" || chars[j] == "." || (chars[j] == "/" && j > i) { j += 1 }
        if j > i, j < chars.count, chars[j] == ":", chars[i].isLetter || chars[i] == "_" {
            let field = String(chars[i..<j])
            i = j + 1
            return try fieldTerm(field, at: start)
        }
        let w = word()
        if ["AND", "OR", "NOT"].contains(w) { throw QueryError("a term expected before \(w)", at: start) }
        return .text(w, position: start)
    }

    /// A bare word: up to a space, parenthesis or quote.
    mutating func word() -> String {
        var out = ""
        while i < chars.count, !chars[i].isWhitespace, !QueryParser.stops.contains(chars[i]) { out.append(chars[i]); i += 1 }
        return out
    }

    mutating func quoted() throws -> String {
        let start = position
        i += 1
        var out = ""
        while i < chars.count {
            let c = chars[i]
            i += 1
            if c == "\"" { return out }
            if c == "\\", i < chars.count { out.append(chars[i]); i += 1; continue }
            out.append(c)
        }
        throw QueryError("unterminated quoted string (opened here)", at: start)
    }

    /// A value: quoted, or a word; a number followed by a known unit takes the unit.
    mutating func value() throws -> String {
        skipSpaces()
        if peek == "\"" { return try quoted() }
        let v = word()
        if Double(v) != nil {
            let save = i
            skipSpaces()
            let next = peekWord()
            if !next.isEmpty, Units.definition(next) != nil, next != "AND", next != "OR", next != "NOT", !next.contains(":") {
                i += next.count
                return v + " " + next
            }
            i = save
        }
        return v
    }

    mutating func fieldTerm(_ field: String, at start: Int) throws -> CatalogQuery {
        if field == "exists" || field == "_exists_" {
            let f = word()
            if f.isEmpty { throw QueryError("a field name expected after exists:", at: position) }
            return .exists(field: f, position: start + field.count + 1)
        }
        guard let c = peek, !c.isWhitespace else { throw QueryError("a value expected after '\(field):'", at: position) }
        if c == "*" && (i + 1 >= chars.count || chars[i + 1].isWhitespace || chars[i + 1] == ")") {
            i += 1
            return .exists(field: field, position: start)
        }
        if c == "[" || c == "{" {
            let lowInclusive = c == "["
            i += 1
            let lowPos = position
            var low: [String] = []
            while true {
                skipSpaces()
                guard i < chars.count else { throw QueryError("'TO' expected in the range of '\(field)'", at: position) }
                if peekWord() == "TO" { i += 2; break }
                if chars[i] == "]" || chars[i] == "}" { throw QueryError("'TO' expected in the range of '\(field)'", at: position) }
                low.append(try rangeWord())
            }
            skipSpaces()
            let highPos = position
            var high: [String] = []
            var highInclusive = true
            while true {
                skipSpaces()
                guard i < chars.count else { throw QueryError("']' expected to close the range of '\(field)'", at: position) }
                if chars[i] == "]" || chars[i] == "}" { highInclusive = chars[i] == "]"; i += 1; break }
                high.append(try rangeWord())
            }
            func bound(_ words: [String], _ inclusive: Bool, _ at: Int, _ which: String) throws -> QueryBound? {
                if words.isEmpty { throw QueryError("the \(which) bound of '\(field)' is missing (use * for an open bound)", at: at) }
                let t = words.joined(separator: " ")
                return t == "*" ? nil : QueryBound(t, inclusive: inclusive, at: at)
            }
            return .range(field: field, lower: try bound(low, lowInclusive, lowPos, "lower"),
                          upper: try bound(high, highInclusive, highPos, "upper"), position: start)
        }
        for op in [">=", "<=", ">", "<"] where String(chars[i..<min(chars.count, i + op.count)]) == op {
            i += op.count
            let at = position
            let v = try value()
            if v.isEmpty { throw QueryError("a value expected after '\(field):\(op)'", at: at) }
            let b = QueryBound(v, inclusive: op.count == 2, at: at)
            return op.hasPrefix(">") ? .range(field: field, lower: b, upper: nil, position: start)
                                     : .range(field: field, lower: nil, upper: b, position: start)
        }
        let v = try value()
        if v.isEmpty { throw QueryError("a value expected after '\(field):'", at: position) }
        return .equals(field: field, value: v, position: start)
    }

    /// One word of a range bound ("250", "K", "2026-12-01T10:00:00Z", "*").
    mutating func rangeWord() throws -> String {
        if peek == "\"" { return try quoted() }
        var out = ""
        while i < chars.count, !chars[i].isWhitespace, chars[i] != "]", chars[i] != "}" { out.append(chars[i]); i += 1 }
        return out
    }
}

extension CatalogQuery {
    /// The query in the query language (what a Lua table sends to a server's catalog).
    public var text: String {
        func quote(_ s: String) -> String {
            "\"" + s.replacingAll("\\", "\\\\").replacingAll("\"", "\\\"") + "\""
        }
        switch self {
        case .all: return ""
        case .and(let parts): return "(" + parts.map(\.text).joined(separator: " AND ") + ")"
        case .or(let parts): return "(" + parts.map(\.text).joined(separator: " OR ") + ")"
        case .not(let q): return "NOT " + q.text
        case .equals(let f, let v, _): return "\(f):\(quote(v))"
        case .exists(let f, _): return "exists:\(f)"
        case .text(let t, _): return quote(t)
        case .range(let f, let lo, let hi, _):
            let open = lo.map { $0.inclusive ? "[" : "{" } ?? "["
            let close = hi.map { $0.inclusive ? "]" : "}" } ?? "]"
            func bound(_ b: QueryBound?) -> String { b.map { $0.text.contains(" ") ? quote($0.text) : $0.text } ?? "*" }
            return "\(f):\(open)\(bound(lo)) TO \(bound(hi))\(close)"
        }
    }
}
