import CHDF5
import CHDF5Shims
import NDArray

/// Compression of a new field; the filter ids and parameters are those h5py/hdf5plugin
/// write (DESIGN.md section 5: bitshuffle's cd_values are {0, 2}, not the 5-value form).
public enum NXCompression: Equatable, Sendable {
    case gzip(level: Int)
    case lz4
    case bitshuffleLZ4
    case blosc(level: Int)
    case lzf

    /// "gzip", "gzip:4", "lz4", "bshuf" (or "bitshuffle"), "blosc", "blosc:9", "lzf".
    public init(parsing text: String) throws {
        let parts = text.lowercased().split(separator: ":", maxSplits: 1).map(String.init)
        let level = parts.count > 1 ? Int(parts[1]) : nil
        if parts.count > 1 && level == nil { throw NeXusError("bad compression level in '\(text)' (an integer expected)") }
        switch parts.first ?? "" {
        case "gzip", "deflate":
            let l = level ?? 4
            guard (0...9).contains(l) else { throw NeXusError("gzip level \(l) out of range 0..9") }
            self = .gzip(level: l)
        case "lz4": self = .lz4
        case "bshuf", "bitshuffle", "bitshuffle+lz4", "bslz4": self = .bitshuffleLZ4
        case "blosc":
            let l = level ?? 5
            guard (0...9).contains(l) else { throw NeXusError("blosc level \(l) out of range 0..9") }
            self = .blosc(level: l)
        case "lzf": self = .lzf
        default:
            throw NeXusError("unknown compression '\(text)' (gzip, gzip:N, lz4, bshuf, blosc, blosc:N or lzf expected)")
        }
    }

    var filter: (id: Int32, name: String, cd: [UInt32], package: String) {
        switch self {
        case .gzip(let l): return (1, "gzip", [UInt32(l)], "libhdf5")
        case .lz4: return (32004, "lz4", [0], "hdf5-filter-plugin")
        case .bitshuffleLZ4: return (32008, "bitshuffle+lz4", [0, 2], "bitshuffle")
        // blosc: 4 slots the filter fills, then level, shuffle (1 = byte), compressor (1 = lz4)
        case .blosc(let l): return (32001, "blosc", [0, 0, 0, 0, UInt32(l), 1, 1], "hdf5-filter-plugin-blosc-serial")
        case .lzf: return (32000, "lzf", [], "hdf5-plugin-lzf")
        }
    }
}

/// Storage options of a new field.
public struct NXFieldOptions: Sendable {
    public var dtype: DType?
    /// Shape of a field created without a value (filled with `fillValue`).
    public var shape: [Int]?
    /// nil entries are unlimited (append along them).
    public var maxshape: [Int?]?
    public var chunks: [Int]?
    public var compression: NXCompression?
    public var fillValue: Double?
    /// Strings of at most this many bytes each, stored fixed-length (NUL-padded) rather
    /// than variable-length: what SWMR writers use, since variable-length data lives in
    /// HDF5's global heap, which SWMR readers cannot follow safely.
    public var stringLength: Int?
    /// All of the field's storage allocated when it is created, and never filled (a new
    /// file reads zeros where nothing was written): later writes of its data change no
    /// metadata, so a process killed between flushes leaves the file's structure intact.
    public var allocateEarly = false
    public init() {}
}

/// A field (HDF5 dataset): metadata read when first reached, data only when indexed.
public final class NXField: NXNode, @unchecked Sendable {
    private var info: Info?
    private var eager: NXValue?

    struct Info {
        var shape: [Int]
        var maxshape: [Int?]
        var isScalar: Bool
        var elementType: ElementType
        var fileType: H5Handle
    }

    public override var nxclass: String { "NXfield" }
    public override var readableField: (any NXReadableField)? { self }

    override func openObject() throws -> H5Handle {
        try openHandle("field", .dataset) { H5.api.pointee.H5Dopen2($0, $1, 0) }
    }

    override func forgetHandle() {
        super.forgetHandle()
        info = nil
        eager = nil
    }

    private func metadata() throws -> Info {
        let id = try objectID()
        if let info { return info }
        let h = H5.api
        let space = try H5Handle(checking: h.pointee.H5Dget_space(id), .dataspace, fail("cannot read the shape").message)
        let d = H5Space.dims(space.id)
        let type = try H5Handle(checking: h.pointee.H5Dget_type(id), .datatype, fail("cannot read the type").message)
        let i = Info(shape: d.dims, maxshape: d.maxdims, isScalar: d.isScalar, elementType: H5Types.elementType(of: type.id), fileType: type)
        info = i
        return i
    }

    public var shape: [Int] { get throws { try metadata().shape } }
    public var maxshape: [Int?] { get throws { try metadata().maxshape } }
    public var elementType: ElementType { get throws { try metadata().elementType } }
    public var count: Int { get throws { try shape.reduce(1, *) } }

    /// The value when the field is small (at most `options.eagerLimit` elements), read
    /// once when first asked; nil for bigger fields (index them to read).
    public func smallValue() throws -> NXValue? {
        if let eager { return eager }
        let m = try metadata()
        guard m.shape.reduce(1, *) <= file.options.eagerLimit else { return nil }
        if case .unsupported = m.elementType { return nil }
        let value = try read(nil)
        // Small fields are answered from memory from now on; their dataset need not stay
        // open (10,000 open datasets made closing a file cost 40% of printing its tree).
        handle?.close()
        handle = nil
        eager = value
        return value
    }

    // MARK: storage

    private func creationPlist() throws -> H5Handle {
        try H5Handle(checking: H5.api.pointee.H5Dget_create_plist(try objectID()), .plist, fail("cannot read storage properties").message)
    }

    /// Chunk shape, nil when not chunked.
    public var chunks: [Int]? {
        get throws { try storageLayout().chunks }
    }

    /// "contiguous", "chunked", "compact" or "virtual" (h5py's CONTIGUOUS, CHUNKED, ...).
    public var layout: String {
        get throws {
            switch try storageLayout().kind {
            case .chunked: return "chunked"
            case .compact: return "compact"
            case .virtual: return "virtual"
            case .contiguous: return "contiguous"
            }
        }
    }

    /// The filters, by name ("gzip", "shuffle", "lz4", "bitshuffle+lz4", "blosc", "lzf", or "filter N").
    public var filters: [String] {
        get throws {
            try storedFilters.map { f in
                switch f.id {
                case 1: return "gzip"
                case 2: return "shuffle"
                case 32000: return "lzf"
                case 32001: return "blosc"
                case 32004: return "lz4"
                case 32008: return "bitshuffle+lz4"
                default: return "filter \(f.id)"
                }
            }
        }
    }

    /// One filter of the chunk pipeline as stored in the file: HDF5's id, its flags and
    /// its parameters after the filter's set_local filled them in (bitshuffle's element
    /// size, for instance), which is what the filter's own function expects.
    public struct StoredFilter: Equatable, Sendable {
        public let id: Int32
        public let flags: UInt32
        public let parameters: [UInt32]
        public var isOptional: Bool { flags & 0x0001 != 0 }  // H5Z_FLAG_OPTIONAL
        public init(id: Int32, flags: UInt32, parameters: [UInt32]) {
            self.id = id
            self.flags = flags
            self.parameters = parameters
        }
    }

    /// The chunk filters in pipeline order (empty when the field is not filtered).
    public var storedFilters: [StoredFilter] {
        get throws {
            let h = H5.api
            let p = try creationPlist()
            defer { withExtendedLifetime(p) {} }  // the plist stays open through the loop
            var out: [StoredFilter] = []
            for i in 0..<UInt32(max(0, h.pointee.H5Pget_nfilters(p.id))) {
                var flags: UInt32 = 0, nelmts = 32, cd = [UInt32](repeating: 0, count: 32), config: UInt32 = 0
                var name = [CChar](repeating: 0, count: 64)
                let id = h.pointee.H5Pget_filter2(p.id, i, &flags, &nelmts, &cd, 64, &name, &config)
                try H5.check(id, fail("cannot read filter \(i)").message)
                out.append(StoredFilter(id: id, flags: flags, parameters: Array(cd.prefix(min(nelmts, 32)))))
            }
            return out
        }
    }

    /// Writes one chunk's bytes as stored (already through the filters, except those whose
    /// bit is set in `filterMask`) at the chunk whose first element is `offset`, with
    /// H5Dwrite_chunk: no filter runs under HDF5's lock. The extent must cover the chunk.
    public func writeChunk(at offset: [Int], bytes: UnsafeRawBufferPointer, filterMask: UInt32 = 0) throws {
        try file.check(path, write: true)
        var o = offset.map { hsize_t($0) }
        try H5.check(H5.api.pointee.H5Dwrite_chunk(try objectID(), 0, filterMask, &o, bytes.count, bytes.baseAddress),
                     fail("cannot write the chunk at \(NDArray.describe(offset))").message)
    }

    /// The stored size of the chunk holding element `offset` (0 when never written).
    public func chunkStorageSize(at offset: [Int]) throws -> Int {
        var o = offset.map { hsize_t($0) }
        var n: hsize_t = 0
        guard H5.api.pointee.H5Dget_chunk_storage_size(try objectID(), &o, &n) >= 0 else {
            _ = H5.takeError()
            return 0
        }
        return Int(n)
    }

    /// Where the chunk holding element `offset` lies in the file: its byte offset and
    /// stored size; nil when it was never written.
    public func chunkLocation(at offset: [Int]) throws -> (offset: UInt64, size: UInt64)? {
        var o = offset.map { hsize_t($0) }
        var mask: UInt32 = 0
        var address: haddr_t = 0
        var size: hsize_t = 0
        try H5.check(H5.api.pointee.H5Dget_chunk_info_by_coord(try objectID(), &o, &mask, &address, &size),
                     fail("cannot locate the chunk at \(NDArray.describe(offset))").message)
        return address == haddr_t.max ? nil : (UInt64(address), UInt64(size))  // HADDR_UNDEF: not written
    }

    /// Runs array work, naming this field's file and path in its errors.
    func arr<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ArrayError { throw fail(e.message) }
    }

    // MARK: reading

    /// Reads exactly the hyperslab a selection names (nil: everything). Integer indices
    /// drop their axis; negative steps are read forward and reversed in memory.
    public func read(_ selection: Selection?) throws -> NXValue {
        let m = try metadata()
        let id = try objectID()
        let h = H5.api
        if m.isScalar, let s = selection, s.items.contains(where: { $0 != .ellipsis }) {
            throw fail("a scalar field takes no index")
        }
        if m.isScalar || selection == nil {
            // the whole field: no dataspaces to make and select (a tree print reads
            // thousands of small fields this way)
            let all: hid_t = 0  // H5S_ALL
            return try H5Values.read(.init(fileType: m.fileType.id, shape: m.isScalar ? [] : m.shape, memSpace: all) { mt, buf in
                h.pointee.H5Dread(id, mt, all, all, 0, buf)
            }, fail("read failed (a missing filter plugin, or a damaged file?)").message)
        }
        let axes = try resolve(selection, m.shape)
        let counts = axes.map(\.count)
        let kept = axes.filter(\.keepsAxis).map(\.count)
        // whole frames of a chunked stack: decoded outside HDF5's lock (NXChunkDecoder)
        if case .numeric(let dtype) = m.elementType, let rows = NXField.wholeRows(axes, m.shape) {
            let a = try arr { try NDArray(uninitialized: counts, dtype: dtype) }
            if try readWholeChunks(rows: rows, shape: m.shape, fileType: m.fileType.id, into: a.storage.bytes) {
                return try reshape(.array(a), kept: kept, axes: axes)
            }
        }
        let fileSpace = try H5Handle(checking: h.pointee.H5Dget_space(id), .dataspace, fail("read failed").message)
        try select(fileSpace.id, axes)
        let memSpace = try H5Space.simple(counts)
        let value = try H5Values.read(.init(fileType: m.fileType.id, shape: counts, memSpace: memSpace.id) { mt, buf in
            h.pointee.H5Dread(id, mt, memSpace.id, fileSpace.id, 0, buf)
        }, fail("read failed (a missing filter plugin, or a damaged file?)").message)
        return try reshape(value, kept: kept, axes: axes)
    }

    /// Rows start..<start+count of axis 0 when the selection takes them forward, one by
    /// one, and every element of every other axis.
    static func wholeRows(_ axes: [Selection.Axis], _ shape: [Int]) -> Range<Int>? {
        guard let a = axes.first, a.count > 0, a.step == 1 || a.count == 1 else { return nil }
        for (axis, n) in zip(axes.dropFirst(), shape.dropFirst()) where !(axis.start == 0 && axis.count == n && axis.step == 1) {
            return nil
        }
        return a.start..<(a.start + a.count)
    }

    /// The per-axis hyperslab of a selection (nil: everything); errors show the shape.
    private func resolve(_ selection: Selection?, _ shape: [Int]) throws -> [Selection.Axis] {
        do {
            return try (selection ?? Selection([])).resolve(shape: shape)
        } catch let e as ArrayError {
            throw fail("\(e.message) (shape \(NDArray.describe(shape)))")
        }
    }

    /// The view that turns forward-read axes back into the negative steps asked for.
    private static func reversal(_ axes: [Selection.Axis]) -> String? {
        let reversed = axes.filter(\.keepsAxis).map { $0.step < 0 }
        return reversed.contains(true) ? reversed.map { $0 ? "::-1" : ":" }.joined(separator: ",") : nil
    }

    /// Selects the hyperslab of resolved axes (negative steps as their forward mirror).
    private func select(_ space: hid_t, _ axes: [Selection.Axis]) throws {
        var start: [hsize_t] = [], stride: [hsize_t] = [], count: [hsize_t] = []
        for a in axes {
            let first = a.step > 0 || a.count == 0 ? a.start : a.start + (a.count - 1) * a.step
            start.append(hsize_t(first))
            stride.append(hsize_t(abs(a.step)))
            count.append(hsize_t(a.count))
        }
        try H5.check(H5.api.pointee.H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, &stride, &count, nil),
                     fail("bad selection").message)
    }

    private func reshape(_ value: NXValue, kept: [Int], axes: [Selection.Axis]) throws -> NXValue {
        let reversal = NXField.reversal(axes)
        switch value {
        case .array(let a):
            var r = try arr { try a.reshapedView(kept) }
            if let reversal { r = try arr { try r.view(reversal).copy() } }
            return .array(r)
        case .strings(let s, _):
            if reversal != nil { throw fail("negative steps are not supported on string fields") }
            return .strings(s, shape: kept)
        case .records(let r, _):
            if reversal != nil { throw fail("negative steps are not supported on compound fields") }
            return .records(r, shape: kept)
        }
    }

    // MARK: writing

    /// Writes `value` into the selected hyperslab (nil: all), broadcasting as NumPy;
    /// numbers are converted to the field's dtype.
    public func write(_ value: NXValue, at selection: Selection?) throws {
        try file.check(path, write: true)
        let m = try metadata()
        let id = try objectID()
        let h = H5.api
        let axes = try resolve(selection, m.shape)
        let counts = axes.map(\.count)
        if counts.contains(0) { return }
        let kept = axes.filter(\.keepsAxis).map(\.count)
        let prepared: NXValue
        switch (value, m.elementType) {
        case (.array(let a), .numeric(let dtype)):
            var b = try arr { try a.broadcast(to: kept) }
            if let reversal = NXField.reversal(axes) { b = try arr { try b.view(reversal) } }
            prepared = .array(try arr { try b.copy(as: dtype).reshapedView(counts) })
        case (.strings(let s, let shape), .string):
            guard shape == kept || s.count == 1 else {
                throw fail("cannot write \(s.count) strings into a selection of shape \(NDArray.describe(kept))")
            }
            prepared = .strings(s.count == 1 ? Array(repeating: s[0], count: counts.reduce(1, *)) : s, shape: counts)
        case (_, let t):
            throw fail("cannot write \(value.kindName) into a field of \(t.name)")
        }
        let src: H5Values.WriteSource
        if case .string(variable: false, _) = m.elementType, case .strings(let s, let shape) = prepared {
            src = H5Values.fixedStrings(s, length: h.pointee.H5Tget_size(m.fileType.id), fileType: m.fileType.id, shape: shape)
        } else {
            src = try H5Values.source(prepared)
        }
        let fileSpace = try H5Handle(checking: h.pointee.H5Dget_space(id), .dataspace, fail("write failed").message)
        if m.isScalar {
            _ = h.pointee.H5Sselect_all(fileSpace.id)
        } else {
            try select(fileSpace.id, axes)
        }
        let memSpace = try H5Space.simple(m.isScalar ? [] : counts)
        _ = try withExtendedLifetime(src.owner) {
            try H5.check(h.pointee.H5Dwrite(id, src.memType, memSpace.id, fileSpace.id, 0, src.buffer), fail("write failed").message)
        }
        eager = nil
    }

    /// Appends frames along the first axis: one frame (the shape without the first axis)
    /// or a block of them. The first axis must be unlimited (maxshape) or have room.
    public func append(_ value: NXValue) throws {
        try file.check(path, write: true)
        let m = try metadata()
        guard !m.isScalar, let n0 = m.shape.first else { throw fail("cannot append to a scalar field") }
        let frame = Array(m.shape.dropFirst())
        let vshape = value.shape
        let k: Int
        if vshape == frame { k = 1 } else if vshape.count == m.shape.count, Array(vshape.dropFirst()) == frame { k = vshape[0] } else {
            throw fail("cannot append shape \(NDArray.describe(vshape)) to a field of shape \(NDArray.describe(m.shape)) (one frame \(NDArray.describe(frame)) or a block (k, ...) expected)")
        }
        if let limit = m.maxshape.first ?? nil, n0 + k > limit {
            throw fail("cannot grow the first axis to \(n0 + k): maxshape is \(limit) (create the field with maxshape {-1, ...} to append)")
        }
        try resize(firstAxis: n0 + k)
        let sel = Selection([.range(.int(n0), .int(n0 + k), nil)] + frame.map { _ in .range(nil, nil, nil) })
        let block: NXValue
        if k == 1, vshape == frame, case .array(let a) = value {
            block = .array(try arr { try (a.isContiguous ? a : a.copy()).reshapedView([1] + frame) })
        } else if k == 1, vshape == frame, case .strings(let s, _) = value {
            block = .strings(s, shape: [1] + frame)
        } else {
            block = value
        }
        do {
            try write(block, at: sel)
        } catch {
            try? resize(firstAxis: n0)  // no half-appended frame left behind
            throw error
        }
    }

    /// Sets the length of the first axis (within maxshape).
    public func resize(firstAxis n: Int) throws {
        let m = try metadata()
        var dims = m.shape.map { hsize_t($0) }
        dims[0] = hsize_t(n)
        try H5.check(H5.api.pointee.H5Dset_extent(try objectID(), &dims),
                     fail("cannot resize to \(n) along the first axis (chunked storage and maxshape needed)").message)
        info?.shape[0] = n
        eager = nil
    }

    /// Re-reads the shape (SWMR readers see the writer's appended frames after this).
    public func refresh() throws {
        let id = try objectID()
        if file.isSWMRReading { try H5.check(H5.api.pointee.H5Drefresh(id), fail("refresh failed").message) }
        info = nil
        eager = nil
    }

    /// Flushes this field's data and metadata (SWMR writers call this per frame).
    public func flush() throws {
        try H5.check(H5.api.pointee.H5Dflush(try objectID()), fail("flush failed").message)
    }

    // MARK: creation

    static func create(in gid: hid_t, name: String, value: NXValue?, options o: NXFieldOptions, context: String) throws {
        let h = H5.api
        var value = value
        if let v = value, case .array(let a) = v, let d = o.dtype, d != a.dtype {
            value = .array(try H5Values.arrayOrThrow { try a.copy(as: d) })
        }
        let shape: [Int]
        let elementType: ElementType
        if let value {
            shape = value.shape
            switch value {
            case .array(let a): elementType = .numeric(a.dtype)
            case .strings: elementType = .string(variable: o.stringLength == nil, utf8: true)
            case .records: throw NeXusError("\(context): writing compound data is not supported")
            }
            if let s = o.shape, s != shape {
                throw NeXusError("\(context): the value has shape \(NDArray.describe(shape)) but shape \(NDArray.describe(s)) was asked")
            }
        } else {
            guard let s = o.shape else { throw NeXusError("\(context): a value or a shape is needed") }
            shape = s
            elementType = o.stringLength != nil && o.dtype == nil ? .string(variable: false, utf8: true) : .numeric(o.dtype ?? .float64)
        }
        var maxshape = o.maxshape
        if let ms = maxshape {
            guard ms.count == shape.count else {
                throw NeXusError("\(context): maxshape has \(ms.count) axes, the value \(shape.count)")
            }
            for (i, m) in ms.enumerated() where m != nil && m! < shape[i] {
                throw NeXusError("\(context): maxshape \(m!) is smaller than the size \(shape[i]) of axis \(i)")
            }
        } else { maxshape = nil }
        let needsChunks = o.chunks != nil || o.compression != nil || maxshape?.contains(where: { $0 == nil }) == true
        let dcpl = try H5Handle(checking: h.pointee.H5Pcreate(h.pointee.P_DATASET_CREATE), .plist, context)
        if needsChunks {
            guard !shape.isEmpty else { throw NeXusError("\(context): a scalar field cannot be chunked or compressed") }
            let itemSize: Int = { if case .numeric(let d) = elementType { return d.itemSize }; return 16 }()
            var chunks = o.chunks ?? NXField.guessChunks(shape: shape, maxshape: maxshape, itemSize: itemSize)
            guard chunks.count == shape.count, chunks.allSatisfy({ $0 > 0 }) else {
                throw NeXusError("\(context): chunks \(NDArray.describe(o.chunks ?? [])) must have \(shape.count) positive sizes")
            }
            for i in chunks.indices { if let m = maxshape?[i] ?? (maxshape == nil ? shape[i] : nil), m > 0 { chunks[i] = min(chunks[i], m) } }
            var c = chunks.map { hsize_t($0) }
            try H5.check(h.pointee.H5Pset_chunk(dcpl.id, Int32(c.count), &c), context)
        }
        if let comp = o.compression {
            let f = comp.filter
            if f.id == 1 {
                try H5.check(h.pointee.H5Pset_deflate(dcpl.id, f.cd[0]), context)
            } else {
                guard h.pointee.H5Zfilter_avail(H5Z_filter_t(f.id)) > 0 else {
                    _ = H5.takeError()
                    throw NeXusError("\(context): the \(f.name) filter (HDF5 filter \(f.id)) is not available; install the Debian package \(f.package) (scripts/setup does)")
                }
                var cd = f.cd
                // Optional, as h5py and hdf5plugin add them: a chunk the filter cannot
                // shrink is stored raw. As mandatory, Debian's LZF plugin silently lost
                // such chunks (HDF5 1.10.8).
                try H5.check(h.pointee.H5Pset_filter(dcpl.id, H5Z_filter_t(f.id), UInt32(H5Z_FLAG_OPTIONAL), cd.count, &cd), context)
            }
        }
        let fileTypeHandle: H5Handle?
        let fileType: hid_t
        switch elementType {
        case .numeric(let d): fileType = H5Types.memoryType(d); fileTypeHandle = nil
        default:
            let t = try H5Types.stringType(variable: o.stringLength == nil, utf8: true, length: o.stringLength ?? 1)
            fileTypeHandle = t
            fileType = t.id
        }
        if let fill = o.fillValue, case .numeric(let d) = elementType {
            let fv = try H5Values.arrayOrThrow { try NDArray.full([], fill, dtype: d) }
            try H5.check(h.pointee.H5Pset_fill_value(dcpl.id, H5Types.memoryType(d), fv.storage.bytes), context)
        }
        if o.allocateEarly {
            try H5.check(h.pointee.H5Pset_alloc_time(dcpl.id, H5D_ALLOC_TIME_EARLY), context)
            try H5.check(h.pointee.H5Pset_fill_time(dcpl.id, H5D_FILL_TIME_NEVER), context)
        }
        let space = try H5Space.simple(shape, maxdims: maxshape)
        let did = try H5Handle(checking: h.pointee.H5Dcreate2(gid, name, fileType, space.id, 0, dcpl.id, 0), .dataset, context)
        _ = withExtendedLifetime(fileTypeHandle) { true }
        guard let value, shape.reduce(1, *) > 0 else { return }
        do {
            let src: H5Values.WriteSource
            if let n = o.stringLength, case .strings(let s, let shape) = value {
                src = H5Values.fixedStrings(s, length: n, fileType: fileType, shape: shape)
            } else {
                src = try H5Values.source(value)
            }
            _ = try withExtendedLifetime(src.owner) {
                try H5.check(h.pointee.H5Dwrite(did.id, src.memType, 0, 0, 0, src.buffer), context)
            }
        } catch {
            // Never leave a field with half its data behind.
            did.close()
            _ = h.pointee.H5Ldelete(gid, name, 0)
            _ = H5.takeError()
            throw error
        }
    }

    /// Chunk shape when none is given: whole frames for stacks of 2-D frames (how
    /// detector data is read back), else about 1 MB as h5py aims for.
    static func guessChunks(shape: [Int], maxshape: [Int?]?, itemSize: Int) -> [Int] {
        var c = shape.enumerated().map { i, n in max(1, (maxshape?[i] == nil && maxshape != nil) ? max(n, 1) : n) }
        if shape.count >= 3 {
            c[0] = 1
            if c.dropFirst().reduce(itemSize, *) <= 16 << 20 { return c }
        }
        if maxshape != nil { for i in c.indices where maxshape![i] == nil { c[i] = max(c[i], shape.count == 1 ? 1024 : 1) } }
        while c.reduce(itemSize, *) > 1 << 20, let i = c.indices.max(by: { c[$0] < c[$1] }), c[i] > 1 {
            c[i] = (c[i] + 1) / 2
        }
        return c
    }
}

extension NXValue {
    var kindName: String {
        switch self {
        case .array(let a): return "\(a.dtype.rawValue) numbers"
        case .strings: return "strings"
        case .records: return "records"
        }
    }
}
