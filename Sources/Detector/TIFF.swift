#if canImport(Glibc)
import Glibc
#endif
import CTIFFShims
import NDArray

/// libtiff, opened with dlopen on first use (CTIFFShims explains why).
struct TIFFLibrary: @unchecked Sendable {
    let api: UnsafePointer<nxtiff_api>?
    let failure: String

    static let shared: TIFFLibrary = {
        var why = [CChar](repeating: 0, count: 512)
        let api = nxtiff_load(&why, why.count)
        return TIFFLibrary(api: api, failure: String(nulTerminated: why))
    }()

    static func load(_ path: String) throws -> UnsafePointer<nxtiff_api> {
        guard let api = shared.api else { throw DetectorError.file(path, shared.failure) }
        return api
    }

    /// libtiff's last error on this thread ("" if none).
    static func takeError() -> String {
        var buf = [CChar](repeating: 0, count: 512)
        let n = nxtiff_take_error(&buf, buf.count)
        return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

enum Tag {
    static let imageWidth: UInt32 = 256, imageLength: UInt32 = 257, bitsPerSample: UInt32 = 258
    static let compression: UInt32 = 259, photometric: UInt32 = 262, imageDescription: UInt32 = 270
    static let samplesPerPixel: UInt32 = 277, rowsPerStrip: UInt32 = 278, planarConfig: UInt32 = 284
    static let tileWidth: UInt32 = 322, tileLength: UInt32 = 323, sampleFormat: UInt32 = 339
}

/// Reads TIFF frames through libtiff: 8/16/32/64-bit integers and 32/64-bit floats, one
/// sample per pixel, strips or tiles, any compression libtiff decodes, multi-page.
public enum TIFFReader {
    /// One page (0-based), or all pages stacked as (pages, rows, columns) when `page` is nil.
    public static func read(_ path: String, page: Int? = 0) throws -> Frame {
        let api = try TIFFLibrary.load(path).pointee
        _ = TIFFLibrary.takeError()
        guard let tif = api.TIFFOpen(path, "r") else { throw failure(path, "cannot open as TIFF") }
        defer { api.TIFFClose(tif) }
        let pages = Int(api.TIFFNumberOfDirectories(tif))
        var header = try describe(tif, api, path)
        header.pages = pages
        if let page {
            guard page >= 0 && page < pages else {
                throw DetectorError.file(path, "page \(page) out of range: the file has \(pages) page\(pages == 1 ? "" : "s") (0-based)")
            }
            if page != 0 {
                guard api.TIFFSetDirectory(tif, UInt32(page)) == 1 else { throw failure(path, "cannot go to page \(page)") }
                header = try describe(tif, api, path)
                header.pages = pages
            }
            header.page = page
            let layout = try Layout(tif, api, path, page: page)
            let array = try CBFReader.wrap(path) { try NDArray(uninitialized: [layout.length, layout.width], dtype: layout.dtype) }
            try layout.read(into: array.storage.bytes, tif, api, path)
            return Frame(array: array, header: header)
        }
        // all pages: the same shape and type each
        let first = try Layout(tif, api, path, page: 0)
        let array = try CBFReader.wrap(path) { try NDArray(uninitialized: [pages, first.length, first.width], dtype: first.dtype) }
        let pageBytes = first.length * first.width * first.dtype.itemSize
        for p in 0..<pages {
            if p > 0 { guard api.TIFFSetDirectory(tif, UInt32(p)) == 1 else { throw failure(path, "cannot go to page \(p)") } }
            let layout = try Layout(tif, api, path, page: p)
            guard layout.width == first.width, layout.length == first.length, layout.dtype == first.dtype else {
                throw DetectorError.file(path, "page \(p) is \(layout.length) x \(layout.width) \(layout.dtype.rawValue), page 0 is \(first.length) x \(first.width) \(first.dtype.rawValue): read pages one by one")
            }
            try layout.read(into: array.storage.bytes + p * pageBytes, tif, api, path)
        }
        return Frame(array: array, header: header)
    }

    /// The header of page 0 without reading pixels.
    public static func readHeader(_ path: String) throws -> FrameHeader {
        let api = try TIFFLibrary.load(path).pointee
        _ = TIFFLibrary.takeError()
        guard let tif = api.TIFFOpen(path, "r") else { throw failure(path, "cannot open as TIFF") }
        defer { api.TIFFClose(tif) }
        var h = try describe(tif, api, path)
        h.pages = Int(api.TIFFNumberOfDirectories(tif))
        return h
    }

    static func failure(_ path: String, _ what: String) -> DetectorError {
        let why = TIFFLibrary.takeError()
        return DetectorError.file(path, why.isEmpty ? what : "\(what): \(why)")
    }

    static func describe(_ tif: OpaquePointer, _ api: nxtiff_api, _ path: String) throws -> FrameHeader {
        var compression: UInt16 = 1
        _ = nxtiff_get_uint16(tif, Tag.compression, &compression)
        var h = FrameHeader(format: "tiff", compression: compressionName(compression), decoder: "libtiff")
        var text: UnsafePointer<CChar>? = nil
        if nxtiff_get_string(tif, Tag.imageDescription, &text) == 1, let text {
            let s = String(cString: text)
            if s.contains("# ") || s.hasPrefix("#") {
                h.pilatus = PilatusHeader(parsing: s)
            } else {
                h.description = s
            }
        }
        return h
    }

    static func compressionName(_ c: UInt16) -> String {
        switch c {
        case 1: return "none"
        case 5: return "lzw"
        case 7: return "jpeg"
        case 8, 32946: return "deflate"
        case 32773: return "packbits"
        case 34925: return "lzma"
        case 50000: return "zstd"
        default: return "compression \(c)"
        }
    }

    /// The pixel layout of the current page.
    struct Layout {
        let width: Int, length: Int
        let dtype: DType
        let tiled: Bool
        let rowsPerStrip: Int
        let tileWidth: Int, tileLength: Int

        init(_ tif: OpaquePointer, _ api: nxtiff_api, _ path: String, page: Int) throws {
            var w: UInt32 = 0, l: UInt32 = 0, bps: UInt16 = 1, spp: UInt16 = 1, fmt: UInt16 = 1
            guard nxtiff_get_uint32(tif, Tag.imageWidth, &w) == 1, nxtiff_get_uint32(tif, Tag.imageLength, &l) == 1 else {
                throw TIFFReader.failure(path, "page \(page) has no image width or length")
            }
            _ = nxtiff_get_uint16(tif, Tag.bitsPerSample, &bps)
            _ = nxtiff_get_uint16(tif, Tag.samplesPerPixel, &spp)
            _ = nxtiff_get_uint16(tif, Tag.sampleFormat, &fmt)
            guard spp == 1 else {
                throw DetectorError.file(path, "page \(page) has \(spp) samples per pixel: only single-channel (grey) images are detector frames")
            }
            switch (fmt, bps) {
            case (1, 8): dtype = .uint8
            case (1, 16): dtype = .uint16
            case (1, 32): dtype = .uint32
            case (1, 64): dtype = .uint64
            case (2, 8): dtype = .int8
            case (2, 16): dtype = .int16
            case (2, 32): dtype = .int32
            case (2, 64): dtype = .int64
            case (3, 32): dtype = .float32
            case (3, 64): dtype = .float64
            default:
                let name = [1: "unsigned integer", 2: "signed integer", 3: "IEEE float", 4: "untyped",
                            5: "complex integer", 6: "complex float"][Int(fmt)] ?? "sample format \(fmt)"
                throw DetectorError.file(path, "unsupported pixel type on page \(page): \(bps)-bit \(name) (supported: 8/16/32/64-bit integers, 32/64-bit floats)")
            }
            width = Int(w)
            length = Int(l)
            guard width > 0, length > 0, width * length <= Int(Int32.max) else {
                throw DetectorError.file(path, "bad image size \(width) x \(length) on page \(page)")
            }
            tiled = api.TIFFIsTiled(tif) != 0
            var tw: UInt32 = 0, tl: UInt32 = 0, rps: UInt32 = 0
            if tiled {
                guard nxtiff_get_uint32(tif, Tag.tileWidth, &tw) == 1, nxtiff_get_uint32(tif, Tag.tileLength, &tl) == 1,
                      tw > 0, tl > 0 else {
                    throw TIFFReader.failure(path, "page \(page) is tiled but gives no tile size")
                }
            }
            if nxtiff_get_uint32(tif, Tag.rowsPerStrip, &rps) != 1 || rps == 0 || Int(rps) > length { rps = UInt32(length) }
            tileWidth = Int(tw)
            tileLength = Int(tl)
            rowsPerStrip = Int(rps)
        }

        func read(into dst: UnsafeMutableRawPointer, _ tif: OpaquePointer, _ api: nxtiff_api, _ path: String) throws {
            let item = dtype.itemSize, rowBytes = width * item
            if !tiled {
                let strips = (length + rowsPerStrip - 1) / rowsPerStrip
                for s in 0..<strips {
                    let rows = min(rowsPerStrip, length - s * rowsPerStrip)
                    let want = rows * rowBytes
                    let got = Int(api.TIFFReadEncodedStrip(tif, UInt32(s), dst + s * rowsPerStrip * rowBytes, tmsize_t(want)))
                    guard got == want else {
                        throw TIFFReader.failure(path, got < 0 ? "cannot read strip \(s) of \(strips)"
                                                              : "strip \(s) of \(strips) holds \(got) of \(want) bytes (truncated?)")
                    }
                }
                return
            }
            let tileBytes = Int(api.TIFFTileSize(tif))
            guard tileBytes >= tileWidth * tileLength * item else {
                throw TIFFReader.failure(path, "tile size \(tileBytes) bytes is too small for \(tileWidth) x \(tileLength) pixels")
            }
            let tile = UnsafeMutableRawPointer.allocate(byteCount: tileBytes, alignment: 64)
            defer { tile.deallocate() }
            for ty in stride(from: 0, to: length, by: tileLength) {
                for tx in stride(from: 0, to: width, by: tileWidth) {
                    let index = api.TIFFComputeTile(tif, UInt32(tx), UInt32(ty), 0, 0)
                    let got = Int(api.TIFFReadEncodedTile(tif, index, tile, tmsize_t(tileBytes)))
                    guard got >= tileWidth * tileLength * item else {
                        throw TIFFReader.failure(path, "cannot read the tile at row \(ty), column \(tx)")
                    }
                    let rows = min(tileLength, length - ty), cols = min(tileWidth, width - tx)
                    for r in 0..<rows {
                        (dst + (ty + r) * rowBytes + tx * item).copyMemory(from: tile + r * tileWidth * item, byteCount: cols * item)
                    }
                }
            }
        }
    }
}

/// Writes TIFF frames through libtiff (uncompressed, one sample per pixel), with the
/// header in ImageDescription as Pilatus detectors do; a 3-D array becomes one page per
/// frame. Written under a temporary name and renamed into place.
public enum TIFFWriter {
    public struct Options: Sendable {
        /// Rows per strip (nil: the whole frame in one strip).
        public var rowsPerStrip: Int? = nil
        /// Tiles (rows, columns; multiples of 16) instead of strips.
        public var tile: (Int, Int)? = nil
        public init() {}
    }

    public static func write(_ path: String, _ array: NDArray, header: String? = nil, options: Options = .init()) throws {
        guard array.ndim == 2 || array.ndim == 3 else {
            throw DetectorError.file(path, "a TIFF frame must be 2-D (3-D: one page per frame), got shape \(NDArray.describe(array.shape))")
        }
        let (format, bits): (UInt16, UInt16)
        switch array.dtype {
        case .uint8, .uint16, .uint32, .uint64: format = 1; bits = UInt16(array.dtype.itemSize * 8)
        case .int8, .int16, .int32, .int64: format = 2; bits = UInt16(array.dtype.itemSize * 8)
        case .float32, .float64: format = 3; bits = UInt16(array.dtype.itemSize * 8)
        case .bool: throw DetectorError.file(path, "TIFF frames hold numbers, got bool")
        }
        if let (th, tw) = options.tile, th <= 0 || tw <= 0 || th % 16 != 0 || tw % 16 != 0 {
            throw DetectorError.file(path, "tile sizes must be positive multiples of 16, got \(th) x \(tw)")
        }
        let a = array.isContiguous ? array : try CBFReader.wrap(path) { try array.contiguous() }
        let api = try TIFFLibrary.load(path).pointee
        _ = TIFFLibrary.takeError()
        let tmp = "\(path).tmp-\(getpid())"
        guard let tif = api.TIFFOpen(tmp, "w") else { throw TIFFReader.failure(path, "cannot create") }
        var closed = false
        defer { if !closed { api.TIFFClose(tif); unlink(tmp) } }
        let pages = a.ndim == 3 ? a.shape[0] : 1
        let length = a.shape[a.ndim - 2], width = a.shape[a.ndim - 1], item = a.dtype.itemSize
        let rowBytes = width * item
        for p in 0..<pages {
            let base = a.storage.bytes + (a.offset + p * length * width) * item
            var ok = nxtiff_set_uint32(tif, Tag.imageWidth, UInt32(width)) == 1
            ok = ok && nxtiff_set_uint32(tif, Tag.imageLength, UInt32(length)) == 1
            ok = ok && nxtiff_set_uint16(tif, Tag.bitsPerSample, bits) == 1
            ok = ok && nxtiff_set_uint16(tif, Tag.sampleFormat, format) == 1
            ok = ok && nxtiff_set_uint16(tif, Tag.samplesPerPixel, 1) == 1
            ok = ok && nxtiff_set_uint16(tif, Tag.compression, 1) == 1
            ok = ok && nxtiff_set_uint16(tif, Tag.photometric, 1) == 1  // min-is-black
            ok = ok && nxtiff_set_uint16(tif, Tag.planarConfig, 1) == 1
            if let header, !header.isEmpty { ok = ok && nxtiff_set_string(tif, Tag.imageDescription, header) == 1 }
            if let (th, tw) = options.tile {
                ok = ok && nxtiff_set_uint32(tif, Tag.tileWidth, UInt32(tw)) == 1
                ok = ok && nxtiff_set_uint32(tif, Tag.tileLength, UInt32(th)) == 1
                guard ok else { throw TIFFReader.failure(path, "cannot set the TIFF fields") }
                let tile = UnsafeMutableRawPointer.allocate(byteCount: th * tw * item, alignment: 64)
                defer { tile.deallocate() }
                for ty in stride(from: 0, to: length, by: th) {
                    for tx in stride(from: 0, to: width, by: tw) {
                        memset(tile, 0, th * tw * item)
                        let rows = min(th, length - ty), cols = min(tw, width - tx)
                        for r in 0..<rows {
                            (tile + r * tw * item).copyMemory(from: base + (ty + r) * rowBytes + tx * item, byteCount: cols * item)
                        }
                        let index = api.TIFFComputeTile(tif, UInt32(tx), UInt32(ty), 0, 0)
                        guard api.TIFFWriteEncodedTile(tif, index, tile, tmsize_t(th * tw * item)) >= 0 else {
                            throw TIFFReader.failure(path, "cannot write a tile")
                        }
                    }
                }
            } else {
                let rps = min(max(options.rowsPerStrip ?? length, 1), length)
                ok = ok && nxtiff_set_uint32(tif, Tag.rowsPerStrip, UInt32(rps)) == 1
                guard ok else { throw TIFFReader.failure(path, "cannot set the TIFF fields") }
                for (s, row) in stride(from: 0, to: length, by: rps).enumerated() {
                    let rows = min(rps, length - row)
                    guard api.TIFFWriteEncodedStrip(tif, UInt32(s), base + row * rowBytes, tmsize_t(rows * rowBytes)) >= 0 else {
                        throw TIFFReader.failure(path, "cannot write strip \(s)")
                    }
                }
            }
            guard api.TIFFWriteDirectory(tif) == 1 else { throw TIFFReader.failure(path, "cannot write page \(p)") }
        }
        closed = true
        api.TIFFClose(tif)
        guard rename(tmp, path) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(tmp)
            throw DetectorError.file(path, "cannot rename the written file into place: \(why)")
        }
    }
}
