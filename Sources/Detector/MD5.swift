#if canImport(Glibc)
import Glibc
#endif

/// MD5 (RFC 1321), for the Content-MD5 of CBF binary sections (a checksum of the
/// compressed bytes, not a security measure). Small and self-contained so that nxlua
/// needs no crypto library for it.
public enum MD5 {
    private static let s: [UInt32] = [7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                                      5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
                                      4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                                      6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21]
    private static let k: [UInt32] = (0..<64).map { i in
        UInt32(truncatingIfNeeded: Int64((abs(sin(Double(i + 1))) * 4294967296.0).rounded(.down)))
    }

    /// The 16-byte digest of `data`.
    public static func digest(_ data: UnsafeRawBufferPointer) -> [UInt8] {
        var a0: UInt32 = 0x6745_2301, b0: UInt32 = 0xefcd_ab89, c0: UInt32 = 0x98ba_dcfe, d0: UInt32 = 0x1032_5476
        var m = [UInt32](repeating: 0, count: 16)
        func block(_ p: UnsafeRawPointer) {
            for j in 0..<16 { m[j] = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * j, as: UInt32.self)) }
            var a = a0, b = b0, c = c0, d = d0
            for i in 0..<64 {
                var f: UInt32
                let g: Int
                switch i {
                case 0..<16: f = (b & c) | (~b & d); g = i
                case 16..<32: f = (d & b) | (~d & c); g = (5 * i + 1) & 15
                case 32..<48: f = b ^ c ^ d; g = (3 * i + 5) & 15
                default: f = c ^ (b | ~d); g = (7 * i) & 15
                }
                f = f &+ a &+ k[i] &+ m[g]
                a = d; d = c; c = b
                b = b &+ ((f << s[i]) | (f >> (32 - s[i])))
            }
            a0 = a0 &+ a; b0 = b0 &+ b; c0 = c0 &+ c; d0 = d0 &+ d
        }
        let n = data.count
        var offset = 0
        if let base = data.baseAddress {
            while n - offset >= 64 { block(base + offset); offset += 64 }
        }
        // the last bytes, 0x80, zeros, and the length in bits
        var tail = [UInt8](repeating: 0, count: n - offset < 56 ? 64 : 128)
        for j in 0..<(n - offset) { tail[j] = data[offset + j] }
        tail[n - offset] = 0x80
        let bits = UInt64(n) &* 8
        for j in 0..<8 { tail[tail.count - 8 + j] = UInt8(truncatingIfNeeded: bits >> (8 * UInt64(j))) }
        tail.withUnsafeBytes { t in
            var o = 0
            while o < t.count { block(t.baseAddress! + o); o += 64 }
        }
        var out: [UInt8] = []
        for w in [a0, b0, c0, d0] { for j in 0..<4 { out.append(UInt8(truncatingIfNeeded: w >> (8 * UInt32(j)))) } }
        return out
    }

    /// The digest in base64, as CBF's Content-MD5 header gives it ("WPlVpB1neUj2582vHTqy0A==").
    public static func base64Digest(_ data: UnsafeRawBufferPointer) -> String { Base64.encode(digest(data)) }
}

/// Base64 (RFC 4648) encoding, for Content-MD5.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let b0 = bytes[i], b1 = i + 1 < bytes.count ? bytes[i + 1] : 0, b2 = i + 2 < bytes.count ? bytes[i + 2] : 0
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 3) << 4 | b1 >> 4)])
            out.append(i + 1 < bytes.count ? alphabet[Int((b1 & 15) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? alphabet[Int(b2 & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
