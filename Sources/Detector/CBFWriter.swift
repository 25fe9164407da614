#if canImport(Glibc)
import Glibc
#endif
import NDArray

/// Writes mini-CBF files as Pilatus detectors do: the header lines in
/// `_array_data.header_contents`, one byte-offset binary section with its MIME header
/// (dimensions, element type, Content-MD5) and 4095 bytes of padding. The file is written
/// under a temporary name and renamed, so a reader never sees half a frame.
public enum CBFWriter {
    public static func write(_ path: String, _ array: NDArray, header: String? = nil,
                             convention: String = "PILATUS_1.2") throws {
        guard array.ndim == 2 || array.ndim == 3 else {
            throw DetectorError.file(path, "a CBF frame must be 2-D (or 3-D), got shape \(NDArray.describe(array.shape))")
        }
        guard array.dtype.isInteger, let elementType = MiniCBF.elementType(array.dtype) else {
            throw DetectorError.file(path, "byte-offset CBF holds integers, got \(array.dtype.rawValue)")
        }
        let a = array.isContiguous ? array : try CBFReader.wrap(path) { try array.contiguous() }
        let count = a.count
        let data: [UInt8]
        switch a.dtype {
        case .int8: data = ByteOffset.encode(UnsafeBufferPointer(start: a.base(Int8.self), count: count))
        case .uint8: data = ByteOffset.encode(UnsafeBufferPointer(start: a.base(UInt8.self), count: count))
        case .int16: data = ByteOffset.encode(UnsafeBufferPointer(start: a.base(Int16.self), count: count))
        case .uint16: data = ByteOffset.encode(UnsafeBufferPointer(start: a.base(UInt16.self), count: count))
        case .int32: data = ByteOffset.encode(UnsafeBufferPointer(start: a.base(Int32.self), count: count))
        case .uint32: data = ByteOffset.encode(UnsafeBufferPointer(start: a.base(UInt32.self), count: count))
        case .int64: data = ByteOffset.encode(UnsafeBufferPointer(start: a.base(Int64.self), count: count))
        case .uint64: data = ByteOffset.encode(UnsafeBufferPointer(start: a.base(UInt64.self), count: count))
        default: throw DetectorError.file(path, "byte-offset CBF holds integers, got \(a.dtype.rawValue)")
        }
        let md5 = data.withUnsafeBytes { MD5.base64Digest($0) }
        let name = path.split(separator: "/").last.map { String($0) } ?? "image"
        let block = name.split(separator: ".").first.map(String.init) ?? "image"
        var text = "###CBF: VERSION 1.5, CBFlib v0.7.8 - PILATUS detectors\r\n\r\ndata_\(block)\r\n\r\n"
        text += "_array_data.header_convention \"\(convention)\"\r\n_array_data.header_contents\r\n;\r\n"
        for line in (header ?? "").split(whereSeparator: { $0.isNewline }) { text += line + "\r\n" }
        text += ";\r\n\r\n_array_data.data\r\n;\r\n--CIF-BINARY-FORMAT-SECTION--\r\n"
        text += "Content-Type: application/octet-stream;\r\n     conversions=\"x-CBF_BYTE_OFFSET\"\r\n"
        text += "Content-Transfer-Encoding: BINARY\r\nX-Binary-Size: \(data.count)\r\nX-Binary-ID: 1\r\n"
        text += "X-Binary-Element-Type: \"\(elementType)\"\r\nX-Binary-Element-Byte-Order: LITTLE_ENDIAN\r\n"
        text += "Content-MD5: \(md5)\r\nX-Binary-Number-of-Elements: \(count)\r\n"
        text += "X-Binary-Size-Fastest-Dimension: \(a.shape[a.ndim - 1])\r\n"
        text += "X-Binary-Size-Second-Dimension: \(a.shape[a.ndim - 2])\r\n"
        if a.ndim == 3 { text += "X-Binary-Size-Third-Dimension: \(a.shape[0])\r\n" }
        text += "X-Binary-Size-Padding: 4095\r\n\r\n"
        var bytes = Array(text.utf8)
        bytes.reserveCapacity(bytes.count + data.count + 4200)
        bytes += MiniCBF.binaryMarker
        bytes += data
        bytes += [UInt8](repeating: 0, count: 4095)
        bytes += Array("\r\n--CIF-BINARY-FORMAT-SECTION----\r\n;\r\n\r\n".utf8)
        try writeAtomically(path, bytes)
    }

    /// Writes `bytes` to `path.tmp-PID` and renames it to `path`.
    static func writeAtomically(_ path: String, _ bytes: [UInt8]) throws {
        let tmp = "\(path).tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw DetectorError.file(path, "cannot create: \(String(cString: strerror(errno)))") }
        var done = 0
        let ok = bytes.withUnsafeBytes { b -> Bool in
            while done < b.count {
                let n = Glibc.write(fd, b.baseAddress! + done, b.count - done)
                if n < 0 { if errno == EINTR { continue }; return false }
                done += n
            }
            return true
        }
        let why = String(cString: strerror(errno))
        close(fd)
        guard ok else { unlink(tmp); throw DetectorError.file(path, "write error: \(why)") }
        guard rename(tmp, path) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(tmp)
            throw DetectorError.file(path, "cannot rename the written file into place: \(why)")
        }
    }
}
