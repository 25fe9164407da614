import FolderListing
#if canImport(Glibc)
import Glibc
#endif

/// One page of search results; `next` continues after its last entry (nil: no more).
public struct CatalogPage: Sendable {
    public var entries: [CatalogEntry]
    public var next: String?
    public init(entries: [CatalogEntry], next: String?) {
        self.entries = entries
        self.next = next
    }
}

/// What a registration did.
public struct RegistrationSummary: Sendable, Equatable {
    public var registered = 0
    public var unchanged = 0
    public var bad = 0
    public var entries = 0
    public var badFiles: [String] = []
}

/// The catalog: registration (harvest + store), searches, facets. Engines: SQLite (a file
/// path) or PostgreSQL (a postgres:// URL), chosen by `open`.
public final class Catalog: @unchecked Sendable {
    public let engine: CatalogEngine
    public private(set) var mapping: Mapping
    public var harvester: Harvester { Harvester(mapping: mapping) }
    /// Files per transaction while registering.
    public var batchSize = 200

    /// The default location: $NXLUA_CATALOG, else ./nxlua-catalog.sqlite (the journal's rule).
    public static func defaultLocation() -> String {
        if let e = getenv("NXLUA_CATALOG"), e.pointee != 0 { return String(cString: e) }
        return "nxlua-catalog.sqlite"
    }

    /// Opens (creating if need be) the catalog at `location`. `mapping` (a beamline's
    /// mapping file, read with Mapping.parse) adds to the fields the catalog records.
    public init(location: String, mapping extra: Mapping? = nil) throws {
        if location.hasPrefix("postgres://") || location.hasPrefix("postgresql://") {
            engine = try PostgresEngine(url: location)
        } else {
            engine = try SQLiteEngine(path: location)
        }
        var m = Mapping.standard
        let stored = try engine.storedFields()
        if !stored.isEmpty { m = m.applying(Mapping(fields: stored.filter { s in !Mapping.computed.contains { $0.name == s.name } })) }
        if let extra { m = m.applying(extra) }
        mapping = m
        if stored.map(\.storedText) != m.fields.map(\.storedText) { try engine.prepare(fields: m.fields) }
    }

    public func close() { engine.close() }

    // MARK: registration

    /// Registers files and the NeXus/HDF5 files under folders. Unchanged files (same
    /// path, size and modification time) are skipped; changed ones re-harvested; bad ones
    /// recorded with the reason. `progress(done, total)` is called as files are handled.
    public func register(_ paths: [String], force: Bool = false, checksum: Bool = false,
                         progress: ((Int, Int) -> Void)? = nil) throws -> RegistrationSummary {
        var files: [String] = []
        for p in paths {
            let abs = Catalog.absolute(p)
            var st = stat()
            guard stat(abs, &st) == 0 else { throw CatalogError("\(p): no such file or folder") }
            if (st.st_mode & S_IFMT) == S_IFDIR { Catalog.walk(abs, into: &files) } else { files.append(abs) }
        }
        var summary = RegistrationSummary()
        var h = harvester
        h.checksum = checksum
        var done = 0
        for start in stride(from: 0, to: files.count, by: batchSize) {
            let batch = Array(files[start..<min(files.count, start + batchSize)])
            let known = force ? [:] : try engine.stamps(batch)
            var records: [FileRecord] = []
            for f in batch {
                done += 1
                guard let stamp = Harvester.fileStamp(f) else { continue }
                if let k = known[f], k.size == stamp.size, k.mtime == stamp.mtime {
                    summary.unchanged += 1
                    continue
                }
                let entries = h.harvest(f)
                if entries.contains(where: { $0.status == "bad" }) {
                    summary.bad += 1
                    summary.badFiles.append(f)
                }
                summary.registered += 1
                summary.entries += entries.count
                records.append(FileRecord(path: f, size: stamp.size, mtime: stamp.mtime, entries: entries))
                progress?(done, files.count)
            }
            try engine.replace(records)
            progress?(done, files.count)
        }
        return summary
    }

    /// Registers one file with fields set by the caller (a stack's status and frame
    /// count, the source of derived data). A file that cannot be read yet (a stack just
    /// created) gets one entry made of `fields`.
    @discardableResult
    public func record(_ path: String, entry: String = "entry", fields: [String: FieldValue], harvest: Bool = true) throws -> [CatalogEntry] {
        let abs = Catalog.absolute(path)
        var entries = harvest ? harvester.harvest(abs) : []
        if entries.isEmpty || entries.allSatisfy({ $0.status == "bad" }) && fields["status"] != nil {
            var e = CatalogEntry(path: abs, entry: entry)
            if let s = Harvester.fileStamp(abs) { e["size"] = .integer(s.size) }
            entries = [e]
        }
        for i in entries.indices { for (k, v) in fields { entries[i][k] = v } }
        let stamp = Harvester.fileStamp(abs) ?? (0, 0)
        // a file recorded while still being written keeps a zero time stamp: the next
        // folder registration harvests it again
        let mtime = fields["status"] == .text("running") ? 0 : stamp.mtime
        try engine.replace([FileRecord(path: abs, size: stamp.size, mtime: mtime, entries: entries)])
        return entries
    }

    /// NeXus/HDF5 files under `folder` (hidden names skipped), sorted.
    static func walk(_ folder: String, into files: inout [String]) {
        guard case .success(let names) = FolderListing.names(folder) else { return }
        for name in names.sorted() where !name.hasPrefix(".") {
            let p = folder == "/" ? "/" + name : folder + "/" + name
            var st = stat()
            guard lstat(p, &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFDIR: walk(p, into: &files)
            case S_IFREG:
                let lower = name.lowercased()
                if (hdf5Extensions + specExtensions).contains(where: { lower.hasSuffix($0) }) { files.append(p) }
            default: continue
            }
        }
    }

    static let hdf5Extensions = [".nxs", ".nx5", ".nx", ".nexus", ".h5", ".hdf5", ".hdf", ".he5", ".cxi"]
    /// SPEC data files found by a folder walk (a file named on the command line is read
    /// whatever its name: SPEC files often have none of these).
    static let specExtensions = [".spec", ".spc"]

    /// The real path (symbolic links resolved) of an existing file, else `path` made absolute.
    public static func absolute(_ path: String) -> String {
        if let r = realpath(path, nil) {
            defer { free(r) }
            return String(cString: r)
        }
        if path.hasPrefix("/") { return path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return path }
        return String(cString: buffer) + "/" + path
    }

    // MARK: queries

    public var compiler: QueryCompiler { QueryCompiler(fields: mapping.fields, dialect: engine.dialect) }

    /// The WHERE clause of `query` restricted to files under `visibleUnder` (folders,
    /// absolute; nil: everything): what a user may not read never counts.
    func whereClause(_ query: CatalogQuery, visibleUnder: [String]?) throws -> SQLFragment {
        var f = try compiler.compile(query)
        if let roots = visibleUnder {
            if roots.isEmpty { f.sql = "(\(f.sql)) AND 1=0"; return f }
            var parts: [String] = []
            for r in roots {
                let prefix = r.hasSuffix("/") ? r : r + "/"
                // SQLite's substr counts code points
                if engine.dialect == .sqlite { f.arguments.append(.int(Int64(prefix.unicodeScalars.count))) }
                f.arguments.append(.string(prefix))
                parts.append(engine.dialect.pathUnder(lengthArgument: f.arguments.count - 1, prefixArgument: f.arguments.count))
            }
            f.sql = "(\(f.sql)) AND (" + parts.joined(separator: " OR ") + ")"
        }
        return f
    }

    public struct Order: Sendable, Equatable {
        public let field: String?   // nil: registration order
        public let descending: Bool
        /// "-start_time" (newest first), "temperature", nil (latest registered first).
        public init(parsing text: String?, fields: [FieldDeclaration]) throws {
            guard var t = text?.trimmed(" "), !t.isEmpty else { field = nil; descending = true; return }
            descending = t.hasPrefix("-")
            if t.hasPrefix("-") || t.hasPrefix("+") { t.removeFirst() }
            guard fields.contains(where: { $0.name == t }) else {
                throw QueryError("cannot order by unknown field '\(t)' (known fields: \(fields.map(\.name).sorted().joined(separator: ", ")))", at: 0)
            }
            field = t
        }
    }

    /// Entries matching `query`, `limit` at a time, continuing after `cursor`.
    public func search(_ query: CatalogQuery, order: String? = nil, limit: Int = 100, cursor: String? = nil,
                       visibleUnder: [String]? = nil) throws -> CatalogPage {
        let o = try Order(parsing: order, fields: mapping.fields)
        var w = try whereClause(query, visibleUnder: visibleUnder)
        let d = engine.dialect
        let key = o.field.flatMap { mapping.field($0) }.map { d.fieldExpression($0) }
        let dir = o.descending ? "DESC" : "ASC"
        if let c = cursor {
            guard let (value, id) = Catalog.decodeCursor(c) else { throw QueryError("bad cursor '\(c)' (use the 'next' of a previous page)", at: 0) }
            func arg(_ v: CatalogJSON) -> String { w.arguments.append(v); return d.placeholder(w.arguments.count) }
            let idCmp = o.descending ? "<" : ">"
            if let key {
                let cmp = o.descending ? "<" : ">"
                if value == .null {
                    w.sql += " AND (\(key) IS NULL AND id \(idCmp) \(arg(.int(id))))"
                } else {
                    w.sql += " AND (\(key) \(cmp) \(arg(value)) OR (\(key) = \(arg(value)) AND id \(idCmp) \(arg(.int(id)))) OR \(key) IS NULL)"
                }
            } else {
                w.sql += " AND id \(idCmp) \(arg(.int(id)))"
            }
        }
        let orderBy = key.map { "\($0) \(dir) NULLS LAST, id \(dir)" } ?? "id \(dir)"
        let n = max(1, min(limit, 10_000))
        let keyColumn = key ?? "NULL"
        let rows = try engine.select("SELECT id, path, entry, \(d.jsonText("si")), \(d.jsonText("harvested")), \(d.jsonText("meta")), \(keyColumn) FROM entries WHERE \(w.sql) ORDER BY \(orderBy) LIMIT \(n + 1)", w.arguments)
        var entries = try rows.prefix(n).map(entry(from:))
        var next: String? = nil
        if rows.count > n, let last = rows.prefix(n).last, case .int(let id) = last[0] {
            next = Catalog.encodeCursor(last[6], id)
        }
        for i in entries.indices { entries[i].id = { if case .int(let x) = rows[i][0] { return x } else { return 0 } }() }
        return CatalogPage(entries: entries, next: next)
    }

    /// Entries registered (or registered again: a re-harvested file's entries are new)
    /// after catalog id `id` that match `query`, oldest first: what cat:watch delivers.
    public func entries(after id: Int64, matching query: CatalogQuery, limit: Int = 1000) throws -> [CatalogEntry] {
        var w = try whereClause(query, visibleUnder: nil)
        w.arguments.append(.int(id))
        let d = engine.dialect
        let rows = try engine.select("SELECT id, path, entry, \(d.jsonText("si")), \(d.jsonText("harvested")), \(d.jsonText("meta")) FROM entries WHERE (\(w.sql)) AND id > \(d.placeholder(w.arguments.count)) ORDER BY id LIMIT \(max(1, limit))", w.arguments)
        return try rows.map { row in
            var e = try entry(from: row)
            if case .int(let i) = row[0] { e.id = i }
            return e
        }
    }

    /// The newest catalog id (0 for an empty catalog).
    public func lastID() throws -> Int64 {
        if case .int(let i)? = try engine.select("SELECT MAX(id) FROM entries", []).first?.first { return i }
        return 0
    }

    /// How many entries match.
    public func count(_ query: CatalogQuery, visibleUnder: [String]? = nil) throws -> Int {
        let w = try whereClause(query, visibleUnder: visibleUnder)
        let rows = try engine.select("SELECT COUNT(*) FROM entries WHERE \(w.sql)", w.arguments)
        if case .int(let n)? = rows.first?.first { return Int(n) }
        return 0
    }

    /// Entries per value of `field` among those matching `query`, most frequent first.
    public func facets(_ field: String, query: CatalogQuery = .all, limit: Int = 50,
                       visibleUnder: [String]? = nil) throws -> [(value: CatalogJSON, count: Int)] {
        guard let f = mapping.field(field) else {
            throw QueryError("unknown field '\(field)' (known fields: \(mapping.fields.map(\.name).sorted().joined(separator: ", ")))", at: 0)
        }
        let w = try whereClause(query, visibleUnder: visibleUnder)
        let e = engine.dialect.rawExpression(f)
        let rows = try engine.select("""
            SELECT \(e) AS v, COUNT(*) AS n FROM entries WHERE (\(w.sql)) AND \(e) IS NOT NULL
            GROUP BY v ORDER BY n DESC, v LIMIT \(max(1, min(limit, 10_000)))
            """, w.arguments)
        return rows.map { r in
            var n = 0
            if case .int(let c) = r[1] { n = Int(c) }
            return (r[0], n)
        }
    }

    func entry(from row: [CatalogJSON]) throws -> CatalogEntry {
        guard row.count >= 6, case .string(let path) = row[1], case .string(let name) = row[2],
              case .string(let siText) = row[3], case .string(let hText) = row[4], case .string(let metaText) = row[5] else {
            throw CatalogError("\(engine.location): a catalog row has an unexpected shape")
        }
        let si = try CatalogJSON.parse(siText), h = try CatalogJSON.parse(hText), meta = try CatalogJSON.parse(metaText)
        var e = CatalogEntry(path: path, entry: name)
        if case .object(let hv) = h, case .object(let sv) = si {
            for (k, v) in hv {
                let type = mapping.field(k)?.type ?? (v.stringValue != nil ? .text : .number)
                if let fv = FieldValue.from(harvested: v, normalised: sv[k], type: type) { e.fields[k] = fv }
            }
        }
        if case .object(let m) = meta { for (k, v) in m { if let s = v.stringValue { e.metadata[k] = s } } }
        return e
    }

    // MARK: cursors (URL-safe text of the last row's sort value and id)

    static func encodeCursor(_ value: CatalogJSON, _ id: Int64) -> String {
        let text = CatalogJSON.array([value, .int(id)]).text
        return Array(text.utf8).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    static func decodeCursor(_ c: String) -> (CatalogJSON, Int64)? {
        guard c.count % 2 == 0, c.count <= 2048 else { return nil }
        var bytes: [UInt8] = []
        var i = c.startIndex
        while i < c.endIndex {
            let j = c.index(i, offsetBy: 2)
            guard let b = UInt8(c[i..<j], radix: 16) else { return nil }
            bytes.append(b)
            i = j
        }
        guard let j = try? CatalogJSON.parse(String(decoding: bytes, as: UTF8.self)), case .array(let a) = j, a.count == 2,
              case .int(let id) = a[1] else { return nil }
        switch a[0] {
        case .null, .int, .double, .string: return (a[0], id)
        default: return nil
        }
    }
}
