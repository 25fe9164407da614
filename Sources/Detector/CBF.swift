#if canImport(Glibc)
import Glibc
#endif
import CCBFShims
import NDArray

/// The text parts of a CBF file: CIF text before the first binary section, its MIME
/// header, and where the binary data starts (after the bytes 0C 1A 04 D5).
struct MiniCBF {
    var headerContents: String?
    var convention: String?
    /// The MIME header as written, and by lower-cased name.
    var mime: [(String, String)] = []
    var fields: [String: String] = [:]
    /// Offset of the first binary byte, or nil when the file has no binary section.
    var binaryOffset: Int?
    /// Whether a binary section's MIME header ended (with an empty line).
    var mimeComplete = false

    static let sectionMarker = Array("--CIF-BINARY-FORMAT-SECTION--".utf8)
    static let binaryMarker: [UInt8] = [0x0C, 0x1A, 0x04, 0xD5]
    /// The conversions cbflib decodes (lower-cased), besides byte_offset and none.
    static let cbflibCompressions: Set<String> = ["x-cbf_packed", "x-cbf_packed_v2", "x-cbf_canonical",
                                                  "x-cbf_predictor", "x-cbf_nibble_offset"]

    static func find(_ needle: [UInt8], in haystack: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard start <= haystack.count, let base = haystack.baseAddress, let first = needle.first else { return nil }
        return needle.withUnsafeBytes { n -> Int? in
            var i = start
            let last = haystack.count - n.count
            while i <= last {
                guard let hit = memchr(base + i, Int32(first), last - i + 1) else { return nil }
                let at = UnsafeRawPointer(hit) - UnsafeRawPointer(base)
                if memcmp(base + at, n.baseAddress!, n.count) == 0 { return at }
                i = at + 1
            }
            return nil
        }
    }

    static func text(_ buf: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: buf[range]), as: UTF8.self)
    }

    /// Parses the text parts; never reads outside `buf`.
    init(parsing buf: UnsafeRawBufferPointer) {
        let section = MiniCBF.find(MiniCBF.sectionMarker, in: buf, from: 0)
        let cifEnd = section ?? min(buf.count, 1 << 20)
        let cif = UnsafeRawBufferPointer(rebasing: buf[0..<cifEnd])

        if let at = MiniCBF.find(Array("_array_data.header_convention".utf8), in: cif, from: 0) {
            var i = at + 29
            while i < cif.count && (cif[i] == 0x20 || cif[i] == 0x09) { i += 1 }
            var j = i
            while j < cif.count && cif[j] != 0x0A && cif[j] != 0x0D { j += 1 }
            let v = MiniCBF.text(cif, i..<j).trimmingCharacters(in: " \t\"'")
            if !v.isEmpty { convention = v }
        }
        if let at = MiniCBF.find(Array("_array_data.header_contents".utf8), in: cif, from: 0) {
            // a CIF text field: a line starting with ';' up to the next line starting with ';'
            if let open = MiniCBF.find(Array("\n;".utf8), in: cif, from: at) {
                var start = open + 2
                while start < cif.count && cif[start] != 0x0A { start += 1 }  // rest of the ';' line
                start = min(start + 1, cif.count)
                let close = MiniCBF.find(Array("\n;".utf8), in: cif, from: start - 1) ?? cif.count
                if close >= start {
                    // CIF files are often CRLF: hand on "\n" lines
                    let bytes = UnsafeRawBufferPointer(rebasing: cif[start..<close]).filter { $0 != 0x0D }
                    headerContents = String(decoding: bytes, as: UTF8.self)
                }
            }
        }
        guard let section else { return }
        // MIME header lines up to an empty line; continuation lines start with white space
        var i = section + MiniCBF.sectionMarker.count
        var lines: [String] = []
        let limit = min(buf.count, i + 8192)
        while i < limit {
            var j = i
            while j < limit && buf[j] != 0x0A { j += 1 }
            var line = MiniCBF.text(buf, i..<j)
            if line.hasSuffix("\r") { line.removeLast() }
            i = j + 1
            if line.isEmpty {
                if lines.isEmpty { continue }  // the end of the marker line
                mimeComplete = true
                break
            }
            if let f = line.first, f == " " || f == "\t", !lines.isEmpty {
                lines[lines.count - 1] += " " + line.trimmingSpaces
            } else {
                lines.append(line)
            }
        }
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = String(line[..<colon]).trimmingSpaces
            let value = String(line[line.index(after: colon)...]).trimmingSpaces
            mime.append((name, value))
            fields[name.lowercased()] = value
        }
        if let b = MiniCBF.find(MiniCBF.binaryMarker, in: buf, from: min(i, buf.count)) { binaryOffset = b + 4 }
    }

    /// `conversions="x-CBF_BYTE_OFFSET"` from Content-Type, lower-cased; nil if absent.
    var conversions: String? {
        guard let ct = fields["content-type"], let r = ct.range(of: "conversions=") else { return nil }
        let rest = ct[r.upperBound...].trimmingCharacters(in: " \t\"';")
        let v = rest.split(whereSeparator: { $0 == ";" || $0 == "\"" || $0 == " " }).first.map(String.init) ?? rest
        return v.lowercased()
    }

    func integer(_ name: String) -> Int? { fields[name].flatMap { Int($0.trimmingSpaces) } }

    /// The element type, from X-Binary-Element-Type.
    static func dtype(_ elementType: String) -> DType? {
        switch elementType.trimmingCharacters(in: " \t\"'").lowercased() {
        case "signed 8-bit integer": return .int8
        case "unsigned 8-bit integer": return .uint8
        case "signed 16-bit integer": return .int16
        case "unsigned 16-bit integer": return .uint16
        case "signed 32-bit integer": return .int32
        case "unsigned 32-bit integer": return .uint32
        case "signed 64-bit integer": return .int64
        case "unsigned 64-bit integer": return .uint64
        case "signed 32-bit real ieee": return .float32
        case "signed 64-bit real ieee": return .float64
        default: return nil
        }
    }

    static func elementType(_ d: DType) -> String? {
        switch d {
        case .int8: return "signed 8-bit integer"
        case .uint8: return "unsigned 8-bit integer"
        case .int16: return "signed 16-bit integer"
        case .uint16: return "unsigned 16-bit integer"
        case .int32: return "signed 32-bit integer"
        case .uint32: return "unsigned 32-bit integer"
        case .int64: return "signed 64-bit integer"
        case .uint64: return "unsigned 64-bit integer"
        case .float32: return "signed 32-bit real IEEE"
        case .float64: return "signed 64-bit real IEEE"
        case .bool: return nil
        }
    }
}

/// Reads CBF files: the native reader for byte-offset (and uncompressed) mini-CBF, as
/// Pilatus and Eiger detectors write them; cbflib for every other compression and for
/// full imgCIF files that give the dimensions only in their CIF categories.
public enum CBFReader {
    public static func read(_ path: String, options: FrameReader.Options = .init()) throws -> Frame {
        if options.decoder == .cbflib { return try readWithCBFLib(path, checkMD5: options.checkMD5) }
        let result: Frame? = try FileBytes.withContents(of: path) { buf in
            try readNative(buf, path: path, options: options)
        }
        if let result { return result }
        return try readWithCBFLib(path, checkMD5: options.checkMD5)
    }

    /// The native reader on a file's bytes; nil when the file needs cbflib (and
    /// `options.decoder` allows it).
    public static func readNative(_ buf: UnsafeRawBufferPointer, path: String,
                                  options: FrameReader.Options = .init()) throws -> Frame? {
        guard let layout = try nativeLayout(buf, path: path, options: options) else { return nil }
        return try decode(layout, path: path)
    }

    /// What the native reader found in a mini-CBF: the binary data and how to decode it.
    struct NativeLayout {
        let header: FrameHeader
        let shape: [Int]
        let count: Int
        let dtype: DType
        let typeText: String
        let byteOffset: Bool
        let data: UnsafeRawBufferPointer
    }

    static func nativeLayout(_ buf: UnsafeRawBufferPointer, path: String,
                             options: FrameReader.Options) throws -> NativeLayout? {
        let cbf = MiniCBF(parsing: buf)
        let header = makeHeader(cbf, decoder: "native")
        func needsCBFLib(_ why: String) throws -> NativeLayout? {
            if options.decoder == .native { throw DetectorError.file(path, "\(why): the native reader cannot read it (cbflib can)") }
            return nil
        }
        guard cbf.fields["content-type"] != nil || cbf.binaryOffset != nil else {
            if MiniCBF.find(MiniCBF.sectionMarker, in: buf, from: 0) == nil {
                // no binary section at all: cbflib would find no image either
                if options.decoder == .native { throw DetectorError.file(path, "no binary section (no image in this CBF)") }
                return nil
            }
            throw DetectorError.file(path, "binary section without a MIME header")
        }
        guard cbf.mimeComplete else {
            throw DetectorError.file(path, "truncated: the binary section's MIME header does not end")
        }
        let conversions = cbf.conversions ?? "x-cbf_none"
        guard conversions == "x-cbf_byte_offset" || conversions == "x-cbf_none" else {
            // cbflib decodes an unknown conversion as if uncompressed: refuse it here instead
            guard MiniCBF.cbflibCompressions.contains(conversions) else {
                throw DetectorError.file(path, "unknown compression \(conversions) (known: byte_offset, none, packed, packed_v2, canonical, predictor, nibble_offset)")
            }
            return try needsCBFLib("compression \(conversions)")
        }
        if let enc = cbf.fields["content-transfer-encoding"], enc.lowercased() != "binary" {
            return try needsCBFLib("Content-Transfer-Encoding \(enc)")
        }
        if let order = cbf.fields["x-binary-element-byte-order"], order.uppercased() != "LITTLE_ENDIAN" {
            return try needsCBFLib("byte order \(order)")
        }
        guard let fast = cbf.integer("x-binary-size-fastest-dimension") else {
            return try needsCBFLib("no X-Binary-Size-Fastest-Dimension")
        }
        guard let typeText = cbf.fields["x-binary-element-type"] else {
            throw DetectorError.file(path, "no X-Binary-Element-Type in the binary section's header")
        }
        guard let dtype = MiniCBF.dtype(typeText) else {
            throw DetectorError.file(path, "unknown X-Binary-Element-Type \(typeText)")
        }
        let second = cbf.integer("x-binary-size-second-dimension") ?? 1
        let third = cbf.integer("x-binary-size-third-dimension") ?? 1
        guard fast > 0, second > 0, third > 0 else {
            throw DetectorError.file(path, "bad dimensions \(fast) x \(second) x \(third)")
        }
        let shape = third > 1 ? [third, second, fast] : [second, fast]
        let (count, overflow) = shape.reduce((1, false)) { acc, n in
            let (p, o) = acc.0.multipliedReportingOverflow(by: n)
            return (p, acc.1 || o)
        }
        guard !overflow, count <= Int(Int32.max) else {
            throw DetectorError.file(path, "dimensions \(NDArray.describe(shape)) are too large")
        }
        if let n = cbf.integer("x-binary-number-of-elements"), n != count {
            throw DetectorError.file(path, "X-Binary-Number-of-Elements is \(n) but the dimensions \(fast) x \(second)\(third > 1 ? " x \(third)" : "") make \(count)")
        }
        guard let sizeText = cbf.fields["x-binary-size"], let size = Int(sizeText), size >= 0 else {
            throw DetectorError.file(path, "no valid X-Binary-Size in the binary section's header")
        }
        guard let start = cbf.binaryOffset else {
            throw DetectorError.file(path, "truncated: no binary data (the start bytes 0C 1A 04 D5 are missing)")
        }
        let available = buf.count - start
        guard size <= available else {
            throw DetectorError.file(path, "truncated: X-Binary-Size says \(size) bytes, only \(available) follow the binary marker")
        }
        let data = UnsafeRawBufferPointer(rebasing: buf[start..<(start + size)])
        if options.checkMD5 {
            guard let expected = cbf.fields["content-md5"] else {
                throw DetectorError.file(path, "no Content-MD5 to check")
            }
            let actual = MD5.base64Digest(data)
            guard actual == expected else {
                throw DetectorError.file(path, "Content-MD5 mismatch: the header says \(expected), the data gives \(actual)")
            }
        }
        return NativeLayout(header: header, shape: shape, count: count, dtype: dtype, typeText: typeText,
                            byteOffset: conversions == "x-cbf_byte_offset", data: data)
    }

    static func decode(_ layout: NativeLayout, path: String) throws -> Frame {
        let (header, shape, count, dtype, typeText, data) = (layout.header, layout.shape, layout.count, layout.dtype, layout.typeText, layout.data)
        let size = data.count
        let array = try wrap(path) { try NDArray(uninitialized: shape, dtype: dtype) }
        if !layout.byteOffset {
            let need = count * dtype.itemSize
            guard size >= need else {
                throw DetectorError.file(path, "truncated: \(count) \(dtype.rawValue) elements need \(need) bytes, X-Binary-Size is \(size)")
            }
            array.storage.bytes.copyMemory(from: data.baseAddress!, byteCount: need)
        } else {
            do {
                let p = array.storage.bytes
                switch dtype {
                case .int32: _ = try ByteOffset.decode(data, into: p.assumingMemoryBound(to: Int32.self), count: count)
                case .uint32: _ = try ByteOffset.decode(data, into: p.assumingMemoryBound(to: UInt32.self), count: count)
                case .int16: _ = try ByteOffset.decode(data, into: p.assumingMemoryBound(to: Int16.self), count: count)
                case .uint16: _ = try ByteOffset.decode(data, into: p.assumingMemoryBound(to: UInt16.self), count: count)
                case .int8: _ = try ByteOffset.decode(data, into: p.assumingMemoryBound(to: Int8.self), count: count)
                case .uint8: _ = try ByteOffset.decode(data, into: p.assumingMemoryBound(to: UInt8.self), count: count)
                case .int64: _ = try ByteOffset.decode(data, into: p.assumingMemoryBound(to: Int64.self), count: count)
                case .uint64: _ = try ByteOffset.decode(data, into: p.assumingMemoryBound(to: UInt64.self), count: count)
                case .float32, .float64, .bool:
                    throw DetectorError.file(path, "byte-offset compression of \(typeText) elements is not defined")
                }
            } catch let s as ByteOffset.Shortfall {
                throw DetectorError.file(path, "corrupt or truncated byte-offset data: its \(size) bytes (X-Binary-Size) hold only \(s.decoded) of the \(count) elements")
            }
        }
        return Frame(array: array, header: header)
    }

    /// A byte-offset int32 mini-CBF (Pilatus, Eiger) whose pixels are decoded in pieces,
    /// for a consumer that compresses each piece while it is in the CPU cache.
    public struct PixelStream {
        public let header: FrameHeader
        public let shape: [Int]
        public let dtype: DType
        let data: UnsafeRawBufferPointer
        let count: Int
        let path: String
        var position = ByteOffset.Position()
        var decoded = 0

        /// Decodes the next `n` pixels into `buffer` (int32); throws on truncated or
        /// corrupt data, as `read` would.
        public mutating func next(into buffer: UnsafeMutableRawPointer, count n: Int) throws {
            guard decoded + n <= count else { throw DetectorError.file(path, "asked for pixels beyond the \(count) of the frame") }
            do {
                try ByteOffset.decode(data, into: buffer.assumingMemoryBound(to: Int32.self), count: n, continuing: &position)
            } catch let s {
                throw DetectorError.file(path, "corrupt or truncated byte-offset data: its \(data.count) bytes (X-Binary-Size) hold only \(decoded + s.decoded) of the \(count) elements")
            }
            decoded += n
        }
    }

    /// Runs `body` on the frame's pixel stream when the file is a mini-CBF with int32
    /// byte-offset data that the native reader reads; nil (and `body` not run) for any
    /// other file, which `read` handles. The stream lives only during `body`.
    public static func withPixelStream<T>(_ path: String, _ body: (inout PixelStream) throws -> T) throws -> T? {
        try FileBytes.withContents(of: path) { buf -> T? in
            guard FrameReader.format(of: UnsafeRawBufferPointer(rebasing: buf.prefix(1 << 16))) == .cbf,
                  let layout = try nativeLayout(buf, path: path, options: FrameReader.Options()),
                  layout.byteOffset, layout.dtype == .int32 else { return nil }
            var stream = PixelStream(header: layout.header, shape: layout.shape, dtype: layout.dtype,
                                     data: layout.data, count: layout.count, path: path)
            return try body(&stream)
        }
    }

    static func makeHeader(_ cbf: MiniCBF, decoder: String) -> FrameHeader {
        let conversions = cbf.conversions ?? "x-cbf_none"
        var h = FrameHeader(format: "cbf", compression: conversions.hasPrefix("x-cbf_") ? String(conversions.dropFirst(6)) : conversions,
                            decoder: decoder)
        h.convention = cbf.convention
        h.pilatus = cbf.headerContents.map { PilatusHeader(parsing: $0) }
        h.mime = cbf.mime
        return h
    }

    /// The header without decoding (reads the text parts only).
    public static func readHeader(_ path: String) throws -> FrameHeader {
        try FileBytes.withContents(of: path) { buf in makeHeader(MiniCBF(parsing: buf), decoder: "none") }
    }

    /// Reads the first image of any CBF/imgCIF file with cbflib (opened with dlopen).
    public static func readWithCBFLib(_ path: String, checkMD5: Bool = false) throws -> Frame {
        var why = [CChar](repeating: 0, count: 1024)
        var info = nxcbf_array()
        guard let f = nxcbf_open(path, checkMD5 ? 1 : 0, &info, &why, why.count) else {
            throw DetectorError.file(path, String(nulTerminated: why))
        }
        defer { nxcbf_close(f) }
        let dtype: DType
        switch (info.real != 0, info.elsize, info.elsigned != 0) {
        case (true, 4, _): dtype = .float32
        case (true, 8, _): dtype = .float64
        case (false, 1, true): dtype = .int8
        case (false, 1, false): dtype = .uint8
        case (false, 2, true): dtype = .int16
        case (false, 2, false): dtype = .uint16
        case (false, 4, true): dtype = .int32
        case (false, 4, false): dtype = .uint32
        case (false, 8, true): dtype = .int64
        case (false, 8, false): dtype = .uint64
        default: throw DetectorError.file(path, "unsupported element type (\(info.elsize) bytes, \(info.real != 0 ? "real" : "integer"))")
        }
        let (fast, mid, slow) = (info.dims.0, info.dims.1, info.dims.2)
        let shape = slow > 1 ? [slow, mid, fast].map { Int($0) } : mid > 0 ? [Int(mid), Int(fast)] : [Int(info.nelem)]
        let count = shape.reduce(1, *)
        guard count == info.nelem, count > 0 else {
            throw DetectorError.file(path, "cbflib reports \(info.nelem) elements but dimensions \(NDArray.describe(shape))")
        }
        let array = try wrap(path) { try NDArray(uninitialized: shape, dtype: dtype) }
        guard nxcbf_read(f, array.storage.bytes, &why, why.count) == 0 else {
            throw DetectorError.file(path, String(nulTerminated: why))
        }
        var h = FrameHeader(format: "cbf", compression: info.compression.map { String(cString: $0) } ?? "none", decoder: "cbflib")
        if let text = nxcbf_header_contents(f) { h.pilatus = PilatusHeader(parsing: String(cString: text)) }
        return Frame(array: array, header: h)
    }

    static func wrap<T>(_ path: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ArrayError { throw DetectorError.file(path, e.message) }
    }
}
