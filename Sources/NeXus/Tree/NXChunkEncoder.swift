import CBitshuffle
import CHDF5
import CHDF5Shims
import NDArray
#if canImport(Glibc)
import Glibc
#endif

/// One chunk's bytes as they are stored in the file (through the field's filters), ready
/// for `NXField.writeChunk`. Owns its bytes.
public final class NXEncodedChunk: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer
    /// Bit i set: filter i of the pipeline was skipped (allowed for optional filters).
    public let filterMask: UInt32
    private let release: () -> Void

    init(bytes: UnsafeRawBufferPointer, filterMask: UInt32, release: @escaping () -> Void) {
        self.bytes = bytes
        self.filterMask = filterMask
        self.release = release
    }

    deinit { release() }
}

/// Compresses whole chunks of one field exactly as HDF5 would on write, but on the
/// caller's thread: HDF5's thread-safe build runs every filter under its global lock, so
/// a stacker that let H5Dwrite compress would use one core. Worker threads encode with
/// this, and one thread stores the results with `NXField.writeChunk` (H5Dwrite_chunk).
///
/// The filter parameters are the ones stored in the field (after the filter's set_local
/// completed them) and the function is the plugin's own, so chunk formats and plugin
/// versions cannot drift apart. Pipelines of one filter (or none) are supported, which
/// is what `NXCompression` creates.
public struct NXChunkEncoder: @unchecked Sendable {
    enum Method {
        case raw
        case deflate(level: Int32)
        case plugin(function: H5Z_func_t, parameters: [UInt32], optional: Bool)
        /// Bitshuffle+LZ4 encoded here (CBitshuffle), byte for byte as the plugin would.
        case bitshuffleLZ4(elementSize: Int, block: Int)
    }
    let method: Method
    /// The bytes of one whole chunk before filtering.
    public let chunkBytes: Int
    /// The element type of the field.
    public let dtype: DType
    /// What the chunks are compressed with, for messages ("bitshuffle+lz4", "none").
    public let name: String
    /// True when the chunks are encoded here rather than by the filter plugin.
    public var isNative: Bool { if case .bitshuffleLZ4 = method { return true }; return false }

    /// The encoder for `field`'s chunk pipeline; throws when it has more than one filter
    /// or a filter whose plugin cannot be found. `native: false` always calls the plugin
    /// (tests compare the two).
    public init(for field: NXField, native: Bool = true) throws {
        guard let chunks = try field.chunks else { throw field.fail("not chunked: chunks cannot be written directly") }
        guard case .numeric(let dtype) = try field.elementType else {
            throw field.fail("only numeric fields can have chunks written directly")
        }
        chunkBytes = chunks.reduce(dtype.itemSize, *)
        self.dtype = dtype
        let filters = try field.storedFilters
        let names = try field.filters
        name = names.first ?? "none"
        guard filters.count <= 1 else {
            throw field.fail("chunk pipeline of \(filters.count) filters (\(names.joined(separator: ", "))): only one filter can be applied outside HDF5")
        }
        guard let f = filters.first else { method = .raw; return }
        if f.id == 1 {
            method = .deflate(level: Int32(f.parameters.first ?? 4))
            return
        }
        if native, let m = NXChunkEncoder.nativeBitshuffle(f.id, f.parameters, itemSize: dtype.itemSize) {
            method = m
            return
        }
        var why = [CChar](repeating: 0, count: 512)
        guard let fn = nxh5_plugin_filter(H5Z_filter_t(f.id), &why, why.count) else {
            throw field.fail("cannot compress chunks outside HDF5: \(String(nulTerminated: why))")
        }
        method = .plugin(function: fn, parameters: f.parameters, optional: f.isOptional)
    }

    /// Bitshuffle (32008) with LZ4 (cd_values[4] == 2) for the element size the field has:
    /// encoded natively when the CPU has AVX2 and liblz4 loads. Elsewhere the plugin's
    /// baseline-SSE2 code is as fast as our scalar fallback, so the plugin is used.
    static func nativeBitshuffle(_ id: Int32, _ cd: [UInt32], itemSize: Int) -> Method? {
        guard id == 32008, cd.count >= 5, cd[4] == 2, Int(cd[2]) == itemSize, cd[3] % 8 == 0,
              nx_bitshuffle_uses_avx2() == 1, nx_bslz4_available(nil, 0) == 0 else { return nil }
        return .bitshuffleLZ4(elementSize: itemSize, block: Int(cd[3]))
    }

    /// Encodes one whole chunk whose elements a producer writes, in C order, a block at a
    /// time: `fill(buffer, n)` writes the next n elements. With the native bitshuffle
    /// encoder each block is compressed while it is still in the CPU cache, so a decoded
    /// frame never exists whole (the stacker's decoder feeds this: it saves writing and
    /// reading back the whole frame through main memory). Other methods assemble the chunk
    /// first.
    public func encode(producing fill: (UnsafeMutableRawPointer, Int) throws -> Void) throws -> NXEncodedChunk {
        let size = dtype.itemSize
        let count = chunkBytes / size
        guard case .bitshuffleLZ4(_, let b) = method else {
            let a = try NDArray(uninitialized: [count], dtype: dtype)
            var done = 0
            while done < count {
                let n = min(1 << 16, count - done)
                try fill(a.storage.bytes + done * size, n)
                done += n
            }
            return try encode(consuming: a)
        }
        let block = b == 0 ? nx_bitshuffle_default_block(size) : b
        let bound = nx_bslz4_bound(count, size, block)
        guard bound > 0, let out = malloc(bound) else { throw NeXusError("cannot allocate \(bound) bytes for a compressed chunk") }
        // One block of input, then twice that for the transpose's scratch space.
        guard let buffers = malloc(3 * block * size) else {
            free(out)
            throw NeXusError("cannot allocate \(3 * block * size) bytes of encoder buffers")
        }
        defer { free(buffers) }
        var pos = 12
        var done = 0
        do {
            nx_bslz4_header(out, count, size, block)
            while done < count / 8 * 8 {
                let n = count - done >= block ? block : (count - done) / 8 * 8
                try fill(buffers, n)
                let w = nx_bslz4_block(buffers, n, size, out + pos, buffers + block * size)
                guard w > 0 else { throw NeXusError("the \(name) filter failed to compress a chunk (LZ4 error)") }
                pos += w
                done += n
            }
            if done < count {
                try fill(buffers, count - done)
                memcpy(out + pos, buffers, (count - done) * size)
                pos += (count - done) * size
            }
        } catch {
            free(out)
            throw error
        }
        return NXEncodedChunk(bytes: UnsafeRawBufferPointer(start: out, count: pos), filterMask: 0) { free(out) }
    }

    /// Encodes one whole chunk. The array must hold exactly one chunk's elements in C
    /// order; with a plugin filter its storage is consumed when it is a plain contiguous
    /// block (the filter frees its input, so the array must not be used afterwards).
    public func encode(consuming array: NDArray) throws -> NXEncodedChunk {
        let n = array.count * array.dtype.itemSize
        guard n == chunkBytes else {
            throw NeXusError("a chunk of \(chunkBytes) bytes expected, the array has \(n) (\(NDArray.describe(array.shape)) \(array.dtype.rawValue))")
        }
        let whole = array.isContiguous && array.offset == 0 && array.storage.byteCount == n
        switch method {
        case .raw:
            let c = whole ? array : try array.copy()
            let storage = c.storage
            return NXEncodedChunk(bytes: UnsafeRawBufferPointer(start: storage.bytes, count: n), filterMask: 0) {
                withExtendedLifetime(storage) {}
            }
        case .deflate(let level):
            let c = whole ? array : try array.copy()
            var size = nxh5_deflate_bound(n)
            guard let out = malloc(size) else { throw NeXusError("cannot allocate \(size) bytes for a compressed chunk") }
            guard nxh5_deflate(out, &size, c.storage.bytes, n, level) == 0 else {
                free(out)
                throw NeXusError("gzip compression of a chunk failed (is zlib installed?)")
            }
            return NXEncodedChunk(bytes: UnsafeRawBufferPointer(start: out, count: size), filterMask: 0) { free(out) }
        case .bitshuffleLZ4(let size, let block):
            let c = whole ? array : try array.copy()
            let count = n / size
            let bound = nx_bslz4_bound(count, size, block)
            guard bound > 0, let out = malloc(bound) else { throw NeXusError("cannot allocate \(bound) bytes for a compressed chunk") }
            let produced = withExtendedLifetime(c.storage) { nx_bslz4_encode(c.storage.bytes, count, size, block, out, bound) }
            guard produced > 0 else {
                free(out)
                throw NeXusError("the \(name) filter failed to compress a chunk (LZ4 error \(produced))")
            }
            return NXEncodedChunk(bytes: UnsafeRawBufferPointer(start: out, count: produced), filterMask: 0) { free(out) }
        case .plugin(let fn, let parameters, let optional):
            var input: UnsafeMutableRawPointer?
            if whole {
                input = array.storage.relinquishBytes()
            } else {
                let c = try array.copy()
                guard let p = malloc(n) else { throw NeXusError("cannot allocate \(n) bytes for a chunk") }
                memcpy(p, c.storage.bytes, n)
                input = p
            }
            var bufferSize = n
            let produced = parameters.withUnsafeBufferPointer { cd in
                fn(0, cd.count, cd.baseAddress, n, &bufferSize, &input)
            }
            guard produced > 0, let out = input else {
                if optional, let raw = input {
                    // HDF5 stores a chunk raw when an optional filter fails; so do we.
                    return NXEncodedChunk(bytes: UnsafeRawBufferPointer(start: raw, count: n), filterMask: 1) { free(raw) }
                }
                free(input)
                _ = H5.takeError()
                throw NeXusError("the \(name) filter failed to compress a chunk")
            }
            return NXEncodedChunk(bytes: UnsafeRawBufferPointer(start: out, count: produced), filterMask: 0) { free(out) }
        }
    }
}
