// Byte-level pieces shared by the protocols: base64, tmux's passthrough, an uncompressed
// PNG writer (for iTerm2 when the caller has no PNG), and box-filter resampling.

enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Standard base64 (RFC 4648) with `=` padding.
    static func encode(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(v >> 18)]); out.append(alphabet[Int(v >> 12 & 63)])
            out.append(alphabet[Int(v >> 6 & 63)]); out.append(alphabet[Int(v & 63)])
            i += 3
        }
        let rest = bytes.count - i
        if rest > 0 {
            let v = UInt32(bytes[i]) << 16 | (rest == 2 ? UInt32(bytes[i + 1]) << 8 : 0)
            out.append(alphabet[Int(v >> 18)]); out.append(alphabet[Int(v >> 12 & 63)])
            out.append(rest == 2 ? alphabet[Int(v >> 6 & 63)] : UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        }
        return out
    }
}

enum Tmux {
    /// tmux's passthrough: `ESC P tmux ;` + the bytes with every ESC doubled + `ESC \`.
    /// Long output is cut into several passthrough sequences of at most `piece` input
    /// bytes (tmux drops escape strings over its input buffer limit); the outer terminal
    /// receives their contents one after the other, i.e. the original bytes.
    static func wrap(_ bytes: [UInt8], piece: Int = 256 * 1024) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count + 16 + bytes.count / piece * 8)
        var start = 0
        repeat {
            let end = min(bytes.count, start + piece)
            out += [0x1B, UInt8(ascii: "P")] + Array("tmux;".utf8)
            for b in bytes[start..<end] {
                if b == 0x1B { out.append(0x1B) }
                out.append(b)
            }
            out += [0x1B, UInt8(ascii: "\\")]
            start = end
        } while start < bytes.count
        return out
    }
}

enum PNGWriter {
    /// A valid PNG of `image` (colour type 6, 8 bits) whose zlib stream holds stored
    /// (uncompressed) deflate blocks: no compressor needed, at the price of size.
    static func encode(_ image: RGBAImage) -> [UInt8] {
        var raw = [UInt8]()
        raw.reserveCapacity(image.height * (image.width * 4 + 1))
        for y in 0..<image.height {
            raw.append(0)  // filter: none
            raw += image.pixels[(y * image.width * 4)..<((y + 1) * image.width * 4)]
        }
        var z: [UInt8] = [0x78, 0x01]
        var i = 0
        repeat {
            let n = min(65535, raw.count - i)
            let last: UInt8 = i + n == raw.count ? 1 : 0
            z += [last, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            z += raw[i..<(i + n)]
            i += n
        } while i < raw.count
        z += bigEndian(adler32(raw))

        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        chunk("IHDR", bigEndian(UInt32(image.width)) + bigEndian(UInt32(image.height)) + [8, 6, 0, 0, 0], into: &out)
        chunk("IDAT", z, into: &out)
        chunk("IEND", [], into: &out)
        return out
    }

    private static func chunk(_ type: String, _ data: [UInt8], into out: inout [UInt8]) {
        let typed = Array(type.utf8) + data
        out += bigEndian(UInt32(data.count))
        out += typed
        out += bigEndian(crc32(typed))
    }

    static func bigEndian(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }

    private static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        var i = 0
        while i < bytes.count {
            let end = min(bytes.count, i + 5552)  // the most bytes before b can overflow
            while i < end { a += UInt32(bytes[i]); b += a; i += 1 }
            a %= 65521; b %= 65521
        }
        return b << 16 | a
    }
}

enum Resample {
    /// `image` scaled down (never up) to fit in `box` pixels, keeping its aspect ratio.
    static func fit(_ image: RGBAImage, in box: (width: Int, height: Int)) -> RGBAImage {
        let s = min(1, Double(box.width) / Double(image.width), Double(box.height) / Double(image.height))
        guard s < 1 else { return image }
        let w = max(1, min(box.width, Int((Double(image.width) * s).rounded())))
        let h = max(1, min(box.height, Int((Double(image.height) * s).rounded())))
        return boxFilter(image, width: w, height: h)
    }

    /// Box filter: each output pixel averages the input pixels its area covers (whole
    /// pixels; at least one), colours weighted by alpha. Scaling up repeats pixels.
    static func boxFilter(_ image: RGBAImage, width: Int, height: Int) -> RGBAImage {
        if width == image.width && height == image.height { return image }
        var out = [UInt8](repeating: 0, count: width * height * 4)
        let src = image.pixels
        let xs = (0...width).map { $0 * image.width / width }
        for ty in 0..<height {
            let y0 = ty * image.height / height
            let y1 = max(y0 + 1, (ty + 1) * image.height / height)
            for tx in 0..<width {
                let x0 = xs[tx], x1 = max(x0 + 1, xs[tx + 1])
                var r = 0, g = 0, b = 0, a = 0
                for y in y0..<y1 {
                    var i = (y * image.width + x0) * 4
                    for _ in x0..<x1 {
                        let pa = Int(src[i + 3])
                        r += Int(src[i]) * pa; g += Int(src[i + 1]) * pa; b += Int(src[i + 2]) * pa; a += pa
                        i += 4
                    }
                }
                let n = (y1 - y0) * (x1 - x0)
                let o = (ty * width + tx) * 4
                if a > 0 {
                    out[o] = UInt8((r + a / 2) / a); out[o + 1] = UInt8((g + a / 2) / a); out[o + 2] = UInt8((b + a / 2) / a)
                }
                out[o + 3] = UInt8((a + n / 2) / n)
            }
        }
        return RGBAImage(width: width, height: height, pixels: out)
    }
}
