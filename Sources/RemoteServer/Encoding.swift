import NeXus

/// HDF REST's JSON for types, shapes and values, and the binary wire form of values.
public enum HDFJSON {
    // MARK: filters

    /// A chunk filter as HSDS lists it in creationProperties.filters: class, id, name, and
    /// deflate's level. h5pyd's `.compression` is the name, so deflate is called "gzip",
    /// as h5py calls it (HSDS says "deflate").
    public static func filter(_ f: NXField.StoredFilter) -> JSON {
        let known: [Int32: (String, String)] = [
            1: ("H5Z_FILTER_DEFLATE", "gzip"), 2: ("H5Z_FILTER_SHUFFLE", "shuffle"),
            3: ("H5Z_FILTER_FLETCHER32", "fletcher32"), 4: ("H5Z_FILTER_SZIP", "szip"),
            5: ("H5Z_FILTER_NBIT", "nbit"), 6: ("H5Z_FILTER_SCALEOFFSET", "scaleoffset"),
            32000: ("H5Z_FILTER_LZF", "lzf"), 32001: ("H5Z_FILTER_BLOSC", "blosclz"),
            32004: ("H5Z_FILTER_LZ4", "lz4"), 32008: ("H5Z_FILTER_BITSHUFFLE", "bitshuffle"),
            32015: ("H5Z_FILTER_ZSTD", "zstd"),
        ]
        let (cls, name) = known[f.id] ?? ("H5Z_FILTER_USER", "filter \(f.id)")
        var m: [JSON.Member] = [.init("class", .string(cls)), .init("id", .int(Int64(f.id))), .init("name", .string(name))]
        if f.id == 1, let level = f.parameters.first { m.append(.init("level", .int(Int64(level)))) }
        return .object(m)
    }

    // MARK: types

    public static func type(_ t: NXStorageType) -> JSON {
        switch t {
        case .integer(let size, let signed):
            return .obj(["class": .string("H5T_INTEGER"), "base": .string("H5T_STD_\(signed ? "I" : "U")\(size * 8)LE")])
        case .float(let size):
            return .obj(["class": .string("H5T_FLOAT"), "base": .string("H5T_IEEE_F\(size * 8)LE")])
        case .string(let length, let utf8, let padding):
            let pad: String
            switch padding {
            case .nullTerminated: pad = "H5T_STR_NULLTERM"
            case .nullPadded: pad = "H5T_STR_NULLPAD"
            case .spacePadded: pad = "H5T_STR_SPACEPAD"
            }
            return .obj(["class": .string("H5T_STRING"),
                         "length": length.map { .int($0) } ?? .string("H5T_VARIABLE"),
                         "charSet": .string(utf8 ? "H5T_CSET_UTF8" : "H5T_CSET_ASCII"),
                         "strPad": .string(pad)])
        case .enumeration(let base, let members):
            return .obj(["class": .string("H5T_ENUM"), "base": type(base),
                         "mapping": .object(members.map { .init($0.name, .int($0.value)) })])
        case .compound(let members):
            return .obj(["class": .string("H5T_COMPOUND"),
                         "fields": .array(members.map { .obj(["name": .string($0.name), "type": type($0.type)]) })])
        case .unsupported(let why):
            // Listed so that a tree still opens; reading the values is refused.
            return .obj(["class": .string("H5T_OPAQUE"), "size": .int(0), "tag": .string("nxlua: \(why)")])
        }
    }

    public static func shape(_ s: NXDataspace) -> JSON {
        switch s.kind {
        case .null: return .obj(["class": .string("H5S_NULL")])
        case .scalar: return .obj(["class": .string("H5S_SCALAR")])
        case .simple:
            return .obj(["class": .string("H5S_SIMPLE"), "dims": .array(s.dims.map { .int($0) }),
                         "maxdims": .array(s.maxdims.map { $0.map { .int($0) } ?? .int(0) })])
        }
    }

    // MARK: values as JSON

    /// Values nested by `shape` (a scalar for an empty shape).
    public static func values(_ raw: NXRawValues, shape: [Int]) -> JSON {
        var index = 0
        func element() -> JSON {
            defer { index += 1 }
            return value(raw, at: index * raw.type.rawSize, raw.type)
        }
        func nest(_ axis: Int) -> JSON {
            if axis == shape.count { return element() }
            return .array((0..<shape[axis]).map { _ in nest(axis + 1) })
        }
        if raw.count == 0 && !shape.isEmpty && shape.reduce(1, *) != 0 { return .null }
        return nest(0)
    }

    static func value(_ raw: NXRawValues, at offset: Int, _ t: NXStorageType) -> JSON {
        let b = raw.bytes
        switch t {
        case .integer(let size, let signed), .enumeration(.integer(let size, let signed), _):
            var u: UInt64 = 0
            for k in 0..<size { u |= UInt64(b[offset + k]) << (8 * UInt64(k)) }
            if !signed && size == 8 && u > UInt64(Int64.max) { return .double(Double(u)) }
            if signed && size < 8 && (u >> (8 * UInt64(size) - 1)) & 1 == 1 { u |= ~0 << (8 * UInt64(size)) }
            return .int(Int64(bitPattern: u))
        case .float(let size):
            var u: UInt64 = 0
            for k in 0..<size { u |= UInt64(b[offset + k]) << (8 * UInt64(k)) }
            if size == 4 {
                let f = Float(bitPattern: UInt32(truncatingIfNeeded: u))
                // the float's own shortest text, read back by the client as the same float
                return f.isFinite ? .double(Double(f.description) ?? Double(f)) : .double(Double(f))
            }
            return .double(Double(bitPattern: u))
        case .string(let length, _, let padding):
            guard let length else {
                var idx: Int64 = 0
                for k in 0..<8 { idx |= Int64(b[offset + k]) << (8 * Int64(k)) }
                return .string(idx >= 0 && Int(idx) < raw.strings.count ? raw.strings[Int(idx)] : "")
            }
            var slice = b[offset..<(offset + length)]
            if let nul = slice.firstIndex(of: 0) { slice = slice[..<nul] }
            if padding == .spacePadded { while slice.last == 0x20 { slice = slice.dropLast() } }
            return .string(String(decoding: slice, as: UTF8.self))
        case .compound(let members):
            return .array(members.map { value(raw, at: offset + $0.offset, $0.type) })
        case .enumeration, .unsupported:
            return .null
        }
    }

    // MARK: binary

    /// The bytes h5pyd reads: packed elements as stored raw, except variable-length
    /// strings, which travel as a little-endian int32 byte count and the bytes.
    public static func wire(_ raw: NXRawValues) -> [UInt8] {
        guard raw.type.hasVariableLength else { return raw.bytes }
        var out: [UInt8] = []
        out.reserveCapacity(raw.bytes.count)
        let size = raw.type.rawSize
        func put(_ offset: Int, _ t: NXStorageType) {
            switch t {
            case .string(nil, _, _):
                var idx: Int64 = 0
                for k in 0..<8 { idx |= Int64(raw.bytes[offset + k]) << (8 * Int64(k)) }
                let s = idx >= 0 && Int(idx) < raw.strings.count ? Array(raw.strings[Int(idx)].utf8) : []
                let n = UInt32(s.count)
                out += [UInt8(n & 0xFF), UInt8((n >> 8) & 0xFF), UInt8((n >> 16) & 0xFF), UInt8(n >> 24)]
                out += s
            case .compound(let members):
                for m in members { put(offset + m.offset, m.type) }
            default:
                out += raw.bytes[offset..<(offset + t.rawSize)]
            }
        }
        for e in 0..<raw.count { put(e * size, raw.type) }
        return out
    }
}
