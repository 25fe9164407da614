import CHDF5
import CHDF5Shims

// What a server needs beyond the tree users navigate (nxlua serve, Sources/RemoteServer):
// storage types as HDF5 describes them, the raw bytes of hyperslabs, points and
// attributes in one packed little-endian layout, and the objects' addresses (stable
// identities for ids that survive restarts). Nothing here caches: callers serialise
// access, as for every NeXus class.

/// Padding of fixed-length strings.
public enum NXStringPadding: Sendable, Equatable {
    case nullTerminated, nullPadded, spacePadded
}

/// A named value of an enumerated type.
public struct NXEnumMember: Sendable, Equatable {
    public let name: String
    public let value: Int64
    public init(name: String, value: Int64) {
        self.name = name
        self.value = value
    }
}

/// A member of a compound type at its offset in a packed raw record.
public struct NXCompoundMember: Sendable, Equatable {
    public let name: String
    public let offset: Int
    public let type: NXStorageType
    public init(name: String, offset: Int, type: NXStorageType) {
        self.name = name
        self.offset = offset
        self.type = type
    }
}

/// An element type as stored, described as the raw buffers of `NXRawValues` hold it:
/// numbers in native (little-endian) order, records packed, fixed strings as their bytes,
/// variable-length strings as an 8-byte index into `NXRawValues.strings`.
public indirect enum NXStorageType: Sendable, Equatable {
    case integer(size: Int, signed: Bool)
    case float(size: Int)
    /// `length` nil: variable-length.
    case string(length: Int?, utf8: Bool, padding: NXStringPadding)
    case enumeration(base: NXStorageType, members: [NXEnumMember])
    case compound([NXCompoundMember])
    /// A class the raw layer does not read, with HDF5's name for it.
    case unsupported(String)

    /// Bytes per element in a raw buffer.
    public var rawSize: Int {
        switch self {
        case .integer(let s, _), .float(let s): return s
        case .string(let length, _, _): return length ?? 8
        case .enumeration(let base, _): return base.rawSize
        case .compound(let members): return members.last.map { $0.offset + $0.type.rawSize } ?? 0
        case .unsupported: return 0
        }
    }

    /// Whether elements hold variable-length strings (the binary wire form then differs).
    public var hasVariableLength: Bool {
        switch self {
        case .string(let length, _, _): return length == nil
        case .compound(let members): return members.contains { $0.type.hasVariableLength }
        default: return false
        }
    }

    /// Why it cannot be read, nil when it can.
    public var unsupportedReason: String? {
        switch self {
        case .unsupported(let why): return why
        case .compound(let members): return members.lazy.compactMap { $0.type.unsupportedReason }.first
        case .enumeration(let base, _): return base.unsupportedReason
        default: return nil
        }
    }
}

/// The extent of a dataset or attribute.
public struct NXDataspace: Sendable, Equatable {
    public enum Kind: Sendable { case simple, scalar, null }
    public let kind: Kind
    public let dims: [Int]
    /// nil entries are unlimited.
    public let maxdims: [Int?]
    public init(kind: Kind, dims: [Int], maxdims: [Int?]) {
        self.kind = kind
        self.dims = dims
        self.maxdims = maxdims
    }
    public var count: Int { kind == .simple ? dims.reduce(1, *) : (kind == .scalar ? 1 : 0) }
}

/// Elements read raw: `bytes` holds `count` packed elements of `type` (see NXStorageType).
public struct NXRawValues: Sendable {
    public let type: NXStorageType
    public let count: Int
    public var bytes: [UInt8]
    /// The variable-length strings the buffer's 8-byte slots index.
    public var strings: [String]

    public init(type: NXStorageType, count: Int, bytes: [UInt8], strings: [String]) {
        self.type = type
        self.count = count
        self.bytes = bytes
        self.strings = strings
    }
}

/// How a dataset is stored.
public struct NXStorageLayout: Sendable, Equatable {
    public enum Kind: Sendable { case contiguous, chunked, compact, virtual }
    public let kind: Kind
    public let chunks: [Int]?
}

/// An object's identity and counts (H5Oget_info2).
public struct NXObjectInfo: Sendable, Equatable {
    /// The object header's address in its file: the same for every hard link to it.
    public let address: UInt64
    public let attributeCount: Int
    /// Seconds since 1970, 0 when the file does not track times (HDF5's default).
    public let modified: Int
    public let created: Int
}

extension NXNode {
    /// Address, attribute count and times of the object.
    public func objectInfo() throws -> NXObjectInfo {
        let id = try objectID()
        var info = H5O_info_t()
        // H5O_INFO_BASIC | H5O_INFO_TIME | H5O_INFO_NUM_ATTRS
        try H5.check(H5.api.pointee.H5Oget_info2(id, &info, 0x1 | 0x2 | 0x4), fail("cannot read object information").message)
        return NXObjectInfo(address: UInt64(info.addr), attributeCount: Int(info.num_attrs),
                            modified: Int(info.mtime), created: Int(info.ctime))
    }

    /// An attribute's storage type, extent and raw values.
    public func rawAttribute(_ name: String) throws -> (type: NXStorageType, space: NXDataspace, values: NXRawValues) {
        let h = H5.api
        let id = try objectID()
        guard h.pointee.H5Aexists(id, name) > 0 else {
            _ = H5.takeError()
            throw fail("no attribute '\(name)'")
        }
        let attr = try H5Handle(checking: h.pointee.H5Aopen(id, name, 0), .attribute, fail("cannot open attribute '\(name)'").message)
        let fileType = try H5Handle(checking: h.pointee.H5Aget_type(attr.id), .datatype, fail("attribute '\(name)'").message)
        let space = try H5Handle(checking: h.pointee.H5Aget_space(attr.id), .dataspace, fail("attribute '\(name)'").message)
        let extent = H5Raw.dataspace(space.id)
        let mem = try H5Raw.memoryType(fileType.id)
        if let why = mem.storage.unsupportedReason { throw fail("attribute '\(name)': cannot read \(why)") }
        let values = try H5Raw.read(mem, count: extent.count, space: extent.kind == .null ? nil : space.id,
                                    fail("cannot read attribute '\(name)'").message) { mt, buf in
            h.pointee.H5Aread(attr.id, mt, buf)
        }
        return (mem.storage, extent, values)
    }

    /// An attribute's storage type and extent, without reading it.
    public func attributeShape(_ name: String) throws -> (type: NXStorageType, space: NXDataspace) {
        let h = H5.api
        let id = try objectID()
        let attr = try H5Handle(checking: h.pointee.H5Aopen(id, name, 0), .attribute, fail("cannot open attribute '\(name)'").message)
        let fileType = try H5Handle(checking: h.pointee.H5Aget_type(attr.id), .datatype, fail("attribute '\(name)'").message)
        let space = try H5Handle(checking: h.pointee.H5Aget_space(attr.id), .dataspace, fail("attribute '\(name)'").message)
        return (try H5Raw.memoryType(fileType.id).storage, H5Raw.dataspace(space.id))
    }
}

extension NXField {
    /// The storage type of the elements.
    public func storageType() throws -> NXStorageType {
        let t = try H5Handle(checking: H5.api.pointee.H5Dget_type(try objectID()), .datatype, fail("cannot read the type").message)
        return try H5Raw.memoryType(t.id).storage
    }

    /// The current extent (a SWMR reader sees it grow after `file.refresh`).
    public func dataspace() throws -> NXDataspace {
        let s = try H5Handle(checking: H5.api.pointee.H5Dget_space(try objectID()), .dataspace, fail("cannot read the shape").message)
        return H5Raw.dataspace(s.id)
    }

    /// Layout and chunk shape.
    public func storageLayout() throws -> NXStorageLayout {
        let h = H5.api
        let p = try H5Handle(checking: h.pointee.H5Dget_create_plist(try objectID()), .plist, fail("cannot read storage properties").message)
        // the handle closes the plist when released: keep it alive through every call
        return withExtendedLifetime(p) { storageLayout(plist: p.id) }
    }

    private func storageLayout(plist: hid_t) -> NXStorageLayout {
        let h = H5.api
        switch h.pointee.H5Pget_layout(plist) {
        case H5D_CHUNKED:
            var dims = [hsize_t](repeating: 0, count: 32)
            let n = h.pointee.H5Pget_chunk(plist, 32, &dims)
            return NXStorageLayout(kind: .chunked, chunks: n > 0 ? dims.prefix(Int(n)).map { Int($0) } : nil)
        case H5D_COMPACT: return NXStorageLayout(kind: .compact, chunks: nil)
        case H5D_VIRTUAL: return NXStorageLayout(kind: .virtual, chunks: nil)
        default: return NXStorageLayout(kind: .contiguous, chunks: nil)
        }
    }

    /// Reads a selection raw, in C order: per axis a list of runs (start, step > 0,
    /// count) in increasing order, so that the union of the runs' hyperslabs, read in
    /// HDF5's C order, is the cartesian product the caller asked for; nil reads
    /// everything (the only read a scalar field takes). Bounds are the caller's to check
    /// against `dataspace()`.
    public func readRaw(_ runs: [[NXRun]]?) throws -> NXRawValues {
        let h = H5.api
        let id = try objectID()
        let fileType = try H5Handle(checking: h.pointee.H5Dget_type(id), .datatype, fail("cannot read the type").message)
        let mem = try H5Raw.memoryType(fileType.id)
        if let why = mem.storage.unsupportedReason { throw fail("cannot read \(why)") }
        let fileSpace = try H5Handle(checking: h.pointee.H5Dget_space(id), .dataspace, fail("cannot read the shape").message)
        let extent = H5Raw.dataspace(fileSpace.id)
        let context = fail("read failed (a missing filter plugin, or a damaged file?)").message
        guard let runs else {
            return try H5Raw.read(mem, count: extent.count, space: extent.kind == .null ? nil : fileSpace.id, context) { mt, buf in
                h.pointee.H5Dread(id, mt, 0, 0, 0, buf)  // H5S_ALL both sides
            }
        }
        guard extent.kind == .simple, runs.count == extent.dims.count else {
            throw fail("a selection of \(runs.count) axes does not fit a field of \(extent.dims.count) axes")
        }
        let shape = runs.map { $0.reduce(0) { $0 + $1.count } }
        let n = shape.reduce(1, *)
        if n == 0 { return NXRawValues(type: mem.storage, count: 0, bytes: [], strings: []) }
        // whole frames of a chunked stack: decoded outside HDF5's lock (NXChunkDecoder)
        if runs.allSatisfy({ $0.count == 1 }), let rows = runs.first?.first, rows.step == 1 || rows.count == 1,
           zip(runs.dropFirst(), extent.dims.dropFirst()).allSatisfy({ $0[0].start == 0 && $0[0].count == $1 && ($0[0].step == 1 || $1 == 1) }) {
            var done = false
            let bytes = try [UInt8](unsafeUninitializedCapacity: n * mem.storage.rawSize) { buffer, initialized in
                done = try readWholeChunks(rows: rows.start..<(rows.start + rows.count), shape: extent.dims,
                                           fileType: fileType.id, into: UnsafeMutableRawPointer(buffer.baseAddress!))
                initialized = done ? buffer.count : 0
            }
            if done { return NXRawValues(type: mem.storage, count: n, bytes: bytes, strings: []) }
        }
        // one hyperslab per combination of runs, OR-ed together
        var index = [Int](repeating: 0, count: runs.count)
        var first = true
        while true {
            var s = [hsize_t](), st = [hsize_t](), c = [hsize_t]()
            for (axis, i) in index.enumerated() {
                let r = runs[axis][i]
                s.append(hsize_t(r.start)); st.append(hsize_t(max(1, r.step))); c.append(hsize_t(r.count))
            }
            try H5.check(h.pointee.H5Sselect_hyperslab(fileSpace.id, first ? H5S_SELECT_SET : H5S_SELECT_OR, &s, &st, &c, nil),
                         fail("bad selection").message)
            first = false
            var axis = runs.count - 1
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < runs[axis].count { break }
                index[axis] = 0
                axis -= 1
            }
            if axis < 0 { break }
        }
        let memSpace = try H5Space.simple(shape)
        return try H5Raw.read(mem, count: n, space: memSpace.id, context) { mt, buf in
            h.pointee.H5Dread(id, mt, memSpace.id, fileSpace.id, 0, buf)
        }
    }
}

/// A run of indices along one axis: start, start + step, ... (count of them).
public struct NXRun: Sendable, Equatable {
    public let start: Int
    public let step: Int
    public let count: Int
    public init(start: Int, step: Int, count: Int) {
        self.start = start
        self.step = step
        self.count = count
    }
}

/// The raw layer's HDF5 work: memory types for file types, reads with variable-length
/// strings turned into owned Swift strings.
enum H5Raw {
    struct MemoryType {
        let id: hid_t
        /// Keeps a type this layer made alive (nil for the library's native types).
        let owner: H5Handle?
        let storage: NXStorageType
        /// Offsets (in the raw record) of variable-length string slots.
        let stringSlots: [Int]
    }

    static func dataspace(_ space: hid_t) -> NXDataspace {
        let d = H5Space.dims(space)
        if d.isNull { return NXDataspace(kind: .null, dims: [], maxdims: []) }
        if d.isScalar { return NXDataspace(kind: .scalar, dims: [], maxdims: []) }
        return NXDataspace(kind: .simple, dims: d.dims, maxdims: d.maxdims)
    }

    static func memoryType(_ type: hid_t) throws -> MemoryType {
        let h = H5.api
        let size = h.pointee.H5Tget_size(type)
        let cls = h.pointee.H5Tget_class(type)
        func native(_ signed: Bool, _ size: Int) -> hid_t? {
            switch (size, signed) {
            case (1, true): return h.pointee.NATIVE_INT8
            case (1, false): return h.pointee.NATIVE_UINT8
            case (2, true): return h.pointee.NATIVE_INT16
            case (2, false): return h.pointee.NATIVE_UINT16
            case (4, true): return h.pointee.NATIVE_INT32
            case (4, false): return h.pointee.NATIVE_UINT32
            case (8, true): return h.pointee.NATIVE_INT64
            case (8, false): return h.pointee.NATIVE_UINT64
            default: return nil
            }
        }
        switch cls {
        case H5T_INTEGER, H5T_BITFIELD:
            let signed = cls == H5T_INTEGER && h.pointee.H5Tget_sign(type) != H5T_SGN_NONE
            guard let t = native(signed, size) else { return unsupported("integers of \(size) bytes") }
            return MemoryType(id: t, owner: nil, storage: .integer(size: size, signed: signed), stringSlots: [])
        case H5T_FLOAT:
            switch size {
            case 2, 4: return MemoryType(id: h.pointee.NATIVE_FLOAT, owner: nil, storage: .float(size: 4), stringSlots: [])
            case 8: return MemoryType(id: h.pointee.NATIVE_DOUBLE, owner: nil, storage: .float(size: 8), stringSlots: [])
            default: return unsupported("floats of \(size) bytes")
            }
        case H5T_STRING:
            let utf8 = h.pointee.H5Tget_cset(type) == H5T_CSET_UTF8
            let pad: NXStringPadding
            switch h.pointee.H5Tget_strpad(type) {
            case H5T_STR_NULLPAD: pad = .nullPadded
            case H5T_STR_SPACEPAD: pad = .spacePadded
            default: pad = .nullTerminated
            }
            if h.pointee.H5Tis_variable_str(type) > 0 {
                let t = try H5Types.stringType(variable: true, utf8: utf8)
                return MemoryType(id: t.id, owner: t, storage: .string(length: nil, utf8: utf8, padding: pad), stringSlots: [0])
            }
            let t = try H5Handle(checking: h.pointee.H5Tcopy(type), .datatype, "cannot copy a string type")
            return MemoryType(id: t.id, owner: t, storage: .string(length: size, utf8: utf8, padding: pad), stringSlots: [])
        case H5T_ENUM:
            let base = h.pointee.H5Tget_super(type)
            defer { _ = h.pointee.H5Tclose(base) }
            let baseSigned = h.pointee.H5Tget_sign(base) != H5T_SGN_NONE
            let baseSize = h.pointee.H5Tget_size(base)
            guard native(baseSigned, baseSize) != nil else { return unsupported("enumerations of \(baseSize)-byte integers") }
            // The native enum converts the stored byte order; its member values are native.
            let t = try H5Handle(checking: h.pointee.H5Tget_native_type(type, H5T_DIR_DEFAULT), .datatype, "cannot convert an enumeration type")
            var members: [NXEnumMember] = []
            for i in 0..<UInt32(max(0, h.pointee.H5Tget_nmembers(t.id))) {
                guard let cname = h.pointee.H5Tget_member_name(t.id, i) else { continue }
                let name = String(cString: cname)
                _ = h.pointee.H5free_memory(cname)
                var raw = [UInt8](repeating: 0, count: 8)
                _ = h.pointee.H5Tget_member_value(t.id, i, &raw)
                members.append(NXEnumMember(name: name, value: loadInteger(raw, 0, size: baseSize, signed: baseSigned)))
            }
            return MemoryType(id: t.id, owner: t, storage: .enumeration(base: .integer(size: baseSize, signed: baseSigned), members: members), stringSlots: [])
        case H5T_COMPOUND:
            var parts: [(String, MemoryType)] = []
            for i in 0..<UInt32(max(0, h.pointee.H5Tget_nmembers(type))) {
                guard let cname = h.pointee.H5Tget_member_name(type, i) else { continue }
                let name = String(cString: cname)
                _ = h.pointee.H5free_memory(cname)
                let mt = h.pointee.H5Tget_member_type(type, i)
                defer { _ = h.pointee.H5Tclose(mt) }
                parts.append((name, try memoryType(mt)))
            }
            var offset = 0
            var members: [NXCompoundMember] = []
            var slots: [Int] = []
            for (name, m) in parts {
                members.append(NXCompoundMember(name: name, offset: offset, type: m.storage))
                slots += m.stringSlots.map { $0 + offset }
                offset += m.storage.rawSize
            }
            if let why = NXStorageType.compound(members).unsupportedReason { return unsupported(why) }
            let t = try H5Handle(checking: h.pointee.H5Tcreate(H5T_COMPOUND, max(1, offset)), .datatype, "cannot make a compound type")
            for (i, (name, m)) in parts.enumerated() {
                try H5.check(h.pointee.H5Tinsert(t.id, name, members[i].offset, m.id), "cannot make a compound type")
            }
            return MemoryType(id: t.id, owner: t, storage: .compound(members), stringSlots: slots)
        case H5T_ARRAY: return unsupported("array-typed elements")
        case H5T_REFERENCE: return unsupported("object references")
        case H5T_OPAQUE: return unsupported("opaque data")
        case H5T_VLEN: return unsupported("variable-length sequences")
        case H5T_TIME: return unsupported("time values")
        default: return unsupported("an unknown HDF5 type class")
        }
    }

    private static func unsupported(_ why: String) -> MemoryType {
        MemoryType(id: -1, owner: nil, storage: .unsupported(why), stringSlots: [])
    }

    static func loadInteger(_ bytes: [UInt8], _ at: Int, size: Int, signed: Bool) -> Int64 {
        var u: UInt64 = 0
        for k in 0..<size { u |= UInt64(bytes[at + k]) << (8 * UInt64(k)) }
        if signed && size < 8 && (u >> (8 * UInt64(size) - 1)) & 1 == 1 { u |= ~0 << (8 * UInt64(size)) }
        return Int64(bitPattern: u)
    }

    /// Reads `count` elements with `read`, then swaps each variable-length string
    /// pointer for an index into the result's strings and frees what HDF5 allocated.
    /// `space` describes the memory buffer (nil: a null extent, nothing to read).
    static func read(_ mem: MemoryType, count: Int, space: hid_t?, _ context: @autoclosure () -> String,
                     _ read: (_ memType: hid_t, _ buffer: UnsafeMutableRawPointer) -> herr_t) throws -> NXRawValues {
        let size = mem.storage.rawSize
        guard count > 0, size > 0, let space else { return NXRawValues(type: mem.storage, count: 0, bytes: [], strings: []) }
        var bytes = [UInt8](unsafeUninitializedCapacity: count * size) { buf, n in
            // vlen slots must start NULL so that a failed read frees nothing it did not make
            if !mem.stringSlots.isEmpty { buf.initialize(repeating: 0) }
            n = count * size
        }
        var strings: [String] = []
        try bytes.withUnsafeMutableBytes { raw in
            let base = raw.baseAddress!
            try H5.check(read(mem.id, base), context())
            guard !mem.stringSlots.isEmpty else { return }
            strings.reserveCapacity(count * mem.stringSlots.count)
            var pointers: [UnsafeMutableRawPointer] = []
            for e in 0..<count {
                for slot in mem.stringSlots {
                    let p = base + e * size + slot
                    let s = p.loadUnaligned(as: UnsafePointer<CChar>?.self)
                    strings.append(s.map { String(cString: $0) } ?? "")
                    pointers.append(p)
                }
            }
            _ = H5.api.pointee.H5Dvlen_reclaim(mem.id, space, 0, base)
            for (i, p) in pointers.enumerated() { p.storeBytes(of: Int64(i), as: Int64.self) }
        }
        return NXRawValues(type: mem.storage, count: count, bytes: bytes, strings: strings)
    }
}

/// HDF5's automatic error printing is a per-thread setting in its thread-safe build:
/// a thread of a server (or any thread other than the one that loaded HDF5) calls this
/// before its first HDF5 call, or HDF5 prints error stacks on stderr.
public enum NXThreads {
    public static func silenceHDF5Errors() {
        guard (try? H5.load()) != nil else { return }
        nxh5_silence_this_thread()
    }
}
