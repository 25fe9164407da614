import NDArray
import NeXus
import RemoteServer

/// A dataset's or attribute's type as the HDF REST API describes it.
public struct RemoteType: Equatable, Sendable {
    public let element: ElementType
    /// Numbers stored big-endian (HSDS keeps a file's byte order; nxlua serve converts).
    public let bigEndian: Bool

    public init(element: ElementType, bigEndian: Bool) {
        self.element = element
        self.bigEndian = bigEndian
    }

    /// `{"class": "H5T_INTEGER", "base": "H5T_STD_I32LE"}`, floats, strings with
    /// `length`/`charSet`, enums (h5py's booleans: FALSE/TRUE over int8), compounds.
    public init(json t: JSON) {
        switch t {
        case .string(let base):  // a predefined type given by name
            (element, bigEndian) = RemoteType.base(base).map { (.numeric($0.0), $0.1) } ?? (.unsupported(base), false)
            return
        default: break
        }
        let cls = t["class"]?.stringValue ?? "?"
        switch cls {
        case "H5T_INTEGER", "H5T_FLOAT":
            let base = t["base"]?.stringValue ?? ""
            if let (d, be) = RemoteType.base(base) { (element, bigEndian) = (.numeric(d), be) } else { (element, bigEndian) = (.unsupported(base.isEmpty ? cls : base), false) }
        case "H5T_ENUM":
            let base = RemoteType(json: t["base"] ?? .null)
            // names as `mapping` {"FALSE": 0, ...} (nxlua serve) or `members` [{name, value}] (HSDS)
            var names: Set<String> = []
            if case .object(let m)? = t["mapping"] { names = Set(m.map(\.key)) }
            if case .array(let m)? = t["members"] { names = Set(m.compactMap { $0["name"]?.stringValue }) }
            if names == ["FALSE", "TRUE"], case .numeric(let d) = base.element, d.itemSize == 1 {
                (element, bigEndian) = (.numeric(.bool), false)
            } else {
                (element, bigEndian) = (base.element, base.bigEndian)
            }
        case "H5T_STRING":
            let variable = t["length"]?.stringValue == "H5T_VARIABLE"
            (element, bigEndian) = (.string(variable: variable, utf8: t["charSet"]?.stringValue == "H5T_CSET_UTF8"), false)
        case "H5T_COMPOUND":
            var members: [ElementType.Member] = []
            if case .array(let fields)? = t["fields"] {
                for f in fields { members.append(.init(name: f["name"]?.stringValue ?? "?", type: RemoteType(json: f["type"] ?? .null).element)) }
            }
            (element, bigEndian) = (.compound(members), false)
        default:
            (element, bigEndian) = (.unsupported(cls), false)
        }
    }

    /// H5T_STD_I32LE -> (int32, little-endian); H5T_IEEE_F64BE -> (float64, big-endian).
    static func base(_ name: String) -> (DType, Bool)? {
        let be = name.hasSuffix("BE")
        let core = name.hasSuffix("BE") || name.hasSuffix("LE") ? String(name.dropLast(2)) : name
        let table: [String: DType] = [
            "H5T_STD_I8": .int8, "H5T_STD_I16": .int16, "H5T_STD_I32": .int32, "H5T_STD_I64": .int64,
            "H5T_STD_U8": .uint8, "H5T_STD_U16": .uint16, "H5T_STD_U32": .uint32, "H5T_STD_U64": .uint64,
            "H5T_IEEE_F32": .float32, "H5T_IEEE_F64": .float64,
        ]
        return table[core].map { ($0, be) }
    }
}

/// A dataspace: `{"class": "H5S_SIMPLE", "dims": [...], "maxdims": [...]}`, scalar or null.
public struct RemoteShape: Equatable, Sendable {
    public let dims: [Int]
    /// nil for unlimited axes.
    public let maxdims: [Int?]
    public let isScalar: Bool
    public let isNull: Bool

    public init(json s: JSON) {
        let cls = s["class"]?.stringValue ?? "H5S_SIMPLE"
        if cls == "H5S_SCALAR" { (dims, maxdims, isScalar, isNull) = ([], [], true, false); return }
        if cls == "H5S_NULL" { (dims, maxdims, isScalar, isNull) = ([0], [0], false, true); return }
        var d: [Int] = []
        if case .array(let a)? = s["dims"] { d = a.map { $0.intValue ?? 0 } }
        var m: [Int?] = d
        if case .array(let a)? = s["maxdims"], a.count == d.count {
            // HSDS writes 0 or "H5S_UNLIMITED" for unlimited axes
            m = a.map { v in v.intValue.flatMap { $0 > 0 ? $0 : nil } }
        }
        (dims, maxdims, isScalar, isNull) = (d, m, false, false)
    }
}

/// Values in JSON (attributes, small datasets, strings and compounds) into NXValue.
enum RemoteValues {
    static func decode(_ v: JSON, type: RemoteType, shape: [Int], what: String) throws -> NXValue {
        var flat: [JSON] = []
        func collect(_ j: JSON, depth: Int) {
            if depth < shape.count, case .array(let items) = j {
                for i in items { collect(i, depth: depth + 1) }
            } else {
                flat.append(j)
            }
        }
        collect(v, depth: 0)
        let n = shape.reduce(1, *)
        guard flat.count == n else {
            throw RemoteError("\(what): the server sent \(flat.count) values for shape \(NDArray.describe(shape))")
        }
        switch type.element {
        case .numeric(let d):
            let ops: [Operand] = try flat.map { j in
                switch j {
                case .int(let i): return .integer(i)
                case .double(let x): return .float(x)
                case .bool(let b): return .integer(b ? 1 : 0)
                case .string(let s) where s == "NaN": return .float(.nan)
                case .string(let s) where s == "Infinity": return .float(.infinity)
                case .string(let s) where s == "-Infinity": return .float(-.infinity)
                default: throw RemoteError("\(what): a number was expected, the server sent \(j.text)")
                }
            }
            do { return .array(try NDArray.from(ops, shape: shape, dtype: d)) } catch let e as ArrayError { throw RemoteError("\(what): \(e.message)") }
        case .string:
            return .strings(flat.map { $0.stringValue ?? $0.text }, shape: shape)
        case .compound(let members):
            var records: [[(name: String, value: NXScalar)]] = []
            for r in flat {
                var values: [JSON] = []
                if case .array(let a) = r { values = a } else if case .object(let m) = r { values = m.map(\.value) }
                guard values.count == members.count else { throw RemoteError("\(what): a record of \(members.count) members expected, got \(r.text)") }
                records.append(zip(members, values).map { m, v in
                    switch (m.type, v) {
                    case (.numeric(let d), _) where d.isFloat: return (m.name, .real(v.doubleValue ?? .nan))
                    case (.numeric, .int(let i)): return (m.name, .integer(i))
                    case (.numeric, _): return (m.name, .real(v.doubleValue ?? .nan))
                    default: return (m.name, .text(v.stringValue ?? v.text))
                    }
                })
            }
            return .records(records, shape: shape)
        case .unsupported(let what2):
            throw RemoteError("\(what): values of type \(what2) are not supported")
        }
    }

    /// Swaps the bytes of each element (big-endian data sent as stored).
    static func byteSwap(_ p: UnsafeMutableRawBufferPointer, itemSize: Int) {
        guard itemSize > 1 else { return }
        let b = p.bindMemory(to: UInt8.self)
        var i = 0
        while i + itemSize <= b.count {
            var lo = i, hi = i + itemSize - 1
            while lo < hi { b.swapAt(lo, hi); lo += 1; hi -= 1 }
            i += itemSize
        }
    }
}

/// The selection as the HDF REST API writes it, and big reads split into requests.
public enum RemoteSelection {
    /// `[a:b:s,...]` for resolved axes, read forward (a negative step as its mirror).
    public static func text(_ axes: [Selection.Axis]) -> String {
        "[" + axes.map { a in
            let step = abs(a.step)
            let first = a.step > 0 || a.count == 0 ? a.start : a.start + (a.count - 1) * a.step
            let stop = first + max(0, a.count - 1) * step + 1
            return "\(first):\(stop):\(step)"
        }.joined(separator: ",") + "]"
    }

    /// Splits the first axis so that each piece is at most `maxBytes` (pieces of whole
    /// rows; the rest of the selection unchanged). The axes are resolved and forward.
    public static func split(_ axes: [Selection.Axis], itemSize: Int, maxBytes: Int) throws -> [[Selection.Axis]] {
        let total = axes.reduce(itemSize) { $0 * $1.count }
        guard total > maxBytes, let first = axes.first else { return [axes] }
        let rowBytes = axes.dropFirst().reduce(itemSize) { $0 * $1.count }
        guard rowBytes <= maxBytes else {
            throw RemoteError("one row of the selection is \(rowBytes) bytes, more than the server's max_request_size (\(maxBytes) bytes)")
        }
        let rowsPerPiece = max(1, maxBytes / rowBytes)
        var pieces: [[Selection.Axis]] = []
        var done = 0
        while done < first.count {
            let n = min(rowsPerPiece, first.count - done)
            var a = first
            a.start = first.start + done * first.step
            a.count = n
            pieces.append([a] + axes.dropFirst())
            done += n
        }
        return pieces
    }
}
