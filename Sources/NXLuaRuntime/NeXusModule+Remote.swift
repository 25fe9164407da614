import LuaBridge
import NDArray
import NeXus
import RemoteClient
import RemoteServer

/// An `obj.attrs` proxy of a remote object.
final class RemoteAttrsBox: @unchecked Sendable {
    let node: RemoteNode
    init(_ node: RemoteNode) { self.node = node }
}

/// nx.remote: files of an HDF REST server (nxlua serve, HSDS) with the read side of the
/// local tree API. The tree text, NXdata rules and streaming reductions are the NeXus
/// core's (NXReadable), shared with local files; this file only binds them.
extension NeXusModule {
    static func readOnly(_ node: RemoteNode, _ what: String) -> LuaError {
        .runtime("\(node.location): \(node.path): read-only remote file (\(what) is not possible over nx.remote)")
    }

    static func pushRemote(_ n: any NXReadableNode, _ lua: Lua) {
        if let g = n as? RemoteGroup { remoteGroup.push(g, to: lua) } else if let f = n as? RemoteField { remoteField.push(f, to: lua) }
    }

    static func pushRemoteList(_ nodes: [any NXReadableNode], _ lua: Lua) {
        lua.newTable(arrayCount: nodes.count)
        for (i, n) in nodes.enumerated() { pushRemote(n, lua); lua.rawSet(at: -2, index: i + 1) }
    }

    static func remoteProperty(_ node: RemoteNode, _ key: String, _ lua: Lua) throws -> Bool {
        switch key {
        case "nxname": lua.push(node.name)
        case "nxpath": lua.push(node.path)
        case "nxclass": lua.push(node.nxclass)
        case "nxfilename", "filename": lua.push(node.location)
        case "parent", "nxgroup": remoteGroup.push(node.parent, to: lua)
        case "root", "nxroot": remoteGroup.push(node.file.root, to: lua)
        case "attrs": remoteAttrs.push(RemoteAttrsBox(node), to: lua)
        default: return false
        }
        return true
    }

    static func remoteTreeMethod<T: RemoteNode>() -> LuaMethodDecl<T> {
        LuaMethodDecl("tree", "obj:tree([\"short\"])",
                      "prints the tree below obj, the same text as for a local file; \"short\": obj and one line per child") { call, node in
            let form = try call.optString(2)
            guard form == nil || form == "short" else { throw LuaError.argument(2, "\"short\" or nothing expected, got \"\(form!)\"") }
            let text = try wrap { try form == "short" ? node.shortTree() : node.tree() }
            try call.lua.getGlobal("print")
            call.lua.push(text)
            try call.lua.pcall(nargs: 1, nresults: 0)
            return 0
        }
    }

    static func remoteReduction(_ op: Reduction, _ summary: String) -> LuaMethodDecl<RemoteField> {
        LuaMethodDecl(op.rawValue, "c:\(op.rawValue)([axis [, keepdims]]) -> ndarray|number", summary) { call, f in
            let axes = try ArrayModule.axes(call, 2)
            let r = try wrap { try f.reduce(op, axes: axes, keepdims: call.boolean(3), progress: progress(op.rawValue, f)) }
            try ArrayModule.push(r, call.lua)
            return 1
        }
    }

    /// d["1.5:2.5, :"] on a remote NXdata: the signal sliced, float bounds by axis value.
    static func remoteDataIndex(_ call: LuaCall, _ g: RemoteGroup) throws -> Int32 {
        guard let s = try wrap({ try g.signalField() }) else {
            throw LuaError.runtime("\(g.location): \(g.path): not an NXdata with a signal; index its fields instead")
        }
        let sel = try wrap { try g.positions(try selection(call, 2)) }
        try push(try wrap { try s.read(sel) }, call.lua)
        return 1
    }

    static let remoteGroup: LuaClass<RemoteGroup> = LuaClass(
        "NXremotegroup",
        summary: "a group of a remote file (nx.remote): the read side of NXgroup",
        help: """
        g.entry, g["entry/data"], g.NXdata, pairs(g), #g, g:keys(), g:tree(), g:default()
        Only the values you index travel; writing raises "read-only remote file".
        """,
        methods: [
            LuaMethodDecl("child", "g:child(name) -> obj|nil", "the child called name (also when a method has that name)") { call, g in
                guard let c = try wrap({ try g.child(try call.string(2)) }) else { return 0 }
                pushRemote(c, call.lua)
                return 1
            },
            LuaMethodDecl("keys", "g:keys() -> {names}", "the names of the children, in natural order") { call, g in
                call.lua.push(try wrap { try g.childNames() })
                return 1
            },
            LuaMethodDecl("component", "g:component(nxclass) -> {objects}", "direct children of an NX class") { call, g in
                pushRemoteList(try wrap { try g.childNodes(ofClass: try call.string(2)) }, call.lua)
                return 1
            },
            LuaMethodDecl("find", "g:find(nxclass) -> {objects}", "all groups of an NX class below g (depth first)") { call, g in
                pushRemoteList(try wrap { try g.findNodes(try call.string(2)) }, call.lua)
                return 1
            },
            LuaMethodDecl("default", "g:default() -> NXdata|nil",
                          "the NXdata the @default chain leads to (root -> entry -> data), else the first one") { call, g in
                guard let d = try wrap({ try g.defaultDataGroup() }) else { return 0 }
                pushRemote(d, call.lua)
                return 1
            },
            remoteTreeMethod(),
            PlotModule.plotMethod(), PlotModule.oplotMethod(), PlotModule.logplotMethod(), PlotModule.projectMethod(),
        ],
        metamethods: [
            "__newindex": { call in
                let g = try call.object(1, remoteGroup)
                throw readOnly(g, "assigning '\((try? call.string(2)) ?? "?")'")
            },
            "__len": { call in call.returns(try wrap { try call.object(1, remoteGroup).entries().count }) },
            "__pairs": { call in
                let g = try call.object(1, remoteGroup)
                let it = Cursor(try wrap { try g.childNames() })
                call.lua.push(function: "next") { inner in
                    while let name = it.next() {
                        if let c = try? g.child(name) {
                            inner.lua.push(name)
                            pushRemote(c, inner.lua)
                            return 2
                        }
                    }
                    return 0
                }
                return 1
            },
            "__pretty": { call in call.returns(try wrap { try call.object(1, remoteGroup).tree() }) },
        ],
        index: { call, g in
            let lua = call.lua
            if lua.type(at: 2) == .number { return try remoteDataIndex(call, g) }
            let key = try call.string(2)
            if try remoteProperty(g, key, lua) { return 1 }
            switch key {
            case "nxsignal": if let s = try wrap({ try g.signalField() }) { pushRemote(s, lua); return 1 }; return 0
            case "nxerrors": if let s = try wrap({ try g.errorsField() }) { pushRemote(s, lua); return 1 }; return 0
            case "nxaxes":
                let axes = try wrap { try g.axisFields() }
                lua.newTable(arrayCount: axes.count)
                for (i, a) in axes.enumerated() {
                    if let a { pushRemote(a, lua) } else { lua.push(false) }
                    lua.rawSet(at: -2, index: i + 1)
                }
                return 1
            default: break
            }
            if key.contains("/") || key == "." || key == ".." {
                guard let n = try wrap({ try g.resolveNode(key) }) else {
                    throw LuaError.runtime("\(g.location): \(joined(g.path, key)): no such object")
                }
                pushRemote(n, lua)
                return 1
            }
            if let c = try wrap({ try g.child(key) }) { pushRemote(c, lua); return 1 }
            if key.hasPrefix("NX"), key.count > 2, key.dropFirst(2).allSatisfy({ $0.isLowercase || $0 == "_" }) {
                pushRemoteList(try wrap { try g.childNodes(ofClass: key) }, lua)
                return 1
            }
            if let v = try wrap({ try g.attribute(key) }) { try push(v, lua); return 1 }
            if g.nxclass == "NXdata", key.contains(":") || key.contains(",") || Double(key) != nil {
                return try remoteDataIndex(call, g)
            }
            return 0
        },
        completions: { g in
            ((try? g.childNames()) ?? []) + commonProperties + ["nxsignal", "nxaxes", "nxerrors"] + ((try? g.attributeNames()) ?? [])
        },
        describe: { g in (try? g.tree()) ?? "\(g.location): \(g.path)" }
    )

    static let remoteField: LuaClass<RemoteField> = LuaClass(
        "NXremotefield",
        summary: "a field of a remote file (nx.remote): lazy, indexing fetches exactly the slice asked for",
        help: """
        c.shape, c.dtype, c.ndim, c.size, c.maxshape, c.chunks, c.compression, c.units
        c[100], c["0:50, 100:200, ::2"]   0-based NumPy slices -> ndarray (only those bytes travel)
        c:read(), c:sum(0), c:mean(), c:blocks(n)   reductions stream blocks of rows over HTTP
        """,
        methods: [
            LuaMethodDecl("read", "c:read() -> ndarray|number|string|table", "reads the whole field (big reads in several requests)") { call, f in
                try push(try wrap { try f.read(nil) }, call.lua)
                return 1
            },
            remoteReduction(.sum, "sum over an axis, a table of axes, or all, streaming blocks of rows from the server; integers accumulate in int64"),
            remoteReduction(.prod, "product over axes, streaming from the server"),
            remoteReduction(.min, "minimum over axes, streaming from the server (NaN wins)"),
            remoteReduction(.max, "maximum over axes, streaming from the server (NaN wins)"),
            LuaMethodDecl("refresh", "c:refresh()", "asks the server again for the shape (a file that grows: new frames)") { call, f in
                f.refresh()
                return 0
            },
            LuaMethodDecl("mean", "c:mean([axis [, keepdims]]) -> ndarray|number",
                          "mean over axes in float64, streaming from the server") { call, f in
                let axes = try ArrayModule.axes(call, 2)
                let r = try wrap { try f.mean(axes: axes, keepdims: call.boolean(3), progress: progress("mean", f)) }
                try ArrayModule.push(r, call.lua)
                return 1
            },
            LuaMethodDecl("blocks", "c:blocks([n]) -> iterator",
                          "for first, block in c:blocks(n): blocks of n rows of the first axis, the next fetched while the loop body runs",
                          help: "first is the 0-based index of the block's first row; n defaults to whole chunks, about 32 MB.") { call, f in
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
            remoteTreeMethod(),
            PlotModule.plotMethod(), PlotModule.oplotMethod(), PlotModule.logplotMethod(),
        ],
        metamethods: [
            "__newindex": { call in
                let f = try call.object(1, remoteField)
                throw readOnly(f, "writing into the field")
            },
            "__len": { call in
                let f = try call.object(1, remoteField)
                let s = try wrap { try f.shape }
                guard let n = s.first else { throw LuaError.runtime("\(f.location): \(f.path): len() of a scalar field") }
                return call.returns(n)
            },
            "__pretty": { call in call.returns(try wrap { try call.object(1, remoteField).tree() }) },
        ],
        index: { call, f in
            let lua = call.lua
            if lua.type(at: 2) == .string, let key = lua.toString(at: 2) {
                if try remoteProperty(f, key, lua) { return 1 }
                if let n = try fieldProperty(f, key, lua) { return n }
                switch key {
                case "compression":
                    // HSDS's filter names, as the local field names them ("gzip", "bitshuffle+lz4")
                    let filters = try wrap { try f.filters }.filter { $0 != "shuffle" && $0 != "H5Z_FILTER_SHUFFLE" }
                    guard let first = filters.first else { return 0 }
                    switch first {
                    case "deflate", "H5Z_FILTER_DEFLATE": lua.push("gzip")
                    case "bitshuffle", "H5Z_FILTER_BITSHUFFLE": lua.push("bitshuffle+lz4")
                    case "blosclz", "H5Z_FILTER_BLOSC": lua.push("blosc")
                    default: lua.push(first)
                    }
                    return 1
                case "nxvalue": try push(try wrap { try f.read(nil) }, lua); return 1
                default:
                    if key.first.map({ $0.isLetter || $0 == "_" }) == true {
                        guard let v = try wrap({ try f.attribute(key) }) else { return 0 }
                        try push(v, lua)
                        return 1
                    }
                }
            }
            try push(try wrap { try f.read(try selection(call, 2)) }, lua)
            return 1
        },
        completions: { f in
            ["shape", "dtype", "ndim", "size", "maxshape", "chunks", "compression", "nxvalue"]
                + commonProperties + ((try? f.attributeNames()) ?? [])
        },
        describe: { f in
            if case .strings(let s, let shape)? = try? f.smallValue(), shape.isEmpty { return s.first ?? "" }
            return (try? f.summary()) ?? f.path
        }
    )

    static let remoteAttrs: LuaClass<RemoteAttrsBox> = LuaClass(
        "NXremoteattrs",
        summary: "the attributes of a remote group or field: a.units, pairs(a) (read-only)",
        metamethods: [
            "__newindex": { call in throw readOnly(try call.object(1, remoteAttrs).node, "setting an attribute") },
            "__len": { call in call.returns(try wrap { try call.object(1, remoteAttrs).node.attributeNames().count }) },
            "__pairs": { call in
                let box = try call.object(1, remoteAttrs)
                let list = try wrap { try box.node.attributes() }
                let it = Cursor(list.map(\.name))
                call.lua.push(function: "next") { inner in
                    guard let name = it.next(), let v = list.first(where: { $0.name == name })?.value else { return 0 }
                    inner.lua.push(name)
                    try push(v, inner.lua)
                    return 2
                }
                return 1
            },
            "__pretty": { call in
                let box = try call.object(1, remoteAttrs)
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
            (try? box.node.attributes().map { "@\($0.name) = \(NXText.attribute($0.value))" }.joined(separator: "\n")) ?? "attributes"
        }
    )

    static let remote: LuaClass<RemoteConnection> = LuaClass(
        "NXremote",
        summary: "a connection to an HDF REST server (nxlua serve or HSDS), made by nx.remote",
        help: """
        local r = nx.remote("http://beamline:5101", {user = "ray"})
        local g = r:load("/data/sample_300K.nxs")       -- same tree API as nx.load, read-only
        r:ls("/data/")                                  -- {name=, class=, lastModified=, size=}
        r:eval("return nx.load(...).entry.data.counts:sum(0)", "/data/sample_300K.nxs")
        """,
        methods: [
            LuaMethodDecl("load", "r:load(domain) -> root", "opens a file of the server read-only (one round trip with nxlua serve)") { call, r in
                let domain = try call.string(2)
                let root = try wrap { try r.load(domain, eagerLimit: config.eagerLimit) }
                remoteGroup.push(root, to: call.lua)
                return 1
            },
            LuaMethodDecl("ls", "r:ls([folder]) -> {entries}",
                          "the files and subfolders of a folder (default \"/\"): {name=, class=\"domain\"|\"folder\", lastModified=, size=}") { call, r in
                let folder = try call.optString(2) ?? "/"
                let list = try wrap { try r.list(folder) }
                let lua = call.lua
                lua.newTable(arrayCount: list.count)
                for (i, e) in list.enumerated() {
                    lua.newTable(recordCount: 4)
                    lua.push(e.name); lua.rawSet(at: -2, key: "name")
                    lua.push(e.kind); lua.rawSet(at: -2, key: "class")
                    if let t = e.lastModified { lua.push(t); lua.rawSet(at: -2, key: "lastModified") }
                    if let s = e.size { lua.push(s); lua.rawSet(at: -2, key: "size") }
                    lua.rawSet(at: -2, index: i + 1)
                }
                return 1
            },
            LuaMethodDecl("eval", "r:eval(code [, args]) -> value",
                          "runs Lua code next to the data (server started with --allow-eval); args arrive as ...; an array comes back binary",
                          help: """
                          args: a number, string, boolean or table (JSON-like); in the code, nx.load takes the server's domains.
                          Errors of the code, and the server's limits, are raised here as Lua errors.
                          """) { call, r in
                let code = try call.string(2)
                let args: JSON = call.isNoneOrNil(3) ? .null : try wrap { try JSONBridge.value(call.lua, 3, depth: 0) }
                switch try wrap({ try r.evaluate(code, args: args) }) {
                case .array(let a): try ArrayModule.push(a, call.lua)
                case .json(let j): try wrap { try JSONBridge.push(j, call.lua) }
                }
                return 1
            },
        ],
        describe: { r in "nx.remote(\"\(r.url)\")" }
    )

    static let remoteFunction = LuaFunctionDecl(
        "remote", "nx.remote(url [, options]) -> server",
        "a connection to an HDF REST server (nxlua serve or HSDS): r:load(domain), r:ls(folder), r:eval(code, args)",
        help: """
        options: user=, password= (else $NXLUA_PASSWORD, else a prompt on a terminal), timeout= (seconds
        without an answer, default 60), connect_timeout= (default 10), retries= (of reads after a dropped
        connection, default 3), insecure=true (accept a self-signed TLS certificate: test servers only).
        """
    ) { call in
        let url = try call.string(1)
        var o = RemoteOptions()
        if !call.isNoneOrNil(2) {
            try call.options(2, known: ["user", "password", "timeout", "connect_timeout", "retries", "insecure"])
            let lua = call.lua
            func field(_ key: String) -> LuaType { lua.rawGet(at: 2, key: key) }
            if field("user") == .string { o.user = lua.toString(at: -1) }
            lua.pop()
            if field("password") == .string { o.password = lua.toString(at: -1) }
            lua.pop()
            if field("timeout") == .number { o.readTimeout = lua.toNumber(at: -1)! }
            lua.pop()
            if field("connect_timeout") == .number { o.connectTimeout = lua.toNumber(at: -1)! }
            lua.pop()
            if field("retries") == .number { o.attempts = max(0, lua.toInteger(at: -1) ?? 3) + 1 }
            lua.pop()
            if field("insecure") != .nil { o.insecureTLS = lua.toBoolean(at: -1) }
            lua.pop()
        }
        guard o.readTimeout > 0, o.connectTimeout > 0 else { throw LuaError.argument(2, "timeouts must be positive") }
        if let user = o.user, o.password == nil {
            if let p = ProcessInfoLite.environment["NXLUA_PASSWORD"] {
                o.password = p
            } else if let p = try wrap({ try Secret.prompt("password for \(user) at \(url): ") }) {
                o.password = p
            } else {
                throw LuaError.runtime("nx.remote: no password for user '\(user)': give {password = ...}, set NXLUA_PASSWORD, or run on a terminal to be asked")
            }
        }
        let r = try wrap { try RemoteConnection(url: url, options: o) }
        remote.push(r, to: call.lua)
        return 1
    }
}
