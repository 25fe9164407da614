import HTTPTypes
import NeXus
#if canImport(Glibc)
import Glibc
#endif

/// nxlua's extension of the value route: `GET /datasets/{id}/value?select=...&chunks=stored`
/// with `Accept: application/octet-stream`. When the selection is whole chunks of rows
/// that are all written, the answer is those chunks as the file stores them, with
/// Content-Type `application/x-nxlua-chunks`: per chunk its filter mask (UInt32) and
/// stored size (UInt64), little-endian, then its bytes; the header X-NXLua-Filters
/// names the filter pipeline with its parameters. Otherwise the answer is the usual
/// `application/octet-stream`, so a client asks on any server (HSDS and older nxlua
/// serve ignore the parameter) and reads the answer by its Content-Type.
public enum StoredChunksWire {
    public static let contentType = "application/x-nxlua-chunks"
    public static let filterHeaderName = "X-NXLua-Filters"
    static let filterHeader = HTTPField.Name(filterHeaderName)!

    /// "id:flags:cd,cd,...;..." in pipeline order; "none" without filters.
    public static func filterText(_ filters: [NXField.StoredFilter]) -> String {
        guard !filters.isEmpty else { return "none" }
        return filters.map { "\($0.id):\($0.flags):" + $0.parameters.map(String.init).joined(separator: ",") }.joined(separator: ";")
    }

    public static func filters(_ text: String) -> [NXField.StoredFilter]? {
        if text == "none" { return [] }
        var out: [NXField.StoredFilter] = []
        for item in text.split(separator: ";", omittingEmptySubsequences: false) {
            let parts = item.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 3, let id = Int32(parts[0]), let flags = UInt32(parts[1]) else { return nil }
            var cd: [UInt32] = []
            for v in parts[2].split(separator: ",") {
                guard let x = UInt32(v) else { return nil }
                cd.append(x)
            }
            out.append(NXField.StoredFilter(id: id, flags: flags, parameters: cd))
        }
        return out
    }

    static func body(_ s: NXStoredChunks) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.chunks.reduce(0) { $0 + 12 + $1.bytes.count })
        for c in s.chunks {
            withUnsafeBytes(of: c.filterMask.littleEndian) { out += $0 }
            withUnsafeBytes(of: UInt64(c.bytes.count).littleEndian) { out += $0 }
            out += c.bytes
        }
        return out
    }

    /// Decodes an answer's chunks into `destination`, which holds them decoded one after
    /// the other; nil when done, else what is wrong with the answer.
    public static func decode(_ body: UnsafeRawBufferPointer, filters: String?, elementSize: Int,
                              into destination: UnsafeMutableRawBufferPointer) -> String? {
        guard let text = filters, let pipeline = StoredChunksWire.filters(text) else {
            return "stored chunks without a readable \(filterHeaderName) header"
        }
        var at = 0, written = 0
        var codec: NXChunkCodec? = nil
        while at < body.count {
            guard body.count - at >= 12 else { return "stored chunks cut off after \(at) bytes" }
            let mask = UInt32(littleEndian: body.loadUnaligned(fromByteOffset: at, as: UInt32.self))
            let size = UInt64(littleEndian: body.loadUnaligned(fromByteOffset: at + 4, as: UInt64.self))
            at += 12
            guard size <= UInt64(body.count - at) else { return "a stored chunk of \(size) bytes, \(body.count - at) left in the answer" }
            let n = Int(size)
            // every chunk decodes to the same size: the destination's share of one chunk
            if codec == nil {
                let chunks = 1 + countChunks(body, from: at + n)
                guard chunks > 0, destination.count % chunks == 0 else { return "\(chunks) stored chunks do not fill \(destination.count) bytes" }
                codec = NXChunkCodec(filters: pipeline, elementSize: elementSize, chunkBytes: destination.count / chunks)
                guard codec != nil else { return "no decoder here for the filters \(text)" }
            }
            let c = codec!
            guard written + c.chunkBytes <= destination.count else { return "more stored chunks than the selection holds" }
            if let problem = c.decode(UnsafeRawBufferPointer(rebasing: body[at..<(at + n)]), mask: mask,
                                      into: destination.baseAddress! + written) {
                return "chunk \(written / c.chunkBytes) (\(n) bytes stored): \(problem)"
            }
            written += c.chunkBytes
            at += n
        }
        guard written == destination.count else { return "stored chunks make \(written) bytes, \(destination.count) expected" }
        return nil
    }

    /// The chunks from byte `at` on (their sizes read, nothing decoded); -1 if cut off.
    private static func countChunks(_ body: UnsafeRawBufferPointer, from start: Int) -> Int {
        var at = start, n = 0
        while at < body.count {
            guard body.count - at >= 12 else { return -1 }
            let size = UInt64(littleEndian: body.loadUnaligned(fromByteOffset: at + 4, as: UInt64.self))
            guard size <= UInt64(body.count - at - 12) else { return -1 }
            at += 12 + Int(size)
            n += 1
        }
        return n
    }
}

extension ValueSelection {
    /// The rows of axis 0 when the selection is a run of rows (step 1) and all of every
    /// other axis: what whole chunks of a stack can answer.
    static func wholeRows(_ sel: ValueSelection, dims: [Int]) -> Range<Int>? {
        guard sel.runs.count == dims.count, !dims.isEmpty, sel.runs.allSatisfy({ $0.count == 1 }) else { return nil }
        let r = sel.runs[0][0]
        guard r.count > 0, r.step == 1 || r.count == 1 else { return nil }
        for (runs, dim) in zip(sel.runs.dropFirst(), dims.dropFirst()) {
            let a = runs[0]
            guard a.start == 0, a.count == dim, a.step == 1 || dim == 1 else { return nil }
        }
        return r.start..<(r.start + r.count)
    }
}
