import FolderListing
#if canImport(Glibc)
import Glibc
#endif
import Catalog
import LuaBridge
import NeXus
import RemoteClient
import RemoteServer
import SpecFile

/// A catalog entry as Lua sees it: e.path, e.sample, e.temperature (as harvested),
/// e.units.temperature, e.si.temperature, e.metadata, e:load().
final class CatalogEntryBox: @unchecked Sendable {
    let entry: CatalogEntry
    /// The server the entry came from (its path is then a domain there).
    let remote: RemoteConnection?
    init(_ entry: CatalogEntry, remote: RemoteConnection? = nil) {
        self.entry = entry
        self.remote = remote
    }
}

/// What nx.catalog opened: a catalog (SQLite file, PostgreSQL URL) or a server's
/// (an http(s):// URL of nxlua serve --catalog).
final class CatalogHandle: @unchecked Sendable {
    let local: Catalog?
    let remote: RemoteConnection?
    init(local: Catalog) { self.local = local; remote = nil }
    init(remote: RemoteConnection) { self.remote = remote; local = nil }

    var location: String { local?.engine.location ?? remote?.url ?? "?" }

    func search(_ q: CatalogQuery, order: String?, limit: Int, cursor: String?) throws -> CatalogPage {
        if let local { return try local.search(q, order: order, limit: limit, cursor: cursor) }
        let page = try remote!.catalogSearch(q.text, order: order, limit: min(limit, 1000), cursor: cursor)
        return CatalogPage(entries: page.entries.map(CatalogHandle.entry), next: page.next)
    }

    func count(_ q: CatalogQuery) throws -> Int {
        if let local { return try local.count(q) }
        return try remote!.catalogCount(q.text)
    }

    func facets(_ field: String, _ q: CatalogQuery, limit: Int) throws -> [(value: CatalogJSON, count: Int)] {
        if let local { return try local.facets(field, query: q, limit: limit) }
        return try remote!.catalogFacets(field, query: q.text, limit: min(limit, 1000)).map { (CatalogHandle.value($0.value), $0.count) }
    }

    static func value(_ j: JSON) -> CatalogJSON {
        switch j {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .array(let a): return .array(a.map(value))
        case .object(let m): return .object(Dictionary(m.map { ($0.key, value($0.value)) }, uniquingKeysWith: { a, _ in a }))
        }
    }

    /// An entry of the server's answer: its domain as the path, fields as harvested,
    /// with the SI values beside them.
    static func entry(_ j: JSON) -> CatalogEntry {
        var e = CatalogEntry(path: j["domain"]?.stringValue ?? "?", entry: j["entry"]?.stringValue ?? "")
        let si = j["si"]
        if case .object(let members)? = j["fields"] {
            for m in members where m.key != "path" && m.key != "entry" {
                let n = si?[m.key].map(value)
                switch value(m.value) {
                case .object(let o):
                    if let v = o["value"]?.doubleValue { e.fields[m.key] = .number(v, units: o["units"]?.stringValue, si: n?.doubleValue ?? v) }
                case .string(let s):
                    if let t = n?.doubleValue { e.fields[m.key] = .time(s, seconds: t) } else { e.fields[m.key] = .text(s) }
                case .int(let i): e.fields[m.key] = .integer(i)
                case .double(let d): e.fields[m.key] = .number(d, units: nil, si: n?.doubleValue ?? d)
                default: continue
                }
            }
        }
        if case .object(let members)? = j["metadata"] { for m in members { if let s = m.value.stringValue { e.metadata[m.key] = s } } }
        return e
    }
}

/// nx.catalog: the catalog's Lua face (thin: Sources/Catalog harvests, queries, stores).
enum CatalogModule {
    static func fail(_ error: Error) -> LuaError {
        if let e = error as? QueryError { return .runtime("catalog query: \(e.description)") }
        if let e = error as? CatalogError { return .runtime(e.message) }
        if let e = error as? MappingError { return .runtime(e.message) }
        return NeXusModule.fail(error)
    }

    static func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw fail(error) }
    }

    static func pushValue(_ v: FieldValue, _ lua: Lua) {
        switch v {
        case .text(let s): lua.push(s)
        case .number(let x, _, _): lua.push(x)
        case .integer(let i): lua.push(Int(i))
        case .time(let s, _): lua.push(s)
        }
    }

    static let entryOptions = ["path", "entry", "units", "si", "metadata", "fields"]

    static let entryClass: LuaClass<CatalogEntryBox> = LuaClass(
        "NXcatalogentry",
        summary: "an entry found in a catalog: e.path, e.entry, declared fields (e.sample, e.temperature as harvested), e.units, e.si, e.metadata",
        help: """
        local e = cat:search{sample = "LaB6"}[1]
        e.path, e.entry, e.sample, e.temperature, e.units.temperature   -- 26.85  "degC"
        e.si.temperature                                               -- 300.0 (kelvin)
        e.metadata["instrument/detector/sensor_material"]             -- undeclared values, by path
        local root = e:load()                                          -- the file, read-only
        """,
        methods: [
            LuaMethodDecl("load", "e:load() -> root", "opens the entry's file read-only (as a SWMR reader when a stacker may still write it; through nx.remote for a server's catalog); a SPEC file's entry gives its scan, as spec.load(path):scan(n)") { call, box in
                if let r = box.remote {
                    let root = try wrap { try r.load(box.entry.path, eagerLimit: NeXusModule.config.eagerLimit) }
                    NeXusModule.group.push(root, to: call.lua)
                    return 1
                }
                let path = box.entry.path
                // a SPEC file's entry is one of its scans (S12: scan 12), as spec.load gives it
                if box.entry.entry.hasPrefix("S"), Harvester.looksLikeSpec(path) {
                    let spec = try wrap { try SpecFile(path: path) }
                    let name = String(box.entry.entry.dropFirst())
                    guard let scan = try wrap({ try spec.scan(name) }) else {
                        throw LuaError.runtime("\(path): no scan \(name) any more (the file changed since it was registered)")
                    }
                    try SpecModule.pushScan(scan, call.lua)
                    return 1
                }
                var o = NXFile.Options()
                o.eagerLimit = NeXusModule.config.eagerLimit
                let file: NXFile
                do { file = try NXFile(path: path, mode: .read, options: o) } catch {
                    o.swmr = true
                    file = try wrap { try NXFile(path: path, mode: .read, options: o) }
                }
                NeXusModule.group.push(file.root, to: call.lua)
                return 1
            },
            LuaMethodDecl("fields", "e:fields() -> table", "every declared field present, as harvested (name -> value)") { call, box in
                let lua = call.lua
                lua.newTable(recordCount: box.entry.fields.count)
                for (k, v) in box.entry.fields { pushValue(v, lua); lua.rawSet(at: -2, key: k) }
                return 1
            },
        ],
        index: { call, box in
            let lua = call.lua
            guard let key = lua.toString(at: 2) else { return 0 }
            let e = box.entry
            switch key {
            case "units":
                lua.newTable()
                for (k, v) in e.fields { if case .number(_, let u?, _) = v { lua.push(u); lua.rawSet(at: -2, key: k) } }
                return 1
            case "si":
                lua.newTable()
                for (k, v) in e.fields {
                    switch v.normalised {
                    case .double(let d): lua.push(d)
                    case .int(let i): lua.push(Int(i))
                    case .string(let s): lua.push(s)
                    default: continue
                    }
                    lua.rawSet(at: -2, key: k)
                }
                return 1
            case "metadata":
                lua.newTable(recordCount: e.metadata.count)
                for (k, v) in e.metadata { lua.push(v); lua.rawSet(at: -2, key: k) }
                return 1
            default:
                guard let v = e.fields[key] else { return 0 }
                pushValue(v, lua)
                return 1
            }
        },
        completions: { box in Array(box.entry.fields.keys) + ["units", "si", "metadata"] },
        describe: { box in
            let e = box.entry
            var parts = ["\(e.path)\(e.entry.isEmpty ? "" : ":/" + e.entry)"]
            for k in ["sample", "temperature", "start_time", "kind", "status"] {
                guard let v = e.fields[k] else { continue }
                switch v {
                case .text(let s): parts.append("\(k)=\(s)")
                case .number(let x, let u, _): parts.append("\(k)=\(x)\(u.map { " " + $0 } ?? "")")
                case .integer(let i): parts.append("\(k)=\(i)")
                case .time(let s, _): parts.append("\(k)=\(s)")
                }
            }
            return parts.joined(separator: "  ")
        }
    )

    static let searchOptions = ["query", "text", "since", "until", "order", "limit", "cursor"]

    /// cat:search{...}: the table as a query (each declared field an equality, or a range
    /// table {from=, to=, units=}; query = a query string ANDed with the rest).
    static func query(_ call: LuaCall, _ i: Int32, _ handle: CatalogHandle) throws -> CatalogQuery {
        let lua = call.lua
        if lua.type(at: i) == .string { return try wrap { try CatalogQuery.parse(lua.toString(at: i) ?? "") } }
        if call.isNoneOrNil(i) { return .all }
        if let catalog = handle.local {
            try call.options(i, known: searchOptions + catalog.mapping.fields.map(\.name))
        } else {
            try call.table(i)  // the server names unknown fields
        }
        var parts: [CatalogQuery] = []
        var failure: LuaError? = nil
        try lua.forEachRaw(at: i) { k, v in
            guard failure == nil, let key = lua.toString(at: k), !["order", "limit", "cursor"].contains(key) else { return }
            switch key {
            case "query":
                guard let s = lua.toString(at: v) else { failure = .argument(i, "query: a query string expected"); return }
                do { parts.append(try CatalogQuery.parse(s)) } catch { failure = fail(error) }
            case "text":
                guard let s = lua.toString(at: v) else { failure = .argument(i, "text: a string expected"); return }
                parts.append(.text(s, position: 0))
            case "since", "until":
                guard let s = lua.toString(at: v) else { failure = .argument(i, "\(key): a time (\"2026-12-01\") expected"); return }
                let b = QueryBound(s, inclusive: true, at: 0)
                parts.append(.range(field: "start_time", lower: key == "since" ? b : nil, upper: key == "until" ? b : nil, position: 0))
            default:
                switch lua.type(at: v) {
                case .table:
                    var from: String? = nil, to: String? = nil, units = ""
                    if lua.rawGet(at: v, key: "units") == .string { units = " " + (lua.toString(at: -1) ?? "") }
                    lua.pop()
                    if lua.rawGet(at: v, key: "from") != .nil { from = lua.toString(at: -1) }
                    lua.pop()
                    if lua.rawGet(at: v, key: "to") != .nil { to = lua.toString(at: -1) }
                    lua.pop()
                    if from == nil && to == nil { failure = .argument(i, "\(key): {from =, to =, units =} expected"); return }
                    parts.append(.range(field: key, lower: from.map { QueryBound($0 + units, inclusive: true, at: 0) },
                                        upper: to.map { QueryBound($0 + units, inclusive: true, at: 0) }, position: 0))
                case .string, .number:
                    parts.append(.equals(field: key, value: lua.toString(at: v) ?? "", position: 0))
                case .boolean where lua.toBoolean(at: v):
                    parts.append(.exists(field: key, position: 0))
                default:
                    failure = .argument(i, "\(key): a value, a range table or true expected")
                }
            }
        }
        if let failure { throw failure }
        return parts.isEmpty ? .all : parts.count == 1 ? parts[0] : .and(parts)
    }

    static func localOnly(_ h: CatalogHandle, _ what: String) throws -> Catalog {
        guard let c = h.local else { throw LuaError.runtime("\(h.location): a server's catalog is read-only here (\(what) is for a catalog file or postgres:// URL)") }
        return c
    }

    static let catalogClass: LuaClass<CatalogHandle> = LuaClass(
        "NXcatalog",
        summary: "a catalog of NeXus files (nx.catalog): search, facets, count, add",
        help: """
        local cat = nx.catalog("nxlua-catalog.sqlite")        -- or a postgres:// URL
        cat:add("/data/2026-12")                               -- registers files (folders walked)
        for _, e in ipairs(cat:search{sample = "LaB6", temperature = {from = 100, to = 300, units = "K"},
                                      text = "rotation", since = "2026-12-01", order = "-start_time", limit = 50}) do
          print(e.path, e.temperature, e.units.temperature)
        end
        cat:search("sample:LaB6 AND temperature:[250 K TO 30 degC]")   -- the query language
        cat:facets("sample")                                   -- { {value = "LaB6", count = 12}, ... }
        """,
        methods: [
            LuaMethodDecl("search", "cat:search(query) -> {entries}",
                          "entries matching a table {field = value | {from=, to=, units=}, text=, since=, until=, query=, order=, limit=, cursor=} or a query string",
                          help: """
                          The list has .next when more entries match (pass it as cursor = to continue) and .count
                          (the entries on this page). order: a field name, '-' first for descending (default: latest
                          registered first). limit: 100 by default.
                          """) { call, cat in
                let q = try query(call, 2, cat)
                let lua = call.lua
                var order: String? = nil, limit = 100, cursor: String? = nil
                if lua.type(at: 2) == .table {
                    if lua.rawGet(at: 2, key: "order") == .string { order = lua.toString(at: -1) }
                    lua.pop()
                    if lua.rawGet(at: 2, key: "limit") == .number { limit = lua.toInteger(at: -1) ?? limit }
                    lua.pop()
                    if lua.rawGet(at: 2, key: "cursor") == .string { cursor = lua.toString(at: -1) }
                    lua.pop()
                }
                let page = try wrap { try cat.search(q, order: order, limit: limit, cursor: cursor) }
                lua.newTable(arrayCount: page.entries.count, recordCount: 2)
                for (n, e) in page.entries.enumerated() {
                    entryClass.push(CatalogEntryBox(e, remote: cat.remote), to: lua)
                    lua.rawSet(at: -2, index: n + 1)
                }
                lua.push(page.next); lua.rawSet(at: -2, key: "next")
                lua.push(page.entries.count); lua.rawSet(at: -2, key: "count")
                return 1
            },
            LuaMethodDecl("count", "cat:count([query]) -> n", "how many entries match (a table as for search, or a query string)") { call, cat in
                let q = try query(call, 2, cat)
                return call.returns(try wrap { try cat.count(q) })
            },
            LuaMethodDecl("facets", "cat:facets(field [, query [, limit]]) -> {{value=, count=}, ...}",
                          "entries per value of a field among those matching the query, most frequent first") { call, cat in
                let field = try call.string(2)
                let q = try query(call, 3, cat)
                let limit = try call.optInteger(4) ?? 50
                let list = try wrap { try cat.facets(field, q, limit: limit) }
                let lua = call.lua
                lua.newTable(arrayCount: list.count)
                for (n, f) in list.enumerated() {
                    lua.newTable(recordCount: 2)
                    switch f.value {
                    case .string(let s): lua.push(s)
                    case .int(let i): lua.push(Int(i))
                    case .double(let d): lua.push(d)
                    default: lua.pushNil()
                    }
                    lua.rawSet(at: -2, key: "value")
                    lua.push(f.count); lua.rawSet(at: -2, key: "count")
                    lua.rawSet(at: -2, index: n + 1)
                }
                return 1
            },
            LuaMethodDecl("watch", "cat:watch(query, fn [, options]) -> delivered",
                          "calls fn(entry) for each entry registered from now on that matches the query (a table as for search, or a string), until fn returns false",
                          help: """
                          options: {timeout = seconds} stops after that long (default: no limit), {from_start = true}
                          delivers the entries already there first. The catalog is looked at every 20 ms (a local
                          SQLite read of the newest ids: cheap), so a new entry arrives within about that; a file
                          registered again (changed) comes again. Ctrl-C stops the watch. Not for a server's catalog.
                          """) { call, handle in
                let cat = try localOnly(handle, "watch")
                let q = try query(call, 2, handle)
                guard call.type(3) == .function else { throw call.typeError(3, expected: "function") }
                var timeout = Double.infinity
                var last = try wrap { try cat.lastID() }
                if !call.isNoneOrNil(4) {
                    try call.options(4, known: ["timeout", "from_start"])
                    let lua = call.lua
                    if lua.rawGet(at: 4, key: "timeout") == .number { timeout = lua.toNumber(at: -1)! }
                    lua.pop()
                    if lua.rawGet(at: 4, key: "from_start") != .nil, lua.toBoolean(at: -1) { last = 0 }
                    lua.pop()
                }
                let lua = call.lua
                let deadline = CatalogModule.now() + timeout
                var delivered = 0
                while true {
                    for e in try wrap({ try cat.entries(after: last, matching: q) }) {
                        last = max(last, e.id)
                        lua.ensureStack(4)
                        lua.pushValue(at: 3)
                        entryClass.push(CatalogEntryBox(e), to: lua)
                        do { try lua.pcall(nargs: 1, nresults: 1, traceback: true) } catch let err as LuaScriptError {
                            throw LuaError.runtime(err.message)
                        }
                        delivered += 1
                        let stop = lua.type(at: -1) == .boolean && !lua.toBoolean(at: -1)
                        lua.pop()
                        if stop { return call.returns(delivered) }
                    }
                    if CatalogModule.now() >= deadline { return call.returns(delivered) }
                    try CoreModule.sleepPolling(min(0.02, max(0, deadline - CatalogModule.now())))
                }
            },
            LuaMethodDecl("add", "cat:add(path, ... [, {force=, checksum=}]) -> registered, unchanged, bad",
                          "registers files, and the NeXus/HDF5 files under folders (unchanged files are skipped)",
                          help: "force = true harvests unchanged files again; checksum = true also records each file's SHA-256 (field sha256; reads every byte).") { call, cat in
                let local = try localOnly(cat, "add")
                var last = call.count
                var force = false, checksum = false
                if last >= 3, call.lua.type(at: last) == .table {
                    try call.options(last, known: ["force", "checksum"])
                    if call.lua.rawGet(at: last, key: "force") != .nil { force = call.lua.toBoolean(at: -1) }
                    call.lua.pop()
                    if call.lua.rawGet(at: last, key: "checksum") != .nil { checksum = call.lua.toBoolean(at: -1) }
                    call.lua.pop()
                    last -= 1
                }
                var paths: [String] = []
                for i in 2...max(2, last) { paths.append(try call.string(i)) }
                let s = try wrap { try local.register(paths, force: force, checksum: checksum) }
                return call.returns(s.registered, s.unchanged, s.bad)
            },
            LuaMethodDecl("fields", "cat:fields() -> {{name=, type=, dimension=, unit=, summary=}, ...}", "the declared fields") { call, handle in
                let cat = try localOnly(handle, "fields")
                let lua = call.lua
                lua.newTable(arrayCount: cat.mapping.fields.count)
                for (n, f) in cat.mapping.fields.enumerated() {
                    lua.newTable(recordCount: 5)
                    lua.push(f.name); lua.rawSet(at: -2, key: "name")
                    lua.push(f.type.rawValue); lua.rawSet(at: -2, key: "type")
                    lua.push(f.dimension.rawValue); lua.rawSet(at: -2, key: "dimension")
                    lua.push(f.dimension.siUnit); lua.rawSet(at: -2, key: "unit")
                    lua.push(f.summary); lua.rawSet(at: -2, key: "summary")
                    lua.rawSet(at: -2, index: n + 1)
                }
                return 1
            },
        ],
        close: { cat in cat.local?.close() },
        describe: { cat in "nx.catalog(\"\(cat.location)\")" }
    )

    static let catalogFunction = LuaFunctionDecl(
        "catalog", "nx.catalog([location [, options]]) -> catalog",
        "opens a catalog of NeXus files: a SQLite file (created if need be), a postgres:// URL, or a server's (http(s)://, nxlua serve --catalog); default $NXLUA_CATALOG, else ./nxlua-catalog.sqlite",
        help: """
        options: {mapping = "beamline.toml"} adds a beamline's field mapping (docs/catalog.md); for a server,
        the options of nx.remote (user =, password =, ...): entries are then domains, and e:load() reads them
        through nx.remote. cat:search, cat:facets, cat:count, cat:add.
        """
    ) { call in
        let location = try call.optString(1) ?? Catalog.defaultLocation()
        if location.hasPrefix("http://") || location.hasPrefix("https://") {
            // nx.remote's connection, options and password rules
            _ = try NeXusModule.remoteFunction.body(call)
            guard let r = NeXusModule.remote.object(at: -1, in: call.lua) else { throw LuaError.runtime("nx.catalog: \(location): no connection") }
            call.lua.pop()
            catalogClass.push(CatalogHandle(remote: r), to: call.lua)
            return 1
        }
        var mapping: Mapping? = nil
        if !call.isNoneOrNil(2) {
            try call.options(2, known: ["mapping"])
            let lua = call.lua
            if lua.rawGet(at: 2, key: "mapping") == .string, let path = lua.toString(at: -1) {
                lua.pop()
                guard let text = FolderListing.readText(path) else { throw LuaError.runtime("\(path): cannot read the mapping file") }
                mapping = try wrap { try Mapping.parse(text, source: path) }
            } else { lua.pop() }
        }
        let cat = try wrap { try Catalog(location: location, mapping: mapping) }
        catalogClass.push(CatalogHandle(local: cat), to: call.lua)
        return 1
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}
