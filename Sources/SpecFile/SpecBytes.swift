#if canImport(Glibc)
import Glibc
#endif

/// Errors of SPEC reading; every message names the file and, where one is to blame, the line.
public struct SpecError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A whole file mapped read-only: the parser walks its bytes without copying them.
final class MappedFile: @unchecked Sendable {
    let bytes: UnsafePointer<UInt8>?
    let count: Int

    init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SpecError("\(path): cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SpecError("\(path): cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw SpecError("\(path): not a regular file") }
        count = Int(st.st_size)
        if count == 0 { bytes = nil; return }
        guard let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw SpecError("\(path): cannot map: \(String(cString: strerror(errno)))")
        }
        _ = madvise(p, count, 2 /* MADV_SEQUENTIAL */)
        bytes = UnsafePointer(p.assumingMemoryBound(to: UInt8.self))
    }

    deinit { if let bytes { munmap(UnsafeMutableRawPointer(mutating: bytes), count) } }
}

/// One line of the file: bytes [start, end) without the line break, and its 1-based number.
struct Line {
    var start: Int
    var end: Int
    var number: Int
}

@inline(__always) func isBlank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0D || c == 0x0B || c == 0x0C }

/// Byte-level helpers over a mapped file (no String is made for data rows).
struct SpecBytes {
    let base: UnsafePointer<UInt8>
    let count: Int
    /// "\n" normally; "\r" for old Mac files with no "\n" at all (spec2nexus accepts both).
    let newline: UInt8

    /// The line starting at `start` (its end excludes "\n" and a "\r" before it), and where the next begins.
    @inline(__always) func line(at start: Int, number: Int) -> (Line, next: Int) {
        let rest = count - start
        let p = memchr(base + start, Int32(newline), rest)
        var end = p.map { UnsafePointer($0.assumingMemoryBound(to: UInt8.self)) - base } ?? count
        let next = end < count ? end + 1 : count
        if newline == 0x0A, end > start, base[end - 1] == 0x0D { end -= 1 }
        return (Line(start: start, end: end, number: number), next)
    }

    @inline(__always) func skipBlanks(_ i: Int, _ end: Int) -> Int {
        var i = i
        while i < end && isBlank(base[i]) { i += 1 }
        return i
    }

    @inline(__always) func tokenEnd(_ i: Int, _ end: Int) -> Int {
        var i = i
        while i < end && !isBlank(base[i]) { i += 1 }
        return i
    }

    func string(_ start: Int, _ end: Int) -> String {
        String(decoding: UnsafeBufferPointer(start: base + start, count: max(0, end - start)), as: UTF8.self)
    }

    /// The text after the first word (spec2nexus's strip_first_word), trimmed.
    func afterFirstWord(_ line: Line) -> String {
        var i = skipBlanks(line.start, line.end)
        i = tokenEnd(i, line.end)
        i = skipBlanks(i, line.end)
        var e = line.end
        while e > i && isBlank(base[e - 1]) { e -= 1 }
        return string(i, e)
    }

    /// The line's first word (after leading blanks).
    func firstWord(_ line: Line) -> (start: Int, end: Int) {
        let s = skipBlanks(line.start, line.end)
        return (s, tokenEnd(s, line.end))
    }

    func equals(_ start: Int, _ end: Int, _ word: StaticString) -> Bool {
        guard end - start == word.utf8CodeUnitCount else { return false }
        return memcmp(base + start, word.utf8Start, end - start) == 0
    }
}

/// Decimal text to Double, correctly rounded: exact integer mantissas up to 2^53 scaled by
/// exact powers of ten up to 1e22 (Clinger's fast path) cover SPEC's columns; anything else
/// goes through strtod. Returns nil when the token is not a number (as Python's float()).
@inline(__always)
func parseNumber(_ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> Double? {
    var i = start
    var negative = false
    if i < end && (base[i] == 0x2D || base[i] == 0x2B) { negative = base[i] == 0x2D; i += 1 }
    var mantissa: UInt64 = 0
    var digits = 0, significant = 0, scale = 0
    while i < end, base[i] &- 0x30 < 10 {
        if significant < 19 {
            mantissa = mantissa &* 10 &+ UInt64(base[i] &- 0x30)
            if mantissa != 0 { significant += 1 }
        } else { scale += 1; significant += 1 }
        digits += 1; i += 1
    }
    if i < end && base[i] == 0x2E {
        i += 1
        while i < end, base[i] &- 0x30 < 10 {
            if significant < 19 {
                mantissa = mantissa &* 10 &+ UInt64(base[i] &- 0x30)
                if mantissa != 0 { significant += 1 }
                scale -= 1
            } else { significant += 1 }
            digits += 1; i += 1
        }
    }
    if digits == 0 { return slowNumber(base, start, end) }
    if i < end && (base[i] | 0x20) == 0x65 {  // e or E
        i += 1
        var expNegative = false
        if i < end && (base[i] == 0x2D || base[i] == 0x2B) { expNegative = base[i] == 0x2D; i += 1 }
        var e = 0, expDigits = 0
        while i < end, base[i] &- 0x30 < 10 {
            if e < 100_000 { e = e * 10 + Int(base[i] &- 0x30) }
            expDigits += 1; i += 1
        }
        if expDigits == 0 { return nil }
        scale += expNegative ? -e : e
    }
    if i != end { return nil }
    if significant <= 19 && mantissa <= (1 << 53) && scale >= -22 && scale <= 22 {
        var v = Double(mantissa)
        if scale < 0 { v /= powersOfTen[-scale] } else if scale > 0 { v *= powersOfTen[scale] }
        return negative ? -v : v
    }
    return slowNumber(base, start, end)
}

private let powersOfTen: [Double] = (0...22).map { e in
    var v = 1.0
    for _ in 0..<e { v *= 10 }
    return v
}

/// strtod on a NUL-terminated copy of the token (mapped bytes have no NUL after the last
/// one). Takes what Python's float() takes: decimals, inf, infinity, nan; not hex.
private func slowNumber(_ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> Double? {
    let n = end - start
    guard n > 0, n < 400 else { return nil }
    for k in start..<end where base[k] == 0x78 || base[k] == 0x58 || base[k] == 0x70 || base[k] == 0x50 { return nil }  // x, p: hex
    return withUnsafeTemporaryAllocation(of: CChar.self, capacity: n + 1) { buf in
        for k in 0..<n { buf[k] = CChar(bitPattern: base[start + k]) }
        buf[n] = 0
        var stop: UnsafeMutablePointer<CChar>?
        let v = strtod(buf.baseAddress!, &stop)
        guard let stop, stop - buf.baseAddress! == n else { return nil }
        if v.isNaN {  // Python's float() takes "nan", "+nan", "-nan" only, not C's "nan(chars)"
            for k in 0..<n where buf[k] == 0x28 { return nil }
        }
        return v
    }
}
