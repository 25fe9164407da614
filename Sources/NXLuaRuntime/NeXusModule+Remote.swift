import LuaBridge
import NDArray
import NeXus
import RemoteClient
import RemoteServer

/// nx.remote: files of an HDF REST server (nxlua serve, HSDS). Their groups and fields
/// are NXgroup and NXfield objects, bound once for every tree (NeXusModule+Read.swift:
/// reads through the NXReadable protocols, writes refused as "read-only remote file");
/// this file adds only the connection (load, ls, eval).
extension NeXusModule {
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
                group.push(root, to: call.lua)
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
            LuaMethodDecl("wait", "r:wait(domain [, version [, timeout [, fields]]]) -> version, changed",
                          "waits until the file differs from version (nxlua serve): at once without one; else when it changes, or after timeout seconds (default 10); fields (a list) come refreshed with a change",
                          help: """
                          Follows a live file without polling it: the server answers as soon as the file changes (it looks
                          every 5 ms). version is opaque: pass back the one you got. fields: remote fields of that file,
                          the frame status first, whose shape and small value a changed answer brings from the state
                          version names (as refresh() on each, in the same round trip).
                          local v
                          while true do
                            local changed
                            v, changed = r:wait("/scan.nxs", v, 30, {status, data})
                            if changed then --[[ read what is new ]] end
                          end
                          """) { call, r in
                let domain = try call.string(2)
                let version = try call.optString(3)
                let timeout = try call.optNumber(4) ?? 10
                var fields: [RemoteField] = []
                if !call.isNoneOrNil(5) {
                    try call.table(5)
                    let lua = call.lua
                    for k in 0..<lua.rawLength(at: 5) {
                        lua.rawGet(at: 5, index: k + 1)
                        let f = readableField(at: -1, in: lua) as? RemoteField
                        lua.pop()
                        guard let f else { throw LuaError.argument(5, "item \(k + 1) is not a field of a remote file") }
                        fields.append(f)
                    }
                }
                let (now, changed) = try wrap { try r.wait(domain, since: version, timeout: timeout, refreshing: fields) }
                call.lua.push(now)
                call.lua.push(changed)
                return 2
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
        "a connection to an HDF REST server (nxlua serve or HSDS): r:load(domain), r:ls(folder), r:wait(domain, version), r:eval(code, args)",
        help: """
        options: user=, password= (else $NXLUA_PASSWORD, else a prompt on a terminal), timeout= (seconds
        without an answer, default 60), connect_timeout= (default 10), retries= (of reads after a dropped
        connection, default 3), insecure=true (accept a self-signed TLS certificate: test servers only),
        compressed=false (whole chunks of nxlua serve's files travel decoded, not as stored).
        """
    ) { call in
        let url = try call.string(1)
        var o = RemoteOptions()
        if !call.isNoneOrNil(2) {
            try call.options(2, known: ["user", "password", "timeout", "connect_timeout", "retries", "insecure", "compressed"])
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
            if field("compressed") != .nil { o.storedChunks = lua.toBoolean(at: -1) }
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
