/// Object ids as HSDS (schema v2) makes them: `g-`, `d-` or `t-`, then 32 hex digits as
/// 8-8-4-6-6. The first 16 digits identify the domain (a hash of its path), the last 16
/// the object (a hash of the domain and the object header's address, which every hard
/// link shares); a root group's last 16 are its first 16 rotated by 8, HSDS's mark of a
/// root. Deterministic, so ids survive restarts; h5pyd 0.24 and 1.0 accept them.
public struct ObjectID: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Character, Sendable { case group = "g", dataset = "d", datatype = "t" }
    public let kind: Kind
    /// The first 16 hex digits: the domain.
    public let domainHash: UInt64
    /// The last 16 hex digits: the object.
    public let objectHash: UInt64

    /// 16 hex digits: the domain.
    public var domainToken: String { ObjectID.hex16(domainHash) }
    /// 16 hex digits: the object.
    public var objectToken: String { ObjectID.hex16(objectHash) }

    static let hexDigits = Array("0123456789abcdef".utf8)

    /// Written byte by byte: a domain's answer names every object's id (String(radix:)
    /// and Character arrays took an eighth of the server's time for a 60-object tree).
    public var description: String {
        String(unsafeUninitializedCapacity: 38) { out in
            out[0] = kind.rawValue.asciiValue!
            out[1] = UInt8(ascii: "-")
            var j = 2
            for (word, bits) in [(domainHash, 0), (objectHash, 16)] {
                for k in 0..<16 {
                    let digit = bits + k
                    if digit == 8 || digit == 16 || digit == 20 || digit == 26 { out[j] = UInt8(ascii: "-"); j += 1 }
                    out[j] = ObjectID.hexDigits[Int((word >> UInt64(60 - 4 * k)) & 0xF)]
                    j += 1
                }
            }
            return j
        }
    }

    public var collection: String {
        switch kind {
        case .group: return "groups"
        case .dataset: return "datasets"
        case .datatype: return "datatypes"
        }
    }

    /// FNV-1a, 64 bits: stable across runs and machines (Swift's Hasher is seeded per process).
    static func fnv1a<S: Sequence>(_ bytes: S, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 where S.Element == UInt8 {
        var h = seed
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        return h
    }

    static func hex16(_ v: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { out in
            for k in 0..<16 { out[k] = hexDigits[Int((v >> UInt64(60 - 4 * k)) & 0xF)] }
            return 16
        }
    }

    /// Every hex digit moved by 8 (HSDS's root mark): each nibble's top bit flipped.
    static func rotated(_ v: UInt64) -> UInt64 { v ^ 0x8888_8888_8888_8888 }

    public static func domainHash(_ domain: String) -> UInt64 { fnv1a(domain.utf8) }
    public static func domainToken(_ domain: String) -> String { hex16(domainHash(domain)) }

    public static func root(domain: String) -> ObjectID {
        let t = domainHash(domain)
        return ObjectID(kind: .group, domainHash: t, objectHash: rotated(t))
    }

    /// The id of the object at `address` in `domain`: FNV-1a of the domain's 16 hex
    /// digits and the address's 8 bytes (little-endian).
    public static func object(_ kind: Kind, domain: String, address: UInt64) -> ObjectID {
        object(kind, domainHash: domainHash(domain), address: address)
    }

    public static func object(_ kind: Kind, domainHash t: UInt64, address: UInt64) -> ObjectID {
        var h = fnv1a(hex16(t).utf8)
        for k in 0..<8 { h = fnv1a(CollectionOfOne(UInt8((address >> (8 * UInt64(k))) & 0xFF)), seed: h) }
        if h == rotated(t) { h = fnv1a(CollectionOfOne(1), seed: h) }  // never look like the root
        return ObjectID(kind: kind, domainHash: t, objectHash: h)
    }

    /// Parses an id from a URL; nil when it is not one of ours in form.
    public init?(parsing text: String) {
        let bytes = Array(text.utf8)
        guard bytes.count == 38, bytes[1] == UInt8(ascii: "-"),
              let kind = Kind(rawValue: Character(Unicode.Scalar(bytes[0] | 0x20))) else { return nil }
        var words: [UInt64] = [0, 0], digits = 0
        for (i, c) in bytes.enumerated().dropFirst(2) {
            if i == 10 || i == 19 || i == 24 || i == 31 {
                guard c == UInt8(ascii: "-") else { return nil }
                continue
            }
            let v: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = c - UInt8(ascii: "A") + 10
            default: return nil
            }
            words[digits / 16] = words[digits / 16] << 4 | UInt64(v)
            digits += 1
        }
        guard digits == 32 else { return nil }
        self.kind = kind
        domainHash = words[0]
        objectHash = words[1]
    }

    public init(kind: Kind, domainHash: UInt64, objectHash: UInt64) {
        self.kind = kind
        self.domainHash = domainHash
        self.objectHash = objectHash
    }
}
