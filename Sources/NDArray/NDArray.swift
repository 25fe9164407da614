#if canImport(Glibc)
import Glibc
#endif

/// Errors of the array engine; every message shows the shapes or values involved.
public struct ArrayError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The memory behind one or more arrays (64-byte aligned; large blocks 2 MB aligned).
public final class Storage: @unchecked Sendable {
    public let bytes: UnsafeMutableRawPointer
    public let byteCount: Int
    /// The size of the block behind `bytes` (large blocks are whole 2 MB pages, or a
    /// cached block a little larger than asked for).
    private let blockSize: Int
    /// The budget this storage is charged to (sandboxed evaluation), if any.
    private let budget: ArrayMemoryBudget?

    /// `zeroed: false` leaves the bytes as they come (for outputs every element of which
    /// is written next: one pass over new memory instead of two).
    public init(byteCount: Int, zeroed: Bool = true) throws {
        self.byteCount = byteCount
        budget = ArrayMemoryBudget.current
        try budget?.charge(byteCount)
        if let (p, size) = BlockCache.shared.take(byteCount) {
            bytes = p
            blockSize = size
        } else {
            var p: UnsafeMutableRawPointer?
            // Large arrays are 2 MB aligned and asked to use huge pages (as NumPy does):
            // a new 80 MB array then faults 40 pages in instead of 20,000. Their size is
            // rounded up to whole huge pages, and that of a smaller cached block to 256 KB,
            // so that a cached block serves the next array of about the same size.
            let huge = byteCount >= BlockCache.hugeMinimum
            let size = huge ? (byteCount + (2 << 20) - 1) & ~((2 << 20) - 1)
                : byteCount >= BlockCache.minimum ? (byteCount + (256 << 10) - 1) & ~((256 << 10) - 1) : max(byteCount, 64)
            guard posix_memalign(&p, huge ? 2 << 20 : 64, size) == 0, let p else {
                budget?.release(byteCount)
                throw ArrayError("cannot allocate \(byteCount) bytes for an array")
            }
            if huge { _ = madvise(p, size, 14 /* MADV_HUGEPAGE */) }
            bytes = p
            blockSize = size
        }
        if zeroed { Storage.zero(bytes, max(byteCount, 64)) }
    }

    /// Zeroes a block, a large one on every core (pieces of at least 4 MB): the first
    /// touch of a fresh page, where the kernel zeroes it, is what costs, and on a virtual
    /// machine a page the host took back costs more (an event histogram of 4 banks of
    /// 16384 pixels x 200 bins is 105 MB of zeros).
    static func zero(_ p: UnsafeMutableRawPointer, _ n: Int) {
        let parts = min(ProcessInfoLite.activeProcessorCount, n >> 22)
        if parts <= 1 { memset(p, 0, n); return }
        nonisolated(unsafe) let base = p
        parallel(parts) { k in
            let r = partition(n, parts, k)
            memset(base + r.lowerBound, 0, r.count)
        }
    }

    private var owned = true

    /// Gives the block to C code that will free() it (HDF5 filter functions consume their
    /// input buffer): the storage no longer frees it, and no array over it may be read
    /// afterwards. The block comes from posix_memalign, so free() is its right release.
    public func relinquishBytes() -> UnsafeMutableRawPointer {
        owned = false
        return bytes
    }

    deinit {
        budget?.release(byteCount)
        if owned && !BlockCache.shared.keep(bytes, blockSize) { free(bytes) }
    }
}

/// Keeps recently freed large blocks for the next arrays of about the same size, as
/// PyTorch's caching allocator does: frame-by-frame work allocates the same shapes over
/// and over, and a fresh block costs page faults plus the kernel zeroing every page (on
/// a virtual machine the host's faults too). A block serves an array of at least half its
/// size: the macro runner's blocks of 1 to 5 Pilatus 2M frames (10-50 MB), their copies
/// and results came in sizes the cache did not hold when it matched sizes exactly in 8
/// blocks and 512 MB, and zeroing fresh pages took 42-61% of the runner's CPU at
/// 100 frames/s.
final class BlockCache: @unchecked Sendable {
    static let shared = BlockCache()
    /// Only blocks of 1 MB and more: the mask of a Pilatus 2M frame (`frame:ge(limit)`,
    /// 2.5 MB) was fresh memory at every frame in a thread's malloc arena, and zeroing its
    /// new pages took 12% of the whole machine in the live scenario of 100 frames/s.
    static let minimum = 1 << 20
    /// Blocks of 4 MB and more are whole huge pages.
    static let hugeMinimum = 4 << 20
    /// At most this much kept (1 GB, or a sixteenth of the machine's memory if less), in
    /// at most 64 blocks of at most a quarter of it each.
    static let capacity: Int = {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        let ram = pages > 0 && pageSize > 0 ? Int(pages) * Int(pageSize) : 16 << 30
        return max(256 << 20, min(1 << 30, ram / 16))
    }()
    static let slots = 64

    private var blocks: [(size: Int, pointer: UnsafeMutableRawPointer)] = []
    private var total = 0
    private var lock = pthread_mutex_t()

    init() { pthread_mutex_init(&lock, nil) }

    /// The smallest kept block that holds `size` bytes without wasting more than half.
    func take(_ size: Int) -> (UnsafeMutableRawPointer, Int)? {
        guard size >= BlockCache.minimum else { return nil }
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        var best: Int? = nil
        for (i, b) in blocks.enumerated() where b.size >= size && b.size / 2 <= size {
            if best == nil || b.size < blocks[best!].size { best = i }
        }
        guard let i = best else { return nil }
        let b = blocks.remove(at: i)
        total -= b.size
        return (b.pointer, b.size)
    }

    func keep(_ p: UnsafeMutableRawPointer, _ size: Int) -> Bool {
        guard size >= BlockCache.minimum, size <= BlockCache.capacity / 4 else { return false }
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        while !blocks.isEmpty && (total + size > BlockCache.capacity || blocks.count >= BlockCache.slots) {
            let old = blocks.removeFirst()
            total -= old.size
            free(old.pointer)
        }
        blocks.append((size, p))
        total += size
        return true
    }
}

/// An N-dimensional array: shape, strides and offset (in elements) over shared storage,
/// as torch7's TH and NumPy. Slicing, transposing and most reshapes make views that share
/// the storage; operations write new arrays.
public struct NDArray: @unchecked Sendable {
    public let dtype: DType
    public let shape: [Int]
    /// Steps between neighbours along each axis, in elements (0 = broadcast).
    public let strides: [Int]
    /// Index of element [0, 0, ...] in the storage, in elements.
    public let offset: Int
    public let storage: Storage

    public init(dtype: DType, shape: [Int], strides: [Int], offset: Int, storage: Storage) {
        self.dtype = dtype
        self.shape = shape
        self.strides = strides
        self.offset = offset
        self.storage = storage
    }

    /// A new contiguous (C order) array of zeros.
    public init(zeros shape: [Int], dtype: DType) throws {
        try self.init(shape: shape, dtype: dtype, zeroed: true)
    }

    /// A new contiguous array whose every element the caller writes next.
    public init(uninitialized shape: [Int], dtype: DType) throws {
        try self.init(shape: shape, dtype: dtype, zeroed: false)
    }

    private init(shape: [Int], dtype: DType, zeroed: Bool) throws {
        for n in shape where n < 0 {
            throw ArrayError("negative dimensions are not allowed: shape \(NDArray.describe(shape))")
        }
        let count = shape.reduce(1, *)
        let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.itemSize)
        if overflow { throw ArrayError("array of shape \(NDArray.describe(shape)) is too large") }
        self.init(dtype: dtype, shape: shape, strides: NDArray.contiguousStrides(shape), offset: 0,
                  storage: try Storage(byteCount: bytes, zeroed: zeroed))
    }

    public var ndim: Int { shape.count }
    public var count: Int { shape.reduce(1, *) }
    public var nbytes: Int { count * dtype.itemSize }

    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var step = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[axis] = step
            step *= max(shape[axis], 1)
        }
        return strides
    }

    /// Whether the elements lie in C order without gaps (the fast paths need this).
    public var isContiguous: Bool {
        var step = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) where shape[axis] != 1 {
            if strides[axis] != step { return false }
            step *= shape[axis]
        }
        return true
    }

    /// "(3, 512, 512)", as NumPy prints shapes.
    public static func describe(_ shape: [Int]) -> String {
        shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    }

    /// A typed pointer to element [0, 0, ...].
    @inline(__always)
    public func base<T: NDScalar>(_: T.Type) -> UnsafeMutablePointer<T> {
        storage.bytes.assumingMemoryBound(to: T.self) + offset
    }

    // MARK: elements

    /// The storage index of a multi-index (already checked).
    @inline(__always)
    func elementOffset(_ index: [Int]) -> Int {
        var o = offset
        for (i, s) in zip(index, strides) { o += i * s }
        return o
    }

    /// One element as a Double (bools 0/1); the index is checked, negative counts from the end.
    public func value(at index: [Int]) throws -> Double {
        let o = try checkedOffset(index)
        return dtype.dispatch(ReadDouble(storage: storage, offset: o))
    }

    /// One element as an Int64, exact for integer dtypes.
    public func integer(at index: [Int]) throws -> Int64 {
        let o = try checkedOffset(index)
        return dtype.dispatch(ReadInt(storage: storage, offset: o))
    }

    /// Sets one element, converting as NumPy's assignment does.
    public func setValue(_ v: Double, at index: [Int]) throws {
        let o = try checkedOffset(index)
        dtype.dispatch(WriteDouble(storage: storage, offset: o, value: v))
    }

    func checkedOffset(_ index: [Int]) throws -> Int {
        guard index.count == shape.count else {
            throw ArrayError("\(index.count) indices for an array of \(shape.count) dimensions, shape \(NDArray.describe(shape))")
        }
        var o = offset
        for axis in 0..<shape.count {
            var i = index[axis]
            if i < 0 { i += shape[axis] }
            guard i >= 0, i < shape[axis] else {
                throw ArrayError("index \(index[axis]) is out of bounds for axis \(axis) with size \(shape[axis])")
            }
            o += i * strides[axis]
        }
        return o
    }
}

private struct ReadDouble: DTypeVisitor {
    let storage: Storage, offset: Int
    func visit<T: NDScalar>(_: T.Type) -> Double {
        storage.bytes.assumingMemoryBound(to: T.self)[offset].asDouble
    }
}

private struct ReadInt: DTypeVisitor {
    let storage: Storage, offset: Int
    func visit<T: NDScalar>(_: T.Type) -> Int64 {
        storage.bytes.assumingMemoryBound(to: T.self)[offset].asInt64
    }
}

private struct WriteDouble: DTypeVisitor {
    let storage: Storage, offset: Int, value: Double
    func visit<T: NDScalar>(_: T.Type) {
        storage.bytes.assumingMemoryBound(to: T.self)[offset] = T(fromDouble: value)
    }
}

extension NDArray {
    /// The same elements with another shape, as a view (contiguous arrays only; one
    /// dimension may be -1). Non-contiguous arrays need a copy first.
    public func reshapedView(_ newShape: [Int]) throws -> NDArray {
        var target = newShape
        let unknown = target.indices.filter { target[$0] == -1 }
        guard unknown.count <= 1 else { throw ArrayError("can only specify one unknown dimension in reshape \(NDArray.describe(newShape))") }
        let known = target.filter { $0 != -1 }.reduce(1, *)
        if let u = unknown.first {
            guard known > 0, count % known == 0 else {
                throw ArrayError("cannot reshape array of size \(count) into shape \(NDArray.describe(newShape))")
            }
            target[u] = count / known
        }
        guard target.reduce(1, *) == count, !target.contains(where: { $0 < 0 }) else {
            throw ArrayError("cannot reshape array of size \(count) into shape \(NDArray.describe(newShape))")
        }
        guard isContiguous else { throw ArrayError("reshape of a non-contiguous view needs a copy") }
        return NDArray(dtype: dtype, shape: target, strides: NDArray.contiguousStrides(target), offset: offset, storage: storage)
    }
}
