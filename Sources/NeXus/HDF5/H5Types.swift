import CHDF5
import CHDF5Shims
import NDArray

/// What one element of a dataset or attribute is, as nxlua sees it.
public indirect enum ElementType: Equatable, Sendable {
    /// Numbers and booleans (h5py's FALSE/TRUE int8 enum): read into arrays.
    case numeric(DType)
    /// Text: fixed length (bytes) or variable; ASCII or UTF-8.
    case string(variable: Bool, utf8: Bool)
    /// Records of named members.
    case compound([Member])
    /// A class nxlua does not read (references, opaque, ...), with HDF5's name for it.
    case unsupported(String)

    public struct Member: Equatable, Sendable {
        public let name: String
        public let type: ElementType
        public init(name: String, type: ElementType) {
            self.name = name
            self.type = type
        }
    }

    /// The name Lua shows as `dtype`.
    public var name: String {
        switch self {
        case .numeric(let d): return d.rawValue
        case .string: return "string"
        case .compound: return "compound"
        case .unsupported(let what): return what
        }
    }
}

enum H5Types {
    /// Classifies an HDF5 datatype.
    static func elementType(of type: hid_t) -> ElementType {
        let h = H5.api
        let size = h.pointee.H5Tget_size(type)
        switch h.pointee.H5Tget_class(type) {
        case H5T_INTEGER, H5T_BITFIELD:
            let signed = h.pointee.H5Tget_class(type) == H5T_INTEGER && h.pointee.H5Tget_sign(type) != H5T_SGN_NONE
            switch (size, signed) {
            case (1, true): return .numeric(.int8)
            case (1, false): return .numeric(.uint8)
            case (2, true): return .numeric(.int16)
            case (2, false): return .numeric(.uint16)
            case (4, true): return .numeric(.int32)
            case (4, false): return .numeric(.uint32)
            case (8, true): return .numeric(.int64)
            case (8, false): return .numeric(.uint64)
            default: return .unsupported("integer of \(size) bytes")
            }
        case H5T_FLOAT:
            switch size {
            case 2, 4: return .numeric(.float32)  // half floats convert to float32
            case 8: return .numeric(.float64)
            default: return .unsupported("float of \(size) bytes")
            }
        case H5T_ENUM:
            if isBoolEnum(type) { return .numeric(.bool) }
            // Other enums read as their integer values.
            let base = h.pointee.H5Tget_super(type)
            defer { _ = h.pointee.H5Tclose(base) }
            return elementType(of: base)
        case H5T_STRING:
            let variable = h.pointee.H5Tis_variable_str(type) > 0
            return .string(variable: variable, utf8: h.pointee.H5Tget_cset(type) == H5T_CSET_UTF8)
        case H5T_COMPOUND:
            var members: [ElementType.Member] = []
            for i in 0..<UInt32(max(0, h.pointee.H5Tget_nmembers(type))) {
                guard let cname = h.pointee.H5Tget_member_name(type, i) else { continue }
                let name = String(cString: cname)
                _ = h.pointee.H5free_memory(cname)
                let mt = h.pointee.H5Tget_member_type(type, i)
                defer { _ = h.pointee.H5Tclose(mt) }
                members.append(.init(name: name, type: elementType(of: mt)))
            }
            return .compound(members)
        case H5T_ARRAY: return .unsupported("array-typed elements")
        case H5T_REFERENCE: return .unsupported("object references")
        case H5T_OPAQUE: return .unsupported("opaque data")
        case H5T_VLEN: return .unsupported("variable-length sequences")
        case H5T_TIME: return .unsupported("time")
        default: return .unsupported("an unknown HDF5 type class")
        }
    }

    /// h5py stores numpy bools as an int8 enum {FALSE = 0, TRUE = 1}.
    static func isBoolEnum(_ type: hid_t) -> Bool {
        let h = H5.api
        guard h.pointee.H5Tget_nmembers(type) == 2, h.pointee.H5Tget_size(type) == 1 else { return false }
        var names: [String] = []
        for i: UInt32 in 0..<2 {
            guard let c = h.pointee.H5Tget_member_name(type, i) else { return false }
            names.append(String(cString: c))
            _ = h.pointee.H5free_memory(c)
        }
        return names.sorted() == ["FALSE", "TRUE"]
    }

    /// The in-memory type for an array dtype (native order). Owned by the library or by
    /// this table: never close it.
    static func memoryType(_ dtype: DType) -> hid_t {
        let h = H5.api
        switch dtype {
        case .bool: return boolType.id
        case .int8: return h.pointee.NATIVE_INT8
        case .uint8: return h.pointee.NATIVE_UINT8
        case .int16: return h.pointee.NATIVE_INT16
        case .uint16: return h.pointee.NATIVE_UINT16
        case .int32: return h.pointee.NATIVE_INT32
        case .uint32: return h.pointee.NATIVE_UINT32
        case .int64: return h.pointee.NATIVE_INT64
        case .uint64: return h.pointee.NATIVE_UINT64
        case .float32: return h.pointee.NATIVE_FLOAT
        case .float64: return h.pointee.NATIVE_DOUBLE
        }
    }

    /// h5py's boolean type, made once.
    nonisolated(unsafe) static let boolType: H5Handle = {
        let h = H5.api
        let t = h.pointee.H5Tenum_create(h.pointee.NATIVE_INT8)
        var f: Int8 = 0, tr: Int8 = 1
        _ = h.pointee.H5Tenum_insert(t, "FALSE", &f)
        _ = h.pointee.H5Tenum_insert(t, "TRUE", &tr)
        return H5Handle(t, .datatype)
    }()

    /// A string type: variable length (what h5py writes for str) or fixed `length` bytes.
    /// The two variable-length types are made once and shared (never closed): every
    /// string attribute read needs one, and making it costs four library calls.
    static func stringType(variable: Bool, utf8: Bool, length: Int = 1) throws -> H5Handle {
        if variable, let shared = utf8 ? sharedUTF8 : sharedASCII { return shared }
        return try makeStringType(variable: variable, utf8: utf8, length: length)
    }

    nonisolated(unsafe) private static let sharedUTF8 = try? makeStringType(variable: true, utf8: true)
    nonisolated(unsafe) private static let sharedASCII = try? makeStringType(variable: true, utf8: false)

    private static func makeStringType(variable: Bool, utf8: Bool, length: Int = 1) throws -> H5Handle {
        let h = H5.api
        let t = try H5Handle(checking: h.pointee.H5Tcopy(h.pointee.C_S1), .datatype, "cannot make a string type")
        try H5.check(h.pointee.H5Tset_size(t.id, variable ? H5.variable : max(1, length)), "cannot size a string type")
        _ = h.pointee.H5Tset_cset(t.id, utf8 ? H5T_CSET_UTF8 : H5T_CSET_ASCII) as herr_t
        if !variable { _ = h.pointee.H5Tset_strpad(t.id, H5T_STR_NULLPAD) }
        return t
    }
}
