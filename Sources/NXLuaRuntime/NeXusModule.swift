#if canImport(Glibc)
import Glibc
#endif
import LuaBridge
import NDArray
import NeXus
import TerminalProgress

/// What `nx.group`, `nx.field`, `nx.link` and `nx.data` make: a description of an object
/// that is created when assigned into a group (`g.name = spec`).
final class NXSpec {
    enum Kind {
        case group(nxclass: String, children: [(String, Pending)], attrs: [(String, NXValue)])
        case field(Pending?, options: NXFieldOptions, attrs: [(String, NXValue)], name: String?)
        case hardLink(NXNode)
        case softLink(String)
        case externalLink(file: String, path: String)
        case data(signal: Pending, axes: [Pending], errors: Pending?, title: String?)
    }
    let kind: Kind
    init(_ kind: Kind) { self.kind = kind }
}

/// A value waiting to be written: plain data, a spec, or an object of an open file.
enum Pending {
    case value(NXValue)
    case spec(NXSpec)
    case node(NXNode)

    /// The name it carries (a field from a file, or nx.field{name=}).
    var name: String? {
        switch self {
        case .node(let n): return n.name
        case .spec(let s): if case .field(_, _, _, let name) = s.kind { return name }; return nil
        case .value: return nil
        }
    }
}

/// An `obj.attrs` proxy of any tree's group or field (written only in a local file).
final class AttrsBox: @unchecked Sendable {
    let node: any NXReadableNode
    init(_ node: any NXReadableNode) { self.node = node }
}

/// The `nx` module: NeXus files as Lua objects (thin: the NeXus core does the work).
enum NeXusModule {
    /// Settings shared by every file a state opens (nx.config).
    final class Config: @unchecked Sendable {
        var eagerLimit = 1000
        var lockTimeout: Double = 0
        var lockExpiry: Double = 28800
        var lockDirectory: String? = nil

        init() {
            let env = ProcessInfoLite.environment
            if let v = env["NX_LOCK"], let t = Double(v) { lockTimeout = t }
            if let v = env["NX_LOCKEXPIRY"], let t = Double(v) { lockExpiry = t }
            if let v = env["NX_LOCKDIRECTORY"], !v.isEmpty {
                lockDirectory = v
                if lockTimeout == 0 { lockTimeout = 10 }  // as nexusformat: a lock folder turns locking on
            }
            if let v = env["NX_MAXSIZE"], let n = Int(v) { eagerLimit = n }
        }

        var lockConfig: NXLock.Config? {
            lockTimeout > 0 ? NXLock.Config(timeout: lockTimeout, expiry: lockExpiry, directory: lockDirectory) : nil
        }
    }
    static let config = Config()

    static func fail(_ error: Error) -> LuaError {
        if let e = error as? LuaError { return e }
        if let e = error as? NeXusError { return .runtime(e.message) }
        if let e = error as? ArrayError { return .runtime(e.message) }
        return .runtime("\(error)")
    }

    static func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw fail(error) }
    }

    // MARK: values between Lua and the core

    /// Pushes a value read from a file: a number for 0-d numbers, an ndarray, a string,
    /// a (1-based, nested by shape) table of strings, or a table of records.
    static func push(_ v: NXValue, _ lua: Lua) throws {
        switch v {
        case .array(let a):
            try ArrayModule.push(a, lua)
        case .strings(let s, let shape):
            if shape.isEmpty { lua.push(s.first ?? ""); return }
            pushNested(shape, lua) { lua.push(s[$0]) }
        case .records(let r, let shape):
            func record(_ i: Int) {
                lua.ensureStack(4)
                lua.newTable(recordCount: r[i].count)
                for (name, value) in r[i] {
                    switch value {
                    case .integer(let n): lua.push(Int(n))
                    case .real(let x): lua.push(x)
                    case .text(let t): lua.push(t)
                    }
                    lua.rawSet(at: -2, key: name)
                }
            }
            if shape.isEmpty { record(0); return }
            pushNested(shape, lua, record)
        }
    }

    private static func pushNested(_ shape: [Int], _ lua: Lua, _ element: (Int) -> Void) {
        var flat = 0
        func level(_ d: Int) {
            lua.ensureStack(4)
            lua.newTable(arrayCount: shape[d])
            for k in 0..<shape[d] {
                if d == shape.count - 1 { element(flat); flat += 1 } else { level(d + 1) }
                lua.rawSet(at: -2, index: k + 1)
            }
        }
        level(0)
    }

    /// A Lua value as data to write: ndarray, number, boolean, string, or a table of
    /// numbers/booleans (nested) or of strings.
    static func value(_ call: LuaCall, _ i: Int32, what: String = "value") throws -> NXValue {
        let lua = call.lua
        if let a = ArrayModule.cls.object(at: i, in: lua) { return .array(a.array) }
        switch lua.type(at: i) {
        case .number, .boolean:
            let s = ArrayModule.scalar(lua, i)!
            let dtype: DType = lua.type(at: i) == .boolean ? .bool : (s.isInteger ? .int64 : .float64)
            let a = try wrap { try NDArray(zeros: [], dtype: dtype) }
            try wrap { try a.fill(s) }
            return .array(a)
        case .string:
            return .string(try call.string(i))
        case .table:
            let n = lua.rawLength(at: i)
            if n > 0, lua.rawGet(at: i, index: 1) == .string {
                lua.pop()
                var out: [String] = []
                for k in 1...n {
                    guard lua.rawGet(at: i, index: k) == .string, let s = lua.toString(at: -1) else {
                        lua.pop()
                        throw LuaError.runtime("\(what): a table of strings must hold only strings (entry \(k) is not)")
                    }
                    lua.pop()
                    out.append(s)
                }
                return .strings(out, shape: [n])
            }
            if n > 0 { lua.pop() }
            return .array(try ArrayModule.fromTable(call, i, dtype: nil))
        default:
            if let f = field.object(at: i, in: lua) { return try wrap { try f.read(nil) } }
            throw call.typeError(i, expected: "\(what) (ndarray, number, string or table)")
        }
    }

    /// What can be assigned into a group.
    static func pending(_ call: LuaCall, _ i: Int32) throws -> Pending {
        let lua = call.lua
        if let s = spec.object(at: i, in: lua) { return .spec(s) }
        if let g = localGroup(at: i, in: lua) { return .node(g) }
        if let f = localField(at: i, in: lua) { return .node(f) }
        if let g = readableGroup(at: i, in: lua) {
            throw LuaError.runtime("\(g.location): \(g.path): a group of an nx.remote tree cannot be copied into a file (assign its fields: their values are read)")
        }
        return .value(try value(call, i))  // a remote field: its value
    }

    static func options(_ call: LuaCall, _ i: Int32) throws -> (NXFieldOptions, [(String, NXValue)], String?) {
        var o = NXFieldOptions()
        var attrs: [(String, NXValue)] = []
        var name: String? = nil
        let lua = call.lua
        guard !call.isNoneOrNil(i) else { return (o, attrs, name) }
        try call.options(i, known: ["shape", "chunks", "maxshape", "dtype", "compression", "fillvalue", "name", "units", "long_name", "attrs"])
        let t = lua.absIndex(i)
        func intList(_ key: String, allowUnlimited: Bool = false) throws -> [Int?]? {
            guard lua.rawGet(at: t, key: key) != .nil else { lua.pop(); return nil }
            defer { lua.pop() }
            let top = lua.absIndex(-1)
            if lua.type(at: top) == .number { return [lua.toInteger(at: top)] }
            guard lua.type(at: top) == .table else { throw LuaError.runtime("nx.field option '\(key)' must be a table of integers") }
            var out: [Int?] = []
            for k in stride(from: 1, through: lua.rawLength(at: top), by: 1) {
                lua.rawGet(at: top, index: k)
                defer { lua.pop() }
                guard let n = lua.toInteger(at: -1) else { throw LuaError.runtime("nx.field option '\(key)' must be a table of integers") }
                if n < 0 {
                    guard allowUnlimited, n == -1 else { throw LuaError.runtime("nx.field option '\(key)': \(n) is not a size") }
                    out.append(nil)
                } else { out.append(n) }
            }
            return out
        }
        if let s = try intList("shape") { o.shape = s.map { $0 ?? 0 } }
        if let s = try intList("chunks") { o.chunks = s.map { $0 ?? 0 } }
        o.maxshape = try intList("maxshape", allowUnlimited: true)
        if lua.rawGet(at: t, key: "dtype") == .string {
            let n = lua.toString(at: -1)!
            guard let d = DType(name: n) else { lua.pop(); throw LuaError.runtime("nx.field: unknown dtype '\(n)'") }
            o.dtype = d
        }
        lua.pop()
        if lua.rawGet(at: t, key: "compression") == .string {
            let c = lua.toString(at: -1)!
            lua.pop()
            o.compression = try wrap { try NXCompression(parsing: c) }
        } else { lua.pop() }
        if lua.rawGet(at: t, key: "fillvalue") == .number { o.fillValue = lua.toNumber(at: -1) }
        lua.pop()
        if lua.rawGet(at: t, key: "name") == .string { name = lua.toString(at: -1) }
        lua.pop()
        if lua.rawGet(at: t, key: "units") == .string { attrs.append(("units", .string(lua.toString(at: -1)!))) }
        lua.pop()
        if lua.rawGet(at: t, key: "long_name") == .string { attrs.append(("long_name", .string(lua.toString(at: -1)!))) }
        lua.pop()
        if lua.rawGet(at: t, key: "attrs") == .table {
            attrs += try attributeTable(call, lua.absIndex(-1))
        }
        lua.pop()
        return (o, attrs, name)
    }

    static func attributeTable(_ call: LuaCall, _ t: Int32) throws -> [(String, NXValue)] {
        var out: [(String, NXValue)] = []
        try call.lua.forEachRaw(at: t) { k, v in
            guard let key = call.lua.toString(at: k), call.lua.type(at: k) == .string else { return }
            out.append((key, try value(call, v, what: "attribute '\(key)'")))
        }
        return out.sorted { $0.0 < $1.0 }
    }

    // MARK: creation in a group

    static func assign(_ g: NXGroup, _ name: String, _ p: Pending) throws {
        switch p {
        case .value(let v):
            if let existing = try g.child(name) as? NXField {
                try existing.write(v, at: nil)  // same shape: written in place, as nexusformat
            } else {
                try g.makeField(name, value: v)
            }
        case .node(let n):
            try g.copy(n, as: name)
        case .spec(let s):
            try create(g, name, s)
        }
    }

    static func create(_ g: NXGroup, _ name: String, _ s: NXSpec) throws {
        switch s.kind {
        case .group(let cls, let children, let attrs):
            let new = try g.makeGroup(name, nxclass: cls)
            for (n, v) in attrs { try new.setAttribute(n, v) }
            for (n, c) in children { try assign(new, n, c) }
        case .field(let p, let options, let attrs, _):
            let f: NXNode
            switch p {
            case nil: f = try g.makeField(name, value: nil, options: options)
            case .value(let v)?: f = try g.makeField(name, value: v, options: options)
            case .node(let n)?: f = try g.copy(n, as: name)
            case .spec?: throw NeXusError("nx.field takes data, not another nx.* description")
            }
            for (n, v) in attrs { try f.setAttribute(n, v) }
        case .hardLink(let target): try g.link(name, to: target)
        case .softLink(let path): try g.softLink(name, to: path)
        case .externalLink(let file, let path): try g.externalLink(name, file: file, path: path)
        case .data(let signal, let axes, let errors, let title):
            let d = try g.makeGroup(name, nxclass: "NXdata")
            let signalName = signal.name ?? "data"
            try place(d, signalName, signal)
            try d.setAttribute("signal", .string(signalName))
            var axisNames: [String] = []
            for (i, a) in axes.enumerated() {
                let n = a.name ?? "axis\(i)"
                try place(d, n, a)
                axisNames.append(n)
                try d.setAttribute("\(n)_indices", .array(try NDArray.full([], Double(i), dtype: .int32)))
            }
            if !axisNames.isEmpty { try d.setAttribute("axes", .strings(axisNames, shape: [axisNames.count])) }
            if let errors { try place(d, "\(signalName)_errors", errors) }
            if let title { try d.makeField("title", value: .string(title)) }
            // The @default chain: root -> entry -> this NXdata, where not set yet.
            if try !g.hasAttribute("default") { try g.setAttribute("default", .string(name)) }
            if g.path != "/", g.parent.path == "/", try !g.parent.hasAttribute("default") {
                try g.parent.setAttribute("default", .string(g.name))
            }
        }
    }

    /// A signal, axis or errors member of nx.data: same-file fields are hard-linked.
    private static func place(_ d: NXGroup, _ name: String, _ p: Pending) throws {
        if case .node(let n) = p, n.file === d.file { try d.link(name, to: n); return }
        try assign(d, name, p)
    }

    // MARK: writing (local files only; the classes are in NeXusModule+Read.swift)

    static func renameMethod<T>(_ node: @escaping @Sendable (T) -> any NXReadableNode) -> LuaMethodDecl<T> {
        LuaMethodDecl("rename", "obj:rename(newname) -> obj", "renames the object within its group; returns it under the new name (local files)") { call, obj in
            let node: NXNode = try writable(node(obj), "renaming")
            let newName = try call.string(2)
            let parent = node.parent
            try wrap { try node.rename(to: newName) }
            guard let renamed = try wrap({ try parent.child(newName) }) else { return 0 }
            pushReadable(renamed, call.lua)
            return 1
        }
    }

    /// The methods of a local file's groups (another tree's refuse: read-only).
    static let groupWriteMethods: [LuaMethodDecl<any NXReadableGroup>] = [
        renameMethod { $0 },
        LuaMethodDecl("flush", "f:flush()", "writes buffered data to disk, SWMR readers then see it (local files)") { call, g in
            let local: NXGroup = try writable(g, "flushing")
            try wrap { try local.file.flush() }
            return 0
        },
        LuaMethodDecl("swmr", "f:swmr()", "starts SWMR writing: file opened with {swmr = true}, every object created first (local files)") { call, g in
            let local: NXGroup = try writable(g, "SWMR writing")
            try wrap { try local.file.startSWMRWrite() }
            return 0
        },
    ]

    /// g.name = value | spec | object, g.name = nil (deletes).
    static let groupNewIndex: LuaFunctionBody = { call in
        let g = try groupAt(call)
        guard let local = g as? NXGroup else { throw readOnly(g, "assigning '\((try? call.string(2)) ?? "?")'") }
        let name = try call.string(2)
        if call.isNoneOrNil(3) {
            try wrap { try local.delete(name) }
            return 0
        }
        let p = try pending(call, 3)
        try wrap { try assign(local, name, p) }
        return 0
    }

    /// The methods of a local file's fields (another tree's refuse: read-only).
    static let fieldWriteMethods: [LuaMethodDecl<any NXReadableField>] = [
        LuaMethodDecl("append", "c:append(frame)", "appends a frame (or a block of frames) along the first, unlimited axis (local files)") { call, f in
            let local: NXField = try writable(f, "appending")
            let v = try value(call, 2)
            try wrap { try local.append(v) }
            return 0
        },
        LuaMethodDecl("resize", "c:resize(n)", "sets the length of the first axis, within maxshape (local files)") { call, f in
            let local: NXField = try writable(f, "resizing")
            try wrap { try local.resize(firstAxis: try call.integer(2)) }
            return 0
        },
        LuaMethodDecl("flush", "c:flush()", "flushes this field, SWMR writers once per frame (local files)") { call, f in
            let local: NXField = try writable(f, "flushing")
            try wrap { try local.flush() }
            return 0
        },
        renameMethod { $0 },
    ]

    /// c[selection] = value, c.attrname = value | nil.
    static let fieldNewIndex: LuaFunctionBody = { call in
        let f = try fieldAt(call)
        guard let local = f as? NXField else { throw readOnly(f, "writing into the field") }
        if call.lua.type(at: 2) == .string, let key = call.lua.toString(at: 2),
           key.first.map({ $0.isLetter || $0 == "_" }) == true {
            // c.units = "mm": an attribute, as nexusformat's field attributes.
            if call.isNoneOrNil(3) { try wrap { try local.deleteAttribute(key) } } else {
                let v = try value(call, 3, what: "attribute '\(key)'")
                try wrap { try local.setAttribute(key, v) }
            }
            return 0
        }
        let sel = try selection(call, 2)
        let v = try value(call, 3)
        try wrap { try local.write(v, at: sel) }
        return 0
    }

    /// The storage properties local and remote fields share (shape, dtype, ndim, size,
    /// maxshape, chunks): the number of values pushed, nil for another key.
    static func fieldProperty(_ f: any NXReadableField, _ key: String, _ lua: Lua) throws -> Int32? {
        switch key {
        case "shape": ArrayModule.pushShape(try wrap { try f.shape }, lua)
        case "dtype": lua.push(try wrap { try f.elementType.name })
        case "ndim": lua.push(try wrap { try f.shape.count })
        case "size": lua.push(try wrap { try f.count })
        case "maxshape":
            let m = try wrap { try f.maxshape }
            lua.newTable(arrayCount: m.count)
            for (i, d) in m.enumerated() { lua.push(d ?? -1); lua.rawSet(at: -2, index: i + 1) }
        case "chunks":
            guard let c = try wrap({ try f.chunks }) else { return 0 }
            ArrayModule.pushShape(c, lua)
        default: return nil
        }
        return 1
    }

    static func joined(_ base: String, _ rel: String) -> String {
        rel.hasPrefix("/") ? rel : (base == "/" ? "/" + rel : base + "/" + rel)
    }

    static func selection(_ call: LuaCall, _ i: Int32) throws -> Selection {
        if call.lua.type(at: i) == .number {
            guard let k = call.lua.toInteger(at: i) else {
                return Selection([.index(.float(call.lua.toNumber(at: i)!))])
            }
            return Selection([.index(.int(k))])
        }
        return try wrap { try Selection(parsing: try call.string(i)) }
    }

    /// Between blocks of a streaming reduction: Ctrl-C stops it, and a bar shows on a
    /// terminal once it takes longer than half a second.
    static func progress(_ what: String, _ f: any NXReadableField) -> (Int, Int) throws -> Void {
        let rows = (try? f.shape.first) ?? 0
        let rowBytes = ((try? f.shape.dropFirst().reduce(1, *)) ?? 0) * (((try? f.elementType).flatMap { if case .numeric(let d) = $0 { return d.itemSize } else { return nil } }) ?? 1)
        let bar = ProgressBar(label: "\(what) \(f.name)", total: rows, unit: "rows", bytesPerUnit: rowBytes)
        return { done, total in
            try CoreModule.checkStopped(what)
            bar.update(done)
            if done >= total { bar.finish() }
        }
    }

    static let attrs: LuaClass<AttrsBox> = LuaClass(
        "NXattrs",
        summary: "the attributes of a group or field: a.units, a.units = \"mm\", a.units = nil, pairs(a)",
        metamethods: [
            "__newindex": { call in
                let box = try call.object(1, attrs)
                let key = try call.string(2)
                guard let node = box.node as? NXNode else { throw readOnly(box.node, "setting an attribute") }
                if call.isNoneOrNil(3) { try wrap { try node.deleteAttribute(key) }; return 0 }
                let v = try value(call, 3, what: "attribute '\(key)'")
                try wrap { try node.setAttribute(key, v) }
                return 0
            },
            "__len": { call in call.returns(try wrap { try call.object(1, attrs).node.attributeNames().count }) },
            "__pairs": { call in
                let box = try call.object(1, attrs)
                let it = Cursor(try wrap { try box.node.attributeNames() })
                call.lua.push(function: "next") { inner in
                    guard let name = it.next() else { return 0 }
                    inner.lua.push(name)
                    guard let v = try wrap({ try box.node.attribute(name) }) else { inner.lua.pushNil(); return 2 }
                    try push(v, inner.lua)
                    return 2
                }
                return 1
            },
            "__pretty": { call in
                let box = try call.object(1, attrs)
                return call.returns(try wrap { try box.node.attributes().map { "@\($0.name) = \(NXText.attribute($0.value))" }.joined(separator: "\n") })
            },
        ],
        index: { call, box in
            guard let v = try wrap({ try box.node.attribute(try call.string(2)) }) else { return 0 }
            try push(v, call.lua)
            return 1
        },
        completions: { box in (try? box.node.attributeNames()) ?? [] },
        describe: { box in
            (try? box.node.attributes().map { "@\($0.name) = \(NXText.attribute($0.value))" }.joined(separator: "\n")) ?? "attributes (closed file)"
        }
    )

    static let spec: LuaClass<NXSpec> = LuaClass(
        "nx.new",
        summary: "a group, field, link or NXdata to be created by assigning it into a group",
        describe: { s in
            switch s.kind {
            case .group(let c, _, _): return "nx.group(\"\(c)\")"
            case .field: return "nx.field(...)"
            case .hardLink(let n): return "nx.link(\(n.path))"
            case .softLink(let p): return "nx.link(\"\(p)\")"
            case .externalLink(let f, let p): return "nx.link(\"\(p)\", \"\(f)\")"
            case .data: return "nx.data{...}"
            }
        }
    )

    // MARK: the module

    static func modeArgument(_ call: LuaCall, _ i: Int32) throws -> NXFile.Mode {
        guard let m = try call.optString(i) else { return .read }
        guard let mode = NXFile.Mode(rawValue: m) else {
            throw LuaError.argument(i, "invalid mode '\(m)' (expected \"r\", \"rw\", \"w\", \"w-\" or \"a\")")
        }
        return mode
    }

    static func pendingField(_ call: LuaCall, _ t: Int32, _ key: String) throws -> Pending? {
        let lua = call.lua
        defer { lua.pop() }
        guard lua.rawGet(at: t, key: key) != .nil else { return nil }
        return try pending(call, lua.absIndex(-1))
    }

    static let declaration = LuaModuleDecl(
        "nx",
        summary: "NeXus/HDF5 files: load, navigate, read slices, write",
        help: """
        local f = nx.load("scan.nxs")           -- "r" (default), "rw", "w", "w-", "a"
        f.entry.data.counts[100]                -- one frame, read from disk now
        f.entry.data.counts["0:10, ::2, :"]     -- 0-based, half-open NumPy slices
        print(f)                                -- the tree, as nexusformat's
        Indices are 0-based as in h5py and NeXpy; a:totable() gives 1-based Lua tables.
        """,
        functions: [
            LuaFunctionDecl("load", "nx.load(path [, mode [, options]]) -> root",
                            "opens a NeXus/HDF5 file; modes r, rw, w, w-, a",
                            help: "options: {swmr = true} to read a file another process is writing (or to create one for SWMR writing), {lock = seconds} to take nexusformat's lock file") { call in
                let path = try call.string(1)
                let mode = try modeArgument(call, 2)
                var o = NXFile.Options()
                o.eagerLimit = config.eagerLimit
                o.lock = config.lockConfig
                if !call.isNoneOrNil(3) {
                    try call.options(3, known: ["swmr", "lock"])
                    let lua = call.lua
                    if lua.rawGet(at: 3, key: "swmr") != .nil { o.swmr = lua.toBoolean(at: -1) }
                    lua.pop()
                    if lua.rawGet(at: 3, key: "lock") == .number {
                        let t = lua.toNumber(at: -1)!
                        o.lock = t > 0 ? NXLock.Config(timeout: t, expiry: config.lockExpiry, directory: config.lockDirectory) : nil
                    }
                    lua.pop()
                }
                let file = try wrap { try NXFile(path: path, mode: mode, options: o) }
                group.push(file.root, to: call.lua)
                return 1
            },
            LuaFunctionDecl("group", "nx.group(nxclass [, children [, attrs]]) -> new group",
                            "a group to create by assignment: f.entry = nx.group(\"NXentry\", {title = \"run 1\"})") { call in
                let cls = try call.string(1)
                var children: [(String, Pending)] = []
                var attrList: [(String, NXValue)] = []
                if !call.isNoneOrNil(2) {
                    try call.table(2)
                    try call.lua.forEachRaw(at: 2) { k, v in
                        guard call.lua.type(at: k) == .string, let key = call.lua.toString(at: k) else { return }
                        children.append((key, try pending(call, v)))
                    }
                    children.sort { $0.0 < $1.0 }
                }
                if !call.isNoneOrNil(3) { try call.table(3); attrList = try attributeTable(call, 3) }
                spec.push(NXSpec(.group(nxclass: cls, children: children, attrs: attrList)), to: call.lua)
                return 1
            },
            LuaFunctionDecl("field", "nx.field(value [, options]) -> new field",
                            "a field with storage options: {dtype=, units=, attrs={}, chunks={}, compression=\"gzip:4\"|\"lz4\"|\"bshuf\"|\"blosc\"|\"lzf\", maxshape={-1, 512, 512}, fillvalue=, shape=, name=}",
                            help: "Without a value (nil) give shape (and dtype): an empty field to fill or append to.") { call in
                let p: Pending? = call.isNoneOrNil(1) ? nil : try pending(call, 1)
                let (o, attrList, name) = try options(call, 2)
                if p == nil && o.shape == nil { throw LuaError.argument(1, "a value, or options with a shape, expected") }
                spec.push(NXSpec(.field(p, options: o, attrs: attrList, name: name)), to: call.lua)
                return 1
            },
            LuaFunctionDecl("link", "nx.link(target [, file]) -> new link",
                            "a hard link to an object of the same file (the target gets @target), a soft link to a path, or an external link to a path in another file") { call in
                let lua = call.lua
                if let g = localGroup(at: 1, in: lua) { spec.push(NXSpec(.hardLink(g)), to: lua); return 1 }
                if let f = localField(at: 1, in: lua) { spec.push(NXSpec(.hardLink(f)), to: lua); return 1 }
                if let n: any NXReadableNode = readableGroup(at: 1, in: lua) ?? readableField(at: 1, in: lua) {
                    throw LuaError.runtime("\(n.location): \(n.path): nx.link links objects of a local file, not of an nx.remote tree")
                }
                let path = try call.string(1)
                if let file = try call.optString(2) {
                    spec.push(NXSpec(.externalLink(file: file, path: path)), to: lua)
                } else {
                    spec.push(NXSpec(.softLink(path)), to: lua)
                }
                return 1
            },
            LuaFunctionDecl("data", "nx.data{signal=, axes={...}, errors=, title=} -> new NXdata",
                            "an NXdata with @signal, @axes and AXISNAME_indices; assigning it sets missing @default attributes up to the root",
                            help: "signal, axes and errors are arrays, fields of a file, or nx.field(value, {name = \"counts\"}); unnamed arrays are called data, axis0, axis1, ...") { call in
                try call.options(1, known: ["signal", "axes", "errors", "title"])
                guard let signal = try pendingField(call, 1, "signal") else { throw LuaError.argument(1, "nx.data needs a signal") }
                var axes: [Pending] = []
                if call.lua.rawGet(at: 1, key: "axes") == .table {
                    let t = call.lua.absIndex(-1)
                    for k in stride(from: 1, through: call.lua.rawLength(at: t), by: 1) {
                        call.lua.rawGet(at: t, index: k)
                        axes.append(try pending(call, call.lua.absIndex(-1)))
                        call.lua.pop()
                    }
                }
                call.lua.pop()
                let errors = try pendingField(call, 1, "errors")
                var title: String? = nil
                if call.lua.rawGet(at: 1, key: "title") == .string { title = call.lua.toString(at: -1) }
                call.lua.pop()
                spec.push(NXSpec(.data(signal: signal, axes: axes, errors: errors, title: title)), to: call.lua)
                return 1
            },
            LuaFunctionDecl("config", "nx.config([settings]) -> settings",
                            "reads or changes settings: lock (seconds to wait, 0 = off), lockexpiry (s), lockdirectory, maxsize (eager-read limit, elements)",
                            help: "Environment: NX_LOCK, NX_LOCKEXPIRY, NX_LOCKDIRECTORY, NX_MAXSIZE (as nexusformat).") { call in
                let lua = call.lua
                if !call.isNoneOrNil(1) {
                    try call.options(1, known: ["lock", "lockexpiry", "lockdirectory", "maxsize"])
                    if lua.rawGet(at: 1, key: "lock") == .number { config.lockTimeout = lua.toNumber(at: -1)! } else if lua.type(at: -1) == .boolean { config.lockTimeout = lua.toBoolean(at: -1) ? 10 : 0 }
                    lua.pop()
                    if lua.rawGet(at: 1, key: "lockexpiry") == .number { config.lockExpiry = lua.toNumber(at: -1)! }
                    lua.pop()
                    if lua.rawGet(at: 1, key: "lockdirectory") == .string { config.lockDirectory = lua.toString(at: -1) }
                    lua.pop()
                    if lua.rawGet(at: 1, key: "maxsize") == .number { config.eagerLimit = lua.toInteger(at: -1) ?? config.eagerLimit }
                    lua.pop()
                }
                lua.newTable(recordCount: 4)
                lua.push(config.lockTimeout); lua.rawSet(at: -2, key: "lock")
                lua.push(config.lockExpiry); lua.rawSet(at: -2, key: "lockexpiry")
                lua.push(config.lockDirectory); lua.rawSet(at: -2, key: "lockdirectory")
                lua.push(config.eagerLimit); lua.rawSet(at: -2, key: "maxsize")
                return 1
            },
            remoteFunction,
            CatalogModule.catalogFunction,
        ],
        classes: [group, field, attrs, spec, remote,
                  CatalogModule.catalogClass, CatalogModule.entryClass]
    )
}

/// The process environment without Foundation (start-up time).
enum ProcessInfoLite {
    static var environment: [String: String] {
        var out: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return out
    }
}

/// The position of a `pairs` iteration (Lua calls the iterator on one thread).
final class Cursor: @unchecked Sendable {
    private let names: [String]
    private var k = 0
    init(_ names: [String]) { self.names = names }
    func next() -> String? {
        guard k < names.count else { return nil }
        defer { k += 1 }
        return names[k]
    }
}
