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
        let native = plan.filter?.isBitshuffleLZ4(elementSize: plan.elementSize) == true
        for k in 0..<count {
            var offset = [hsize_t](repeating: 0, count: shape.count)
            offset[0] = hsize_t((first + k) * plan.rows)
            if native {
                // the native decoder only reads the stored bytes, so they go into an array
                // block (reused from chunk to chunk) rather than a malloc'd one: 10 MB
                // mallocs on reader threads made glibc create and drop whole arena heaps,
                // and the fresh pages cost more than the decoding (the macro runner at
                // 100 frames/s: 60 new heaps in 5 s)
                let stored = try arr { try Storage(byteCount: max(sizes[k], plan.chunkBytes), zeroed: false) }
                var mask: UInt32 = 0
                guard h.pointee.H5Dread_chunk(id, 0, &offset, &mask, stored.bytes) >= 0 else {  // 0: H5P_DEFAULT
                    throw fail("cannot read the chunk at row \(offset[0]): \(H5.takeError())")
                }
                if mask & 1 != 0 {  // stored without the filter (HDF5 does that when it fails)
                    guard sizes[k] == plan.chunkBytes else {
                        throw fail("the unfiltered chunk at row \(offset[0]) holds \(sizes[k]) bytes, \(plan.chunkBytes) expected: a damaged file?")
                    }
                    memcpy(out + k * plan.chunkBytes, stored.bytes, sizes[k])
                    continue
                }
                let produced = nx_bslz4_decode(stored.bytes, sizes[k], out + k * plan.chunkBytes, plan.chunkBytes, plan.elementSize)
                guard produced == plan.chunkBytes else {
                    throw fail("the bitshuffle+lz4 chunk at row \(offset[0]) (\(sizes[k]) bytes stored) does not decode to \(plan.chunkBytes) bytes: a damaged file?")
                }
                continue
            }
            // the filter function frees its input and hands back a new block: malloc's
            var buffer: UnsafeMutableRawPointer? = malloc(max(sizes[k], plan.chunkBytes))
            guard buffer != nil else { throw fail("cannot allocate \(sizes[k]) bytes for a chunk") }
            defer { free(buffer) }
            var mask: UInt32 = 0
            guard h.pointee.H5Dread_chunk(id, 0, &offset, &mask, buffer) >= 0 else {  // 0: H5P_DEFAULT
                throw fail("cannot read the chunk at row \(offset[0]): \(H5.takeError())")
            }
            var size = sizes[k]
            if let filter = plan.filter, mask & 1 == 0 {
                var capacity = size
                let produced = filter.parameters.withUnsafeBufferPointer { cd in
                    filter.function(0x0100 /* H5Z_FLAG_REVERSE */, cd.count, cd.baseAddress, size, &capacity, &buffer)
                }
                guard produced > 0 else {
                    _ = H5.takeError()
                    throw fail("the \(filter.name) filter could not decode the chunk at row \(offset[0]) (\(sizes[k]) bytes stored): a damaged file?")
                }
                size = produced
            }
            guard size == plan.chunkBytes else {
                throw fail("the chunk at row \(offset[0]) decodes to \(size) bytes, \(plan.chunkBytes) expected: a damaged file?")
            }
            memcpy(out + k * plan.chunkBytes, buffer!, size)
        }
        return true
    }

    private struct WholeChunkPlan {
        /// Rows of axis 0 per chunk, and the bytes of one decoded chunk.
        let rows: Int
        let chunkBytes: Int
        let elementSize: Int
        let filter: DecodingFilter?
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
        let filters = try storedFilters
        guard filters.count <= 1 else { return nil }
        guard let f = filters.first else {
            return WholeChunkPlan(rows: chunks[0], chunkBytes: chunkBytes, elementSize: elementSize, filter: nil)
        }
        guard let filter = DecodingFilter.plugin(f) else { return nil }
        return WholeChunkPlan(rows: chunks[0], chunkBytes: chunkBytes, elementSize: elementSize, filter: filter)
    }
}

/// A filter plugin's function with the parameters stored in the field.
private struct DecodingFilter {
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
