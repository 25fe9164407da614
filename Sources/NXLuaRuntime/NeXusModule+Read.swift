import LuaBridge
import NDArray
import NeXus

/// The tree binding, written once over the NeXus core's NXReadable protocols: one Lua
/// class for the groups (NXgroup) and one for the fields (NXfield) of every tree: local
/// files (NXGroup, NXField), nx.remote (RemoteGroup, RemoteField) and whatever tree comes
/// next, which needs nothing here but its conformance. Reading goes through the protocols
/// only; the writing methods (NeXusModule.swift) take a local object and refuse any
/// other tree with the "read-only remote file" error (`writable`).
extension NeXusModule {
    static let group: LuaClass<any NXReadableGroup> = LuaClass(
        "NXgroup",
        summary: "a NeXus group of a file or of an nx.remote tree (a file's root is one); children by name, path or class",
        help: """
        g.entry, g["entry/data"], g["/entry/data/counts"]   children (0-based data inside)
        g.NXdata                  the direct children of a class, as a list
        for name, obj in pairs(g) do ... end                 children in natural order
        g.attrs.default, g.title  attributes (the shortcut works when no child has the name)
        g.name = nx.group("NXsample"), g.x = array.arange(5), g.name = nil   (writing)
        Methods win over child names: reach a child called "tree" by g["./tree"] or g:child("tree").
        The groups of nx.remote trees are of this class too: only the values you index travel,
        and writing (assigning, rename, flush, swmr) raises "read-only remote file".
        """,
        methods: groupReadMethods + groupWriteMethods,
        metamethods: groupMetamethods.merging(["__newindex": groupNewIndex]) { $1 },
        index: { call, g in
            if g.path == "/", call.lua.type(at: 2) == .string, call.lua.toString(at: 2) == "mode" {
                call.lua.push((g as? NXGroup)?.file.mode.rawValue ?? "r")  // other trees are read-only
                return 1
            }
            return try groupIndex(call, g)
        },
        completions: { g in groupCompletions(g) },
        close: { g in if g.path == "/", let local = g as? NXGroup { try wrap { try local.file.close() } } },
        describe: { g in (try? g.tree()) ?? "\(g.location): \(g.path)\(g is NXGroup ? " (closed file)" : "")" }
    )

    static let field: LuaClass<any NXReadableField> = LuaClass(
        "NXfield",
        summary: "a NeXus field of a file or of an nx.remote tree: lazy, indexing reads exactly the slice asked for",
        help: """
        c.shape, c.dtype, c.ndim, c.size, c.maxshape, c.chunks, c.compression, c.layout, c.units
        c[100], c["0:50, 100:200, ::2"], c["..., -1"]   0-based NumPy slices -> ndarray
        c:read()                  the whole field;  c.nxvalue  the same
        c["0:10"] = a; c:append(frame)    writing (mode "rw"/"w"/"a")
        The fields of nx.remote trees are of this class too: only the slices you index travel,
        reductions stream blocks of rows over HTTP, and writing raises "read-only remote file".
        """,
        methods: fieldReadMethods + fieldWriteMethods,
        metamethods: fieldMetamethods.merging(["__newindex": fieldNewIndex]) { $1 },
        index: { call, f in try fieldIndex(call, f) },
        completions: { f in fieldCompletions(f) },
        describe: { f in
            if let local = f as? NXField, !local.file.isOpen { return "\(local.file.path): \(f.path) (closed file)" }
            return describeField(f)
        }
    )

    /// Pushes a node of any tree with the class of its kind.
    static func pushReadable(_ n: any NXReadableNode, _ lua: Lua) {
        if let g = n.readableGroup { group.push(g, to: lua) } else if let f = n.readableField { field.push(f, to: lua) } else { lua.pushNil() }
    }

    static func pushReadableList(_ nodes: [any NXReadableNode], _ lua: Lua) {
        lua.newTable(arrayCount: nodes.count)
        for (i, n) in nodes.enumerated() { pushReadable(n, lua); lua.rawSet(at: -2, index: i + 1) }
    }

    /// The group of any tree at stack index `i`, nil for anything else.
    static func readableGroup(at i: Int32, in lua: Lua) -> (any NXReadableGroup)? { group.object(at: i, in: lua) }

    /// The field of any tree at stack index `i`, nil for anything else.
    static func readableField(at i: Int32, in lua: Lua) -> (any NXReadableField)? { field.object(at: i, in: lua) }

    /// The group of a local file at stack index `i`, nil for anything else (a remote one too).
    static func localGroup(at i: Int32, in lua: Lua) -> NXGroup? { group.object(at: i, in: lua) as? NXGroup }

    /// The field of a local file at stack index `i`, nil for anything else (a remote one too).
    static func localField(at i: Int32, in lua: Lua) -> NXField? { field.object(at: i, in: lua) as? NXField }

    /// A bad argument's error for a function that takes objects of local files only: for an
    /// object of another tree (nx.remote), one that says so (the Lua type names are alike).
    static func typeError(_ call: LuaCall, _ i: Int32, expected: String) -> LuaError {
        if let n: any NXReadableNode = readableGroup(at: i, in: call.lua) ?? readableField(at: i, in: call.lua), !(n is NXNode) {
            return .argument(i, "\(expected) expected, got \(n.location): \(n.path) of an nx.remote tree (a local file is needed; r:eval runs code next to the data)")
        }
        return call.typeError(i, expected: expected)
    }

    /// The writer's refusal for a tree that cannot be written (nx.remote's).
    static func readOnly(_ node: any NXReadableNode, _ what: String) -> LuaError {
        .runtime("\(node.location): \(node.path): read-only remote file (\(what) is not possible over nx.remote)")
    }

    /// The local object behind `node` for writing, else the read-only refusal.
    static func writable<T: NXNode>(_ node: any NXReadableNode, _ what: String) throws -> T {
        guard let local = node as? T else { throw readOnly(node, what) }
        return local
    }

    static let commonProperties: [String] = ["nxname", "nxpath", "nxclass", "nxfilename", "parent", "root", "attrs"]

    /// nxname, nxpath, nxclass, nxfilename, parent, root, attrs: true when `key` was one.
    static func nodeProperty(_ node: any NXReadableNode, _ key: String, _ lua: Lua) throws -> Bool {
        switch key {
        case "nxname": lua.push(node.name)
        case "nxpath": lua.push(node.path)
        case "nxclass": lua.push(node.nxclass)
        case "nxfilename", "filename": lua.push(node.location)
        case "parent", "nxgroup": pushReadable(node.parentGroup, lua)
        case "root", "nxroot": pushReadable(node.rootGroup, lua)
        case "attrs": attrs.push(AttrsBox(node), to: lua)
        default: return false
        }
        return true
    }

    /// An attribute by name as a value, pushed: false when there is none.
    static func attrShortcut(_ node: any NXReadableNode, _ key: String, _ lua: Lua) throws -> Bool {
        guard let v = try wrap({ try node.attribute(key) }) else { return false }
        try push(v, lua)
        return true
    }

    static func treeMethod<T>(_ node: @escaping @Sendable (T) -> any NXReadableNode) -> LuaMethodDecl<T> {
        LuaMethodDecl("tree", "obj:tree([\"short\"])",
                      "prints the tree below obj (as nexusformat's .tree); \"short\": obj and one line per child (.short_tree)") { call, obj in
            let form = try call.optString(2)
            guard form == nil || form == "short" else { throw LuaError.argument(2, "\"short\" or nothing expected, got \"\(form!)\"") }
            let n = node(obj)
            let text = try wrap { try form == "short" ? n.shortTree() : n.tree() }
            try call.lua.getGlobal("print")
            call.lua.push(text)
            try call.lua.pcall(nargs: 1, nresults: 0)
            return 0
        }
    }

    // MARK: groups

    /// The methods every group has, whatever its tree.
    static let groupReadMethods: [LuaMethodDecl<any NXReadableGroup>] = [
        LuaMethodDecl("child", "g:child(name) -> obj|nil", "the child called name (also when a method has that name)") { call, g in
            guard let c = try wrap({ try g.childNode(try call.string(2)) }) else { return 0 }
            pushReadable(c, call.lua)
            return 1
        },
        LuaMethodDecl("keys", "g:keys() -> {names}", "the names of the children, in natural order") { call, g in
            call.lua.push(try wrap { try g.childNames() })
            return 1
        },
        LuaMethodDecl("component", "g:component(nxclass) -> {objects}", "direct children of an NX class") { call, g in
            pushReadableList(try wrap { try g.childNodes(ofClass: try call.string(2)) }, call.lua)
            return 1
        },
        LuaMethodDecl("find", "g:find(nxclass) -> {objects}", "all groups of an NX class below g (depth first)") { call, g in
            pushReadableList(try wrap { try g.findNodes(try call.string(2)) }, call.lua)
            return 1
        },
        LuaMethodDecl("default", "g:default() -> NXdata|nil",
                      "the NXdata the @default chain leads to (root -> entry -> data), else the first one") { call, g in
            guard let d = try wrap({ try g.defaultDataGroup() }) else { return 0 }
            pushReadable(d, call.lua)
            return 1
        },
        LuaMethodDecl("refresh", "g:refresh()",
                      "forgets cached children and shapes, to see what another writer added (nx.remote: asks the server again)") { call, g in
            try wrap { try g.refresh() }
            return 0
        },
        treeMethod { $0 },
        PlotModule.plotMethod(), PlotModule.oplotMethod(), PlotModule.logplotMethod(), PlotModule.projectMethod(),
        EventsModule.histogramMethod(),
    ]

    /// d["1.5:2.5, :"] on an NXdata: the signal sliced, float bounds by axis value.
    static func dataIndex(_ call: LuaCall, _ g: any NXReadableGroup) throws -> Int32 {
        guard let s = try wrap({ try g.signalField() }) else {
            throw LuaError.runtime("\(g.location): \(g.path): not an NXdata with a signal; index its fields instead")
        }
        let sel = try wrap { try g.positions(try selection(call, 2)) }
        try push(try wrap { try s.read(sel) }, call.lua)
        return 1
    }

    /// g.key for any group: properties, NXdata's signal/axes/errors, paths, children,
    /// class lists, attributes, and NXdata slices by axis value.
    static func groupIndex(_ call: LuaCall, _ g: any NXReadableGroup) throws -> Int32 {
        let lua = call.lua
        if lua.type(at: 2) == .number { return try dataIndex(call, g) }
        let key = try call.string(2)
        if try nodeProperty(g, key, lua) { return 1 }
        switch key {
        case "nxsignal": if let s = try wrap({ try g.signalField() }) { pushReadable(s, lua); return 1 }; return 0
        case "nxerrors": if let s = try wrap({ try g.errorsField() }) { pushReadable(s, lua); return 1 }; return 0
        case "nxaxes":
            let axes = try wrap { try g.axisFields() }
            lua.newTable(arrayCount: axes.count)
            for (i, a) in axes.enumerated() {
                if let a { pushReadable(a, lua) } else { lua.push(false) }
                lua.rawSet(at: -2, index: i + 1)
            }
            return 1
        default: break
        }
        if key.contains("/") || key == "." || key == ".." {
            guard let n = try wrap({ try g.resolveNode(key) }) else {
                throw LuaError.runtime("\(g.location): \(joined(g.path, key)): no such object")
            }
            pushReadable(n, lua)
            return 1
        }
        if let c = try wrap({ try g.childNode(key) }) { pushReadable(c, lua); return 1 }
        if key.hasPrefix("NX"), key.count > 2, key.dropFirst(2).allSatisfy({ $0.isLowercase || $0 == "_" }) {
            pushReadableList(try wrap { try g.childNodes(ofClass: key) }, lua)
            return 1
        }
        if try attrShortcut(g, key, lua) { return 1 }
        if g.nxclass == "NXdata", key.contains(":") || key.contains(",") || Double(key) != nil {
            return try dataIndex(call, g)
        }
        return 0
    }

    static func groupCompletions(_ g: any NXReadableGroup) -> [String] {
        ((try? g.childNames()) ?? []) + commonProperties + ["nxsignal", "nxaxes", "nxerrors"] + ((try? g.attributeNames()) ?? [])
    }

    /// #g, pairs(g) and print(g) of any group.
    static let groupMetamethods: [String: LuaFunctionBody] = [
        "__len": { call in call.returns(try wrap { try groupAt(call).entries().count }) },
        "__pairs": { call in
            // the iterator runs on this state's thread, as the group does
            nonisolated(unsafe) let g = try groupAt(call)
            let it = Cursor(try wrap { try g.childNames() })
            call.lua.push(function: "next") { inner in
                while let name = it.next() {
                    if let c = try? g.childNode(name) {
                        inner.lua.push(name)
                        pushReadable(c, inner.lua)
                        return 2
                    }
                }
                return 0
            }
            return 1
        },
        "__pretty": { call in call.returns(try wrap { try groupAt(call).tree() }) },
    ]

    static func groupAt(_ call: LuaCall) throws -> any NXReadableGroup { try call.object(1, group) }
    static func fieldAt(_ call: LuaCall) throws -> any NXReadableField { try call.object(1, field) }

    // MARK: fields

    static func streamingReduction(_ op: Reduction, _ summary: String) -> LuaMethodDecl<any NXReadableField> {
        LuaMethodDecl(op.rawValue, "c:\(op.rawValue)([axis [, keepdims]]) -> ndarray|number", summary) { call, f in
            let axes = try ArrayModule.axes(call, 2)
            let r = try wrap { try f.reduce(op, axes: axes, keepdims: call.boolean(3), progress: progress(op.rawValue, f)) }
            try ArrayModule.push(r, call.lua)
            return 1
        }
    }

    /// Where the reductions stream from, in their help.
    static let through = "the file or, over nx.remote, the server"

    /// The methods every field has, whatever its tree.
    static let fieldReadMethods: [LuaMethodDecl<any NXReadableField>] = [
        LuaMethodDecl("read", "c:read() -> ndarray|number|string|table", "reads the whole field") { call, f in
            try push(try wrap { try f.read(nil) }, call.lua)
            return 1
        },
        streamingReduction(.sum, "sum over an axis, a table of axes, or all, streaming through \(through); integers accumulate in int64"),
        streamingReduction(.prod, "product over axes, streaming through \(through)"),
        streamingReduction(.min, "minimum over axes, streaming through \(through) (NaN wins)"),
        streamingReduction(.max, "maximum over axes, streaming through \(through) (NaN wins)"),
        LuaMethodDecl("mean", "c:mean([axis [, keepdims]]) -> ndarray|number",
                      "mean over axes in float64, streaming through \(through)") { call, f in
            let axes = try ArrayModule.axes(call, 2)
            let r = try wrap { try f.mean(axes: axes, keepdims: call.boolean(3), progress: progress("mean", f)) }
            try ArrayModule.push(r, call.lua)
            return 1
        },
        LuaMethodDecl("blocks", "c:blocks([n]) -> iterator",
                      "for first, block in c:blocks(n): blocks of n rows of the first axis, the next read while the loop body runs",
                      help: """
                      first is the 0-based index of the block's first row; block is an ndarray of up
                      to n rows (fewer at the end). n defaults to whole chunks, about 32 MB.
                      Example:  local s = 0; for i, b in c:blocks(10) do s = s + b:sum() end
                      """) { call, f in
            let rows = try call.optInteger(2)
            let blocks = try wrap { try NXBlocks(f, rows: try rows ?? f.blockRows(), reuse: false) }
            call.lua.push(function: "blocks iterator") { inner in
                try CoreModule.checkStopped("blocks")
                guard let (first, block) = try wrap({ try blocks.next() }) else { inner.lua.pushNil(); return 1 }
                inner.lua.push(first)
                try ArrayModule.push(block, inner.lua, scalarIfZeroD: false)
                return 2
            }
            return 1
        },
        LuaMethodDecl("refresh", "c:refresh()",
                      "re-reads the shape: new frames of a growing file (SWMR readers; nx.remote asks the server again)") { call, f in
            try wrap { try f.refresh() }
            return 0
        },
        treeMethod { $0 },
        PlotModule.plotMethod(), PlotModule.oplotMethod(), PlotModule.logplotMethod(),
    ]

    /// c.key and c[selection] for any field: properties, storage, attributes, slices.
    static func fieldIndex(_ call: LuaCall, _ f: any NXReadableField) throws -> Int32 {
        let lua = call.lua
        if lua.type(at: 2) == .string, let key = lua.toString(at: 2) {
            if try nodeProperty(f, key, lua) { return 1 }
            if let n = try fieldProperty(f, key, lua) { return n }
            switch key {
            case "compression":
                guard let c = try wrap({ try f.compression }) else { return 0 }
                lua.push(c)
                return 1
            case "nxvalue": try push(try wrap { try f.read(nil) }, lua); return 1
            case "layout": lua.push(try wrap { try f.layout }); return 1
            default:
                if key.first.map({ $0.isLetter || $0 == "_" }) == true {
                    return try attrShortcut(f, key, lua) ? 1 : 0
                }
            }
        }
        try push(try wrap { try f.read(try selection(call, 2)) }, lua)
        return 1
    }

    static func fieldCompletions(_ f: any NXReadableField) -> [String] {
        ["shape", "dtype", "ndim", "size", "maxshape", "chunks", "compression", "nxvalue", "layout"]
            + commonProperties + ((try? f.attributeNames()) ?? [])
    }

    /// #c and print(c) of any field.
    static let fieldMetamethods: [String: LuaFunctionBody] = [
        "__len": { call in
            let f = try fieldAt(call)
            let s = try wrap { try f.shape }
            guard let n = s.first else { throw LuaError.runtime("\(f.location): \(f.path): len() of a scalar field") }
            return call.returns(n)
        },
        "__pretty": { call in call.returns(try wrap { try fieldAt(call).tree() }) },
    ]

    /// As nexusformat's str(field): the value (text unquoted), or the summary.
    static func describeField(_ f: any NXReadableField) -> String {
        if case .strings(let s, let shape)? = try? f.smallValue(), shape.isEmpty { return s.first ?? "" }
        return (try? f.summary()) ?? f.path
    }
}
