import CBitshuffle
import CHDF5
import CHDF5Shims
import NDArray
#if canImport(Glibc)
import Glibc
#endif

/// Whole chunks read with H5Dread_chunk and decoded on the calling thread, outside
/// HDF5's lock. The thread-safe build runs filters under its global lock: a Pilatus 2M
/// frame in bitshuffle+LZ4 held it for the ~8 ms of its decompression, and every other
/// HDF5 call of the process waited (`nxlua serve` answering clients behind an
/// evaluation summing a stack; macros reading the same frame one after the other). Read
/// this way the lock is held only while the stored bytes are copied out. The decoding
/// function is the filter plugin's own (as NXChunkEncoder's), so what comes out is what
/// H5Dread would have produced.
extension NXField {
    /// Rows `rows` of axis 0 and all of every other axis, when they are whole chunks that
    /// are all stored, in the machine's byte order, with no filter or one filter plugin:
    /// decoded into `out` (rows.count rows, C order) and true. false: this path does not
    /// apply, and nothing was written (the caller reads with H5Dread).
    func readWholeChunks(rows: Range<Int>, shape: [Int], fileType: hid_t, into out: UnsafeMutableRawPointer) throws -> Bool {
        guard let plan = try wholeChunkPlan(rows: rows, shape: shape, fileType: fileType) else { return false }
        let h = H5.api
        let id = try objectID()
        let first = rows.lowerBound / plan.rows
        let count = rows.count / plan.rows
        // the stored sizes first: a chunk never written (fill values) sends the whole read
        // to H5Dread before anything is decoded
        var sizes = [Int](repeating: 0, count: count)
        for k in 0..<count {
            var offset = [hsize_t](repeating: 0, count: shape.count)
            offset[0] = hsize_t((first + k) * plan.rows)
            var n: hsize_t = 0
            guard h.pointee.H5Dget_chunk_storage_size(id, &offset, &n) >= 0, n > 0 else {
                _ = H5.takeError()
                return false
            }
            sizes[k] = Int(n)
        }
        let codec = plan.codec
        for k in 0..<count {
            var offset = [hsize_t](repeating: 0, count: shape.count)
            offset[0] = hsize_t((first + k) * plan.rows)
            // the stored bytes go into an array block (reused from chunk to chunk) rather
            // than a malloc'd one: 10 MB mallocs on reader threads made glibc create and
            // drop whole arena heaps, and the fresh pages cost more than the decoding (the
            // macro runner at 100 frames/s: 60 new heaps in 5 s)
            let stored = try arr { try Storage(byteCount: max(sizes[k], plan.chunkBytes), zeroed: false) }
            var mask: UInt32 = 0
            guard h.pointee.H5Dread_chunk(id, 0, &offset, &mask, stored.bytes) >= 0 else {  // 0: H5P_DEFAULT
                throw fail("cannot read the chunk at row \(offset[0]): \(H5.takeError())")
            }
            if let problem = codec.decode(UnsafeRawBufferPointer(start: stored.bytes, count: sizes[k]), mask: mask,
                                          into: out + k * plan.chunkBytes) {
                throw fail("the chunk at row \(offset[0]) (\(sizes[k]) bytes stored): \(problem)")
            }
        }
        return true
    }

    private struct WholeChunkPlan {
        /// Rows of axis 0 per chunk, and the bytes of one decoded chunk.
        let rows: Int
        let chunkBytes: Int
        let codec: NXChunkCodec
    }

    private func wholeChunkPlan(rows: Range<Int>, shape: [Int], fileType: hid_t) throws -> WholeChunkPlan? {
        guard !shape.isEmpty, !rows.isEmpty, rows.upperBound <= shape[0],
              let chunks = try chunks, chunks.count == shape.count, chunks[0] > 0,
              rows.lowerBound % chunks[0] == 0, rows.count % chunks[0] == 0,
              chunks.indices.dropFirst().allSatisfy({ chunks[$0] == shape[$0] }) else { return nil }
        // the stored bytes are the memory's: numbers in the machine's byte order
        guard let mem = try? H5Raw.memoryType(fileType) else { return nil }
        switch mem.storage {
        case .integer, .float: break
        default: return nil
        }
        guard H5.api.pointee.H5Tequal(fileType, mem.id) > 0 else { return nil }
        let elementSize = H5.api.pointee.H5Tget_size(fileType)
        let chunkBytes = chunks.reduce(elementSize, *)
        guard let codec = NXChunkCodec(filters: try storedFilters, elementSize: elementSize, chunkBytes: chunkBytes) else { return nil }
        return WholeChunkPlan(rows: chunks[0], chunkBytes: chunkBytes, codec: codec)
    }

    /// Rows `rows` of axis 0 as the file stores them, still encoded, when they are whole
    /// chunks spanning every other axis, all written, of numbers in the machine's byte
    /// order with a filter pipeline NXChunkCodec decodes; else nil. What `nxlua serve`
    /// sends a client that decodes them itself: a Pilatus frame travels as its 1.3 MB of
    /// bitshuffle+LZ4 instead of 10 MB, and the server does not decode it.
    public func storedChunks(rows: Range<Int>) throws -> NXStoredChunks? {
        let h = H5.api
        let id = try objectID()
        let fileType = try H5Handle(checking: h.pointee.H5Dget_type(id), .datatype, fail("cannot read the type").message)
        let space = try H5Handle(checking: h.pointee.H5Dget_space(id), .dataspace, fail("cannot read the shape").message)
        let extent = H5Raw.dataspace(space.id)
        guard extent.kind == .simple, let plan = try wholeChunkPlan(rows: rows, shape: extent.dims, fileType: fileType.id) else { return nil }
        var chunks: [NXEncodedChunk] = []
        for row in stride(from: rows.lowerBound, to: rows.upperBound, by: plan.rows) {
            guard let c = try readChunk(at: [row] + extent.dims.dropFirst().map { _ in 0 }) else { return nil }  // fill values: not stored
            chunks.append(c)
        }
        return NXStoredChunks(filters: try storedFilters, rowsPerChunk: plan.rows, chunkBytes: plan.chunkBytes,
                              elementSize: plan.codec.elementSize, chunks: chunks)
    }
}

/// Whole chunks as stored, with what decodes them (see `NXField.storedChunks`).
public struct NXStoredChunks: Sendable {
    public let filters: [NXField.StoredFilter]
    public let rowsPerChunk: Int
    public let chunkBytes: Int
    public let elementSize: Int
    public let chunks: [NXEncodedChunk]
}

/// Decodes one stored chunk of a field whose pipeline is no filter or one filter plugin
/// (bitshuffle+LZ4 by nxlua's own decoder, others by the plugin's function, as H5Dread
/// would). The same code decodes a local file's chunks and the chunks `nxlua serve`
/// sends over HTTP.
public struct NXChunkCodec: @unchecked Sendable {  // immutable; plugin functions are reentrant
    fileprivate let filter: DecodingFilter?
    public let elementSize: Int
    /// The bytes of one decoded chunk.
    public let chunkBytes: Int

    /// nil when this process cannot decode the pipeline: more than one filter, one of
    /// HDF5's built-in filters (gzip, shuffle: no plugin function to call), a plugin not
    /// installed here.
    public init?(filters: [NXField.StoredFilter], elementSize: Int, chunkBytes: Int) {
        guard filters.count <= 1, elementSize > 0, chunkBytes > 0 else { return nil }
        if let f = filters.first {
            guard let d = DecodingFilter.plugin(f) else { return nil }
            filter = d
        } else {
            filter = nil
        }
        self.elementSize = elementSize
        self.chunkBytes = chunkBytes
    }

    /// Whether filters of these ids can be decoded here (a client asks for stored chunks
    /// only then; their parameters come with the chunks).
    public static func canDecode(filterIDs: [Int32]) -> Bool {
        filterIDs.count <= 1 && filterIDs.allSatisfy { $0 >= 256 && PluginFunctions.shared.function(for: $0) != nil }
    }

    /// Decodes `stored` (its filter mask as H5Dread_chunk gave it) into `out`, which
    /// holds `chunkBytes`; nil when done, else what went wrong.
    public func decode(_ stored: UnsafeRawBufferPointer, mask: UInt32, into out: UnsafeMutableRawPointer) -> String? {
        let size = stored.count
        guard let filter, mask & 1 == 0 else {
            // no filter, or stored without it (HDF5 does that when the filter fails)
            guard size == chunkBytes else { return "\(size) bytes unfiltered, \(chunkBytes) expected: a damaged file?" }
            if size > 0 { memcpy(out, stored.baseAddress!, size) }
            return nil
        }
        if filter.isBitshuffleLZ4(elementSize: elementSize) {
            let produced = nx_bslz4_decode(stored.baseAddress, size, out, chunkBytes, elementSize)
            return produced == chunkBytes ? nil : "bitshuffle+lz4 does not decode it to \(chunkBytes) bytes: a damaged file?"
        }
        // the filter function frees its input and hands back a new block: malloc's
        var buffer: UnsafeMutableRawPointer? = malloc(max(size, chunkBytes, 1))
        guard buffer != nil else { return "cannot allocate \(size) bytes for a chunk" }
        defer { free(buffer) }
        if size > 0 { memcpy(buffer!, stored.baseAddress!, size) }
        var capacity = max(size, chunkBytes, 1)
        let produced = filter.parameters.withUnsafeBufferPointer { cd in
            filter.function(0x0100 /* H5Z_FLAG_REVERSE */, cd.count, cd.baseAddress, size, &capacity, &buffer)
        }
        guard produced > 0 else {
            _ = H5.takeError()
            return "the \(filter.name) filter could not decode it: a damaged file?"
        }
        guard produced == chunkBytes else { return "it decodes to \(produced) bytes, \(chunkBytes) expected: a damaged file?" }
        memcpy(out, buffer!, produced)
        return nil
    }
}

/// A filter plugin's function with the parameters stored in the field.
fileprivate struct DecodingFilter {
    let function: H5Z_func_t
    let parameters: [UInt32]
    let name: String

    /// Bitshuffle with LZ4 (filter 32008: cd_values[2] the element size, cd_values[4] == 2)
    /// of the field's own element size, and liblz4 at hand: nx_bslz4_decode reads it.
    func isBitshuffleLZ4(elementSize: Int) -> Bool {
        name == "bitshuffle+lz4" && parameters.count >= 5 && parameters[4] == 2 && Int(parameters[2]) == elementSize
            && nx_bslz4_available(nil, 0) == 0
    }

    /// Plugins only (HDF5's built-in filters such as gzip have no plugin to call); each
    /// plugin is looked up once per process.
    static func plugin(_ f: NXField.StoredFilter) -> DecodingFilter? {
        guard f.id >= 256, let fn = PluginFunctions.shared.function(for: f.id) else { return nil }
        let names: [Int32: String] = [32000: "lzf", 32001: "blosc", 32004: "lz4", 32008: "bitshuffle+lz4"]
        return DecodingFilter(function: fn, parameters: f.parameters, name: names[f.id] ?? "filter \(f.id)")
    }
}

/// Filter plugin functions by filter id (nil remembered too: no plugin for that id).
private final class PluginFunctions: @unchecked Sendable {
    static let shared = PluginFunctions()
    private var lock = pthread_mutex_t()
    private var found: [Int32: H5Z_func_t?] = [:]

    init() { pthread_mutex_init(&lock, nil) }

    func function(for id: Int32) -> H5Z_func_t? {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if let f = found[id] { return f }
        var why = [CChar](repeating: 0, count: 256)
        let f = nxh5_plugin_filter(H5Z_filter_t(id), &why, why.count)
        found[id] = f
        return f
    }
}

extension NXField {
    /// Reads one chunk's bytes as stored (still through the filters, as `filterMask` says)
    /// with H5Dread_chunk: nothing is decoded, so a chunk can go to another file's field
    /// of the same chunk format with `writeChunk` as it is. nil when it was never written.
    public func readChunk(at offset: [Int]) throws -> NXEncodedChunk? {
        let size = try chunkStorageSize(at: offset)
        guard size > 0 else { return nil }
        var o = offset.map { hsize_t($0) }
        guard let buffer = malloc(size) else { throw fail("cannot allocate \(size) bytes for a chunk") }
        var mask: UInt32 = 0
        guard H5.api.pointee.H5Dread_chunk(try objectID(), 0, &o, &mask, buffer) >= 0 else {  // 0: H5P_DEFAULT
            free(buffer)
            throw fail("cannot read the chunk at \(NDArray.describe(offset)): \(H5.takeError())")
        }
        return NXEncodedChunk(bytes: UnsafeRawBufferPointer(start: buffer, count: size), filterMask: mask) { free(buffer) }
    }
}
