#if canImport(Glibc)
import Glibc
#endif
import NDArray

/// What a frame's file said about it, besides the pixels.
public struct FrameHeader: Sendable {
    /// "cbf" or "tiff".
    public var format: String
    /// "byte_offset", "none", "packed", ... (CBF); "none", "lzw", "deflate", ... (TIFF).
    public var compression: String
    /// Who decoded the pixels: "native" (nxlua's own CBF reader), "cbflib" or "libtiff".
    public var decoder: String
    /// `_array_data.header_convention` of a CBF ("PILATUS_1.2"), if given.
    public var convention: String?
    /// The Pilatus header (CBF header_contents, TIFF ImageDescription), if any.
    public var pilatus: PilatusHeader?
    /// The MIME header of a CBF binary section, in file order (names as written).
    public var mime: [(String, String)] = []
    /// TIFF: the number of pages (directories) in the file; the page read.
    public var pages: Int?
    public var page: Int?
    /// TIFF: the ImageDescription when it is not a Pilatus header.
    public var description: String?

    public init(format: String, compression: String, decoder: String) {
        self.format = format
        self.compression = compression
        self.decoder = decoder
    }
}

/// One detector frame: the pixels (slow x fast, C order) and the header.
public struct Frame: Sendable {
    public let array: NDArray
    public var header: FrameHeader
    public init(array: NDArray, header: FrameHeader) {
        self.array = array
        self.header = header
    }
}

/// Reads frames from CBF (mini-CBF and full imgCIF) and TIFF files, by content (not by
/// file name extension).
public enum FrameReader {
    public enum Decoder: String, Sendable, CaseIterable {
        /// The native byte-offset reader for mini-CBF; cbflib for everything else.
        case auto
        /// Only the native reader (an error if the file needs cbflib).
        case native
        /// Always cbflib (for CBF files).
        case cbflib
    }

    public struct Options: Sendable {
        /// Check a CBF's Content-MD5 against its binary data (off by default: it costs
        /// several times the decoding).
        public var checkMD5 = false
        public var decoder: Decoder = .auto
        /// TIFF: the page (0-based), or nil for all pages stacked as (pages, rows, columns).
        public var page: Int? = 0
        public init() {}
    }

    public enum Format: String, Sendable { case cbf, tiff }

    /// The format of a file's first bytes, or nil.
    public static func format(of head: UnsafeRawBufferPointer) -> Format? {
        let b = Array(head.prefix(8))
        if b.count >= 4 && (b[0..<4] == [0x49, 0x49, 0x2A, 0x00] || b[0..<4] == [0x4D, 0x4D, 0x00, 0x2A]
                           || b[0..<4] == [0x49, 0x49, 0x2B, 0x00] || b[0..<4] == [0x4D, 0x4D, 0x00, 0x2B]) {
            return .tiff
        }
        if b.starts(with: Array("###CBF".utf8)) { return .cbf }
        let window = UnsafeRawBufferPointer(rebasing: head.prefix(1 << 16))
        if MiniCBF.find(Array("--CIF-BINARY-FORMAT-SECTION--".utf8), in: window, from: 0) != nil
            || MiniCBF.find(Array("_array_data.".utf8), in: window, from: 0) != nil {
            return .cbf
        }
        return nil
    }

    /// Reads one frame (TIFF: one page, or all pages with `options.page = nil`).
    public static func read(_ path: String, options: Options = Options()) throws -> Frame {
        let fmt = try sniff(path)
        switch fmt {
        case .cbf: return try CBFReader.read(path, options: options)
        case .tiff: return try TIFFReader.read(path, page: options.page)
        }
    }

    /// The header alone, without decoding the pixels.
    public static func readHeader(_ path: String) throws -> FrameHeader {
        switch try sniff(path) {
        case .cbf: return try CBFReader.readHeader(path)
        case .tiff: return try TIFFReader.readHeader(path)
        }
    }

    static func sniff(_ path: String) throws -> Format {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DetectorError.file(path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { throw DetectorError.file(path, "is a directory") }
        var head = [UInt8](repeating: 0, count: 1 << 16)
        let n = head.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { throw DetectorError.file(path, "read error: \(String(cString: strerror(errno)))") }
        if n == 0 { throw DetectorError.file(path, "empty file (not a CBF or TIFF frame)") }
        return try head.withUnsafeBytes { buf in
            let got = UnsafeRawBufferPointer(rebasing: buf.prefix(n))
            guard let f = format(of: got) else {
                throw DetectorError.file(path, "not a CBF or TIFF file (it starts with \(printable(got.prefix(16))))")
            }
            return f
        }
    }

    static func printable(_ bytes: Slice<UnsafeRawBufferPointer>) -> String {
        let text = bytes.map { $0 >= 32 && $0 < 127 ? String(UnicodeScalar($0)) : "." }.joined()
        return "\"\(text)\""
    }
}
