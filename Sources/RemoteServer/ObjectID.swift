/// Object ids as HSDS (schema v2) makes them: `g-`, `d-` or `t-`, then 32 hex digits as
/// 8-8-4-6-6. The first 16 digits identify the domain (a hash of its path), the last 16
/// the object (a hash of the domain and the object header's address, which every hard
/// link shares); a root group's last 16 are its first 16 rotated by 8, HSDS's mark of a
/// root. Deterministic, so ids survive restarts; h5pyd 0.24 and 1.0 accept them.
public struct ObjectID: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Character, Sendable { case group = "g", dataset = "d", datatype = "t" }
    public let kind: Kind
    /// 16 hex digits: the domain.
    public let domainToken: String
    /// 16 hex digits: the object.
    public let objectToken: String

    public var description: String {
        let hex = Array(domainToken + objectToken)
        func part(_ r: Range<Int>) -> String { String(hex[r]) }
        return "\(kind.rawValue)-\(part(0..<8))-\(part(8..<16))-\(part(16..<20))-\(part(20..<26))-\(part(26..<32))"
    }

    public var collection: String {
        switch kind {
        case .group: return "groups"
        case .dataset: return "datasets"
        case .datatype: return "datatypes"
        }
    }

    /// FNV-1a, 64 bits: stable across runs and machines (Swift's Hasher is seeded per process).
    static func fnv1a(_ bytes: [UInt8], seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
        var h = seed
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        return h
    }

    static func hex16(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    static func rotated(_ token: String) -> String {
        String(token.map { c -> Character in
            let v = (Int(String(c), radix: 16)! + 8) % 16
            return Character(String(v, radix: 16))
        })
    }

    public static func domainToken(_ domain: String) -> String { hex16(fnv1a(Array(domain.utf8))) }

    public static func root(domain: String) -> ObjectID {
        let t = domainToken(domain)
        return ObjectID(kind: .group, domainToken: t, objectToken: rotated(t))
    }

    /// The id of the object at `address` in `domain`.
    public static func object(_ kind: Kind, domain: String, address: UInt64) -> ObjectID {
        let t = domainToken(domain)
        var bytes = Array(t.utf8)
        for k in 0..<8 { bytes.append(UInt8((address >> (8 * UInt64(k))) & 0xFF)) }
        var token = hex16(fnv1a(bytes))
        if token == rotated(t) { token = hex16(fnv1a(bytes + [1])) }  // never look like the root
        return ObjectID(kind: kind, domainToken: t, objectToken: token)
    }

    /// Parses an id from a URL; nil when it is not one of ours in form.
    public init?(parsing text: String) {
        let chars = Array(text.lowercased())
        guard chars.count == 38, chars[1] == "-", let kind = Kind(rawValue: chars[0]) else { return nil }
        let body = chars[2...]
        let dashes = [8, 17, 22, 29].map { $0 + 2 }
        var hex: [Character] = []
        for (i, c) in zip(body.indices, body) {
            if dashes.contains(i) {
                guard c == "-" else { return nil }
            } else {
                guard c.isHexDigit else { return nil }
                hex.append(c)
            }
        }
        guard hex.count == 32 else { return nil }
        self.kind = kind
        domainToken = String(hex[0..<16])
        objectToken = String(hex[16..<32])
    }

    public init(kind: Kind, domainToken: String, objectToken: String) {
        self.kind = kind
        self.domainToken = domainToken
        self.objectToken = objectToken
    }
}
