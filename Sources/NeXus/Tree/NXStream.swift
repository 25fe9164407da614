#if canImport(Glibc)
import Glibc
#endif
import CHDF5
import CHDF5Shims
import Dispatch
import NDArray

/// Out-of-core work on numeric fields: blocks of rows along the first axis read one after
/// another, the next block read by a second thread while the current one is reduced (the
/// library is a thread-safe build: its lock serialises the calls, and no HDF5 call is made
/// during the reduction), so memory stays at a few blocks whatever the field's size.
/// Written once for local and remote fields (NXReadable): each gives its row reader.
extension NXReadableField {
    /// Rows per block: whole chunks along the first axis, about `targetBytes` per block.
    public func blockRows(targetBytes: Int = 32 << 20) throws -> Int {
        let shape = try self.shape
        guard let rows = shape.first, rows > 0 else { return 1 }
        let rowBytes = max(1, shape.dropFirst().reduce(1, *) * (try numericType().itemSize))
        var n = max(1, targetBytes / rowBytes)
        if let c = try chunks?.first, c > 0 { n = max(c, n / c * c) }  // never split a chunk
        return min(n, rows)
    }

    /// The dtype of a numeric field; an error naming the field otherwise.
    public func numericType() throws -> DType {
        guard case .numeric(let d) = try elementType else {
            throw nodeError("a numeric field is needed here, this one holds \(try elementType.name)")
        }
        return d
    }

    /// Calls `body(first row, block)` for consecutive blocks of up to `rows` rows; the
    /// block is valid only during the call (two buffers are recycled).
    public func forEachBlock(rows: Int, _ body: (Int, NDArray) throws -> Void) throws {
        let blocks = try NXBlocks(self, rows: rows, reuse: true)
        while let (first, block) = try blocks.next() { try body(first, block) }
    }

    /// Reduces over `axes` (nil: all) by streaming blocks of rows; `progress(rows done,
    /// rows)` is called after each block and may throw to stop.
    /// `blockBytes`: the size of a block (two are in memory at once, plus the result).
    public func reduce(_ op: Reduction, axes: [Int]?, keepdims: Bool = false, blockBytes: Int = 64 << 20,
                       progress: ((Int, Int) throws -> Void)? = nil) throws -> NDArray {
        let shape = try self.shape
        if shape.isEmpty {
            guard case .array(let a) = try read(nil) else { throw nodeError("a numeric field is needed here") }
            return try arr { try a.reduce(op, axes: axes, keepdims: keepdims) }
        }
        _ = try numericType()
        let normalized = try arr { try NDArray.normalizedAxes(axes, ndim: shape.count) }
        let keptShape = shape.enumerated().map { normalized.contains($0.offset) ? 1 : $0.element }
        let finalShape = shape.enumerated().filter { !normalized.contains($0.offset) }.map(\.element)
        if [.min, .max, .nanmin, .nanmax].contains(op), normalized.contains(where: { shape[$0] == 0 }) {
            throw nodeError("zero-size field to reduction operation \(op.rawValue) which has no identity (shape \(NDArray.describe(shape)))")
        }
        var result: NDArray?
        // 64 MB blocks: a block folds into the accumulator in one pass, so fewer, bigger
        // blocks cut its traffic (3 frames of 10 MB: 6.8 GB/s; 6 frames: 12.6 GB/s)
        let rows = try blockRows(targetBytes: blockBytes)
        try forEachBlock(rows: rows) { first, block in
            if normalized.contains(0) {
                // the first axis is reduced: every block folds into one running result
                if let acc = result {
                    try arr { try block.reduce(op, axes: normalized, accumulatingInto: acc) }
                } else {
                    result = try arr { try block.reduce(op, axes: normalized, keepdims: true) }
                }
            } else {
                // the first axis is kept: each block gives its own rows of the result
                let part = try arr { try block.reduce(op, axes: normalized, keepdims: true) }
                if result == nil { result = try arr { try NDArray(zeros: keptShape, dtype: part.dtype) } }
                let rowsOut = try arr { try result!.view(Selection([.range(.int(first), .int(first + block.shape[0]), 1)])) }
                try arr { try part.copy(into: rowsOut) }
            }
            try progress?(first + block.shape[0], shape[0])
        }
        let r: NDArray
        if let result {
            r = result
        } else {  // no rows: the reduction of an empty field
            r = try arr { try NDArray(zeros: shape, dtype: try numericType()).reduce(op, axes: normalized, keepdims: true) }
        }
        return keepdims ? r : try arr { try r.reshapedView(finalShape) }
    }

    /// The mean over `axes` by streaming (float64; float32 stays float32, as NumPy).
    public func mean(axes: [Int]?, keepdims: Bool = false, progress: ((Int, Int) throws -> Void)? = nil) throws -> NDArray {
        let s = try reduce(.sum, axes: axes, keepdims: keepdims, progress: progress)
        let shape = try self.shape
        let n = try arr { try NDArray.normalizedAxes(axes, ndim: shape.count) }.reduce(1) { $0 * shape[$1] }
        let dtype: DType = try numericType() == .float32 ? .float32 : .float64
        return try arr { try NDArray.binary(.div, .array(try s.copy(as: dtype)), .float(Double(n))) }
    }

    private func arr<T>(_ body: () throws -> T) throws -> T { try arrayWork(body) }
}

extension NXField {
    /// The local row reader: a hyperslab read by the dataset's id (HDF5 errors of the
    /// reader thread silenced; they come back as the thrown error).
    public func rowReader() throws -> NXRowReader {
        let id = try objectID(), shape = try self.shape, place = "\(file.path): \(path)"
        return { range, buffer in
            nxh5_silence_this_thread()
            try NXField.readRows(range, into: buffer, id: id, shape: shape, place: place)
        }
    }

    /// Reads rows `range` of the first axis into the leading rows of `buffer` (a
    /// contiguous array of the field's dtype and row shape). Static and given only ids and
    /// values, so it may run on another thread without touching (or outliving) the tree's
    /// objects: `place` is "file: path" for errors.
    static func readRows(_ range: Range<Int>, into buffer: NDArray, id: hid_t, shape: [Int], place: String) throws {
        let h = H5.api
        func fail(_ what: String) -> String { "\(place): \(what)" }
        let fileSpace = try H5Handle(checking: h.pointee.H5Dget_space(id), .dataspace, fail("read failed"))
        var start = [hsize_t](repeating: 0, count: shape.count), count = shape.map { hsize_t($0) }
        start[0] = hsize_t(range.lowerBound)
        count[0] = hsize_t(range.count)
        try H5.check(h.pointee.H5Sselect_hyperslab(fileSpace.id, H5S_SELECT_SET, &start, nil, &count, nil), fail("bad selection"))
        let memSpace = try H5Space.simple(count.map { Int($0) })
        try H5.check(h.pointee.H5Dread(id, H5Types.memoryType(buffer.dtype), memSpace.id, fileSpace.id, 0, buffer.storage.bytes),
                     fail("read of rows \(range.lowerBound):\(range.upperBound) failed (a missing filter plugin, or a damaged file?)"))
    }

}

/// Blocks of rows of a numeric field, in order, each read ahead while the previous one is
/// used. With `reuse`, two buffers alternate (a block is overwritten two calls later);
/// without it every block is a new array its receiver may keep.
public final class NXBlocks: @unchecked Sendable {  // used by one thread (its Lua state) at a time
    public let field: any NXReadableField
    public let rows: Int
    public let total: Int
    private let reuse: Bool
    private let readRows: NXRowReader
    private let shape: [Int]
    private let dtype: DType
    private let reader = BlockReader()
    private var position = 0
    private var pending: (range: Range<Int>, buffer: NDArray)?
    private var handedOut: NDArray?

    /// `start`: the first row handed out (blocks then start there).
    public init(_ field: any NXReadableField, rows: Int, reuse: Bool, start: Int = 0) throws {
        let shape = try field.shape
        guard !shape.isEmpty else { throw field.nodeError("a scalar field has no rows to stream") }
        guard rows > 0 else { throw field.nodeError("block size must be positive, got \(rows)") }
        self.field = field
        self.shape = shape
        self.dtype = try field.numericType()
        self.readRows = try field.rowReader()
        self.total = shape[0]
        self.rows = min(rows, max(1, shape[0]))
        self.reuse = reuse
        self.position = max(0, min(start, shape[0]))
    }

    deinit { try? reader.wait() }  // a read in flight still writes into its buffer

    /// The next (first row, block), nil after the last.
    public func next() throws -> (Int, NDArray)? {
        if pending == nil { try startRead() }
        guard let (range, buffer) = pending else { return nil }
        try reader.wait()
        pending = nil
        let spare = reuse ? handedOut : nil
        handedOut = buffer
        try startRead(into: spare)
        let block = range.count == rows ? buffer : try field.arrayWork { try buffer.view(Selection([.range(.int(0), .int(range.count), 1)])) }
        return (range.lowerBound, block)
    }

    private func startRead(into spare: NDArray? = nil) throws {
        guard position < total else { return }
        let range = position..<min(position + rows, total)
        position = range.upperBound
        let fieldShape = self.shape, rows = self.rows, dtype = self.dtype, readRows = self.readRows
        let buffer = try spare ?? field.arrayWork { try NDArray(uninitialized: [rows] + fieldShape.dropFirst(), dtype: dtype) }
        pending = (range, buffer)
        // (posix_fadvise WILLNEED hints for the block after were tried: on this machine's
        // disk a cold 2 GB sum took 770 ms with them, 625 ms without; a plain read 577 ms)
        reader.start { try readRows(range, buffer) }
    }
}

/// One read at a time on a private serial queue; `wait()` returns once it is done and
/// rethrows its error.
private final class BlockReader: @unchecked Sendable {
    private let queue = DispatchQueue(label: "nxlua.nexus.prefetch")
    private let done = DispatchSemaphore(value: 0)
    private var pending = false
    private var failure: Error?

    func start(_ work: @escaping @Sendable () throws -> Void) {
        pending = true
        failure = nil
        queue.async {
            do { try work() } catch { self.failure = error }
            self.done.signal()
        }
    }

    func wait() throws {
        guard pending else { return }
        pending = false
        done.wait()
        if let failure { throw failure }
    }
}
