#if canImport(Glibc)
import Glibc
#endif
import CHDF5
import CHDF5Shims
import NDArray

/// One element of a compound record.
public enum NXScalar: Equatable, Sendable {
    case integer(Int64)
    case real(Double)
    case text(String)
}

/// A value read from or written to a field or attribute: numbers and booleans as arrays
/// (0-d for scalars), text as strings, compound data as records.
public enum NXValue: @unchecked Sendable {
    case array(NDArray)
    case strings([String], shape: [Int])
    case records([[(name: String, value: NXScalar)]], shape: [Int])

    public var shape: [Int] {
        switch self {
        case .array(let a): return a.shape
        case .strings(_, let s), .records(_, let s): return s
        }
    }

    public static func string(_ s: String) -> NXValue { .strings([s], shape: []) }
}

/// Reads and writes whole buffers of any supported element type; datasets (with
/// hyperslabs) and attributes share it through a read/write closure.
enum H5Values {
    /// Where a read goes: HDF5's type of the stored data, the result shape, the memory
    /// space of the buffer (for freeing variable-length data) and the read itself.
    struct ReadTarget {
        let fileType: hid_t
        let shape: [Int]
        /// H5S_ALL (0) when the whole object is read; a space of `shape` is then made
        /// only if variable-length data must be freed.
        let memSpace: hid_t
        let read: (_ memType: hid_t, _ buffer: UnsafeMutableRawPointer) -> herr_t
        var count: Int { shape.reduce(1, *) }
    }

    static func read(_ t: ReadTarget, _ context: @autoclosure () -> String) throws -> NXValue {
        let h = H5.api
        switch H5Types.elementType(of: t.fileType) {
        case .numeric(let dtype):
            let a = try arrayOrThrow { try NDArray(uninitialized: t.shape, dtype: dtype) }
            if t.count > 0 { try H5.check(t.read(H5Types.memoryType(dtype), a.storage.bytes), context()) }
            return .array(a)
        case .string(let variable, let utf8):
            if t.count == 0 { return .strings([], shape: t.shape) }
            if variable {
                let mt = try H5Types.stringType(variable: true, utf8: utf8)
                var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: t.count)
                _ = try ptrs.withUnsafeMutableBytes { raw in
                    try H5.check(t.read(mt.id, raw.baseAddress!), context())
                }
                let out = ptrs.map { $0.map { String(cString: $0) } ?? "" }
                ptrs.withUnsafeMutableBytes { raw in
                    reclaim(mt.id, t, raw.baseAddress!)
                }
                return .strings(out, shape: t.shape)
            }
            let mt = try H5Handle(checking: h.pointee.H5Tcopy(t.fileType), .datatype, context())
            let size = h.pointee.H5Tget_size(mt.id)
            let pad = h.pointee.H5Tget_strpad(mt.id)
            var bytes = [UInt8](repeating: 0, count: size * t.count)
            _ = try bytes.withUnsafeMutableBytes { raw in try H5.check(t.read(mt.id, raw.baseAddress!), context()) }
            var out: [String] = []
            out.reserveCapacity(t.count)
            for i in 0..<t.count {
                var slice = bytes[(i * size)..<((i + 1) * size)]
                if let nul = slice.firstIndex(of: 0) { slice = slice[..<nul] }
                if pad == H5T_STR_SPACEPAD { while slice.last == 0x20 { slice = slice.dropLast() } }
                out.append(String(decoding: slice, as: UTF8.self))
            }
            return .strings(out, shape: t.shape)
        case .compound(let members):
            return try readRecords(t, members, context())
        case .unsupported(let what):
            throw NeXusError("\(context()): cannot read \(what)")
        }
    }

    /// Frees the variable-length parts HDF5 allocated while reading into `buffer`.
    private static func reclaim(_ memType: hid_t, _ t: ReadTarget, _ buffer: UnsafeMutableRawPointer) {
        let space = t.memSpace != 0 ? nil : try? H5Space.simple(t.shape)
        _ = H5.api.pointee.H5Dvlen_reclaim(memType, space?.id ?? t.memSpace, 0, buffer)
    }

    /// Compound data: each numeric member read as int64 or float64, strings as stored.
    private static func readRecords(_ t: ReadTarget, _ members: [ElementType.Member],
                                    _ context: @autoclosure () -> String) throws -> NXValue {
        let h = H5.api
        var offsets: [Int] = [], types: [H5Handle] = [], memberTypes: [hid_t] = []
        var size = 0
        for (i, m) in members.enumerated() {
            let ft = h.pointee.H5Tget_member_type(t.fileType, UInt32(i))
            defer { _ = h.pointee.H5Tclose(ft) }
            let mt: hid_t
            switch m.type {
            case .numeric(let d): mt = d.isFloat ? h.pointee.NATIVE_DOUBLE : h.pointee.NATIVE_INT64
            case .string(true, let utf8):
                let s = try H5Types.stringType(variable: true, utf8: utf8)
                types.append(s)
                mt = s.id
            case .string(false, _):
                let s = try H5Handle(checking: h.pointee.H5Tcopy(ft), .datatype, context())
                types.append(s)
                mt = s.id
            default:
                throw NeXusError("\(context()): cannot read member '\(m.name)' of compound data (\(m.type.name))")
            }
            offsets.append(size)
            memberTypes.append(mt)
            size += (h.pointee.H5Tget_size(mt) + 7) / 8 * 8
        }
        let ct = try H5Handle(checking: h.pointee.H5Tcreate(H5T_COMPOUND, max(size, 1)), .datatype, context())
        for (i, m) in members.enumerated() {
            try H5.check(h.pointee.H5Tinsert(ct.id, m.name, offsets[i], memberTypes[i]), context())
        }
        var buffer = [UInt8](repeating: 0, count: max(1, size * t.count))
        var records: [[(name: String, value: NXScalar)]] = []
        try buffer.withUnsafeMutableBytes { raw in
            let base = raw.baseAddress!
            if t.count > 0 { try H5.check(t.read(ct.id, base), context()) }
            for r in 0..<t.count {
                var rec: [(name: String, value: NXScalar)] = []
                for (i, m) in members.enumerated() {
                    let p = base + r * size + offsets[i]
                    switch m.type {
                    case .numeric(let d):
                        rec.append((m.name, d.isFloat ? .real(p.loadUnaligned(as: Double.self))
                                                      : .integer(p.loadUnaligned(as: Int64.self))))
                    case .string(true, _):
                        let s = p.loadUnaligned(as: UnsafePointer<CChar>?.self)
                        rec.append((m.name, .text(s.map { String(cString: $0) } ?? "")))
                    default:
                        let n = h.pointee.H5Tget_size(memberTypes[i])
                        var bytes = Array(UnsafeRawBufferPointer(start: p, count: n))
                        if let nul = bytes.firstIndex(of: 0) { bytes = Array(bytes[..<nul]) }
                        rec.append((m.name, .text(String(decoding: bytes, as: UTF8.self))))
                    }
                }
                records.append(rec)
            }
            if t.count > 0, members.contains(where: { $0.type == .string(variable: true, utf8: true) || $0.type == .string(variable: true, utf8: false) }) {
                reclaim(ct.id, t, base)
            }
        }
        return .records(records, shape: t.shape)
    }

    /// A value ready to be written: its memory type and bytes (kept alive by `owner`).
    struct WriteSource {
        let memType: hid_t
        let buffer: UnsafeRawPointer
        let shape: [Int]
        let elementType: ElementType
        let owner: AnyObject
    }

    final class CStrings {
        var pointers: [UnsafeMutablePointer<CChar>?]
        init(_ strings: [String]) { pointers = strings.map { strdup($0) } }
        deinit { pointers.forEach { free($0) } }
    }

    /// The bytes to write for a value; arrays are made contiguous (and converted to
    /// `dtype` when given).
    static func source(_ value: NXValue, as dtype: DType? = nil) throws -> WriteSource {
        switch value {
        case .array(let a):
            let c = try arrayOrThrow { (a.isContiguous && (dtype == nil || dtype == a.dtype)) ? a : try a.copy(as: dtype ?? a.dtype) }
            return WriteSource(memType: H5Types.memoryType(c.dtype), buffer: UnsafeRawPointer(c.base(UInt8.self)),
                               shape: c.shape, elementType: .numeric(c.dtype), owner: c.storage)
        case .strings(let s, let shape):
            let owner = CStrings(s)
            let t = try H5Types.stringType(variable: true, utf8: true)
            let holder = StringSource(owner, t)
            return WriteSource(memType: t.id, buffer: owner.pointers.withUnsafeBytes { UnsafeRawPointer($0.baseAddress!) },
                               shape: shape, elementType: .string(variable: true, utf8: true), owner: holder)
        case .records:
            throw NeXusError("writing compound data is not supported")
        }
    }

    /// Strings for a fixed-length string field of `length` bytes: each one cut at a UTF-8
    /// character boundary if longer, NUL-padded; written with the field's own file type
    /// (HDF5 converts no variable-length string to a fixed one).
    static func fixedStrings(_ strings: [String], length: Int, fileType: hid_t, shape: [Int]) -> WriteSource {
        let owner = FixedStrings(count: strings.count * length)
        for (i, s) in strings.enumerated() {
            var bytes = Array(s.utf8.prefix(length))
            if bytes.count == length, s.utf8.count > length {
                while let last = bytes.last, last & 0xC0 == 0x80 { bytes.removeLast() }  // continuation bytes
                if let last = bytes.last, last >= 0xC0 { bytes.removeLast() }            // a cut lead byte
            }
            owner.bytes.replaceSubrange(i * length..<(i * length + bytes.count), with: bytes)
        }
        return WriteSource(memType: fileType, buffer: owner.bytes.withUnsafeBytes { UnsafeRawPointer($0.baseAddress!) },
                           shape: shape, elementType: .string(variable: false, utf8: true), owner: owner)
    }

    final class FixedStrings {
        var bytes: [UInt8]
        init(count: Int) { bytes = [UInt8](repeating: 0, count: max(1, count)) }
    }

    final class StringSource {
        let strings: CStrings
        let type: H5Handle
        init(_ s: CStrings, _ t: H5Handle) { strings = s; type = t }
    }

    static func arrayOrThrow<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ArrayError { throw NeXusError(e.message) }
    }
}

/// Dataspaces.
enum H5Space {
    static func dims(_ space: hid_t) -> (dims: [Int], maxdims: [Int?], isScalar: Bool, isNull: Bool) {
        let h = H5.api
        let cls = h.pointee.H5Sget_simple_extent_type(space)
        if cls == H5S_NULL { return ([0], [0], false, true) }
        let n = Int(h.pointee.H5Sget_simple_extent_ndims(space))
        if n <= 0 { return ([], [], true, false) }
        var d = [hsize_t](repeating: 0, count: n), m = [hsize_t](repeating: 0, count: n)
        _ = h.pointee.H5Sget_simple_extent_dims(space, &d, &m)
        return (d.map { Int($0) }, m.map { $0 == H5.unlimited ? nil : Int($0) }, false, false)
    }

    static func simple(_ dims: [Int], maxdims: [Int?]? = nil) throws -> H5Handle {
        let h = H5.api
        if dims.isEmpty { return try H5Handle(checking: h.pointee.H5Screate(H5S_SCALAR), .dataspace, "cannot make a dataspace") }
        var d = dims.map { hsize_t($0) }
        if let maxdims {
            var m = maxdims.map { $0.map { hsize_t($0) } ?? H5.unlimited }
            return try H5Handle(checking: h.pointee.H5Screate_simple(Int32(dims.count), &d, &m), .dataspace,
                                "cannot make a dataspace of shape \(NDArray.describe(dims))")
        }
        return try H5Handle(checking: h.pointee.H5Screate_simple(Int32(dims.count), &d, nil), .dataspace,
                            "cannot make a dataspace of shape \(NDArray.describe(dims))")
    }
}
