import Foundation
import Logging
import NIOCore
import PostgresNIO
import PostgresLink

/// The catalog on PostgreSQL (a postgres:// URL): JSONB columns with a GIN index, btree
/// expression indexes on the declared fields, a generated tsvector for free text. The
/// SQL is QueryCompiler's, so both engines give the same answers. One connection, one
/// statement at a time (a lock), which is what registration and searches need.
public final class PostgresEngine: CatalogEngine, @unchecked Sendable {
    public let dialect = SQLDialect.postgres
    public let location: String
    let connection: PostgresConnection
    let lock = NSLock()
    let logger: Logger

    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
    public init(url: String) throws {
        let parsed: PostgresURL
        do { parsed = try PostgresURL(url) } catch { throw CatalogError("\(error)") }
        location = parsed.location
        logger = PostgresLink.logger
        do { connection = try PostgresLink.connect(parsed) } catch { throw CatalogError("\(error)") }
        try run("cannot set up the catalog") { c, log in
            for sql in [
                "CREATE TABLE IF NOT EXISTS files(path TEXT PRIMARY KEY, size BIGINT NOT NULL, mtime DOUBLE PRECISION NOT NULL, registered DOUBLE PRECISION NOT NULL)",
                """
                CREATE TABLE IF NOT EXISTS entries(id BIGSERIAL PRIMARY KEY, path TEXT NOT NULL, entry TEXT NOT NULL,
                  si JSONB NOT NULL, harvested JSONB NOT NULL, meta JSONB NOT NULL, words TEXT NOT NULL,
                  tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', words)) STORED, UNIQUE(path, entry))
                """,
                "CREATE INDEX IF NOT EXISTS entries_tsv ON entries USING GIN (tsv)",
                "CREATE INDEX IF NOT EXISTS entries_si ON entries USING GIN (si jsonb_path_ops)",
                "CREATE TABLE IF NOT EXISTS fields(name TEXT PRIMARY KEY, declaration TEXT NOT NULL, seq BIGSERIAL)",
            ] {
                try await c.query(PostgresQuery(unsafeSQL: sql), logger: log)
            }
        }
    }

    func run<T>(_ what: String, _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        if closed { throw CatalogError("\(location): the catalog is closed") }
        let c = connection, log = logger
        do { return try PostgresLink.blocking { try await body(c, log) } } catch let e as CatalogError { throw e } catch {
            throw CatalogError("\(location): \(what): \(PostgresLink.describe(error))")
        }
    }

    static func bindings(_ arguments: [CatalogJSON]) -> PostgresBindings {
        var b = PostgresBindings(capacity: arguments.count)
        for a in arguments {
            switch a {
            case .null: b.appendNull()
            case .bool(let x): b.append(x)
            case .int(let x): b.append(x)
            case .double(let x): b.append(x)
            case .string(let s): b.append(s)
            case .array, .object: b.append(a.text)
            }
        }
        return b
    }

    public func prepare(fields: [FieldDeclaration]) throws {
        let d = dialect
        try run("cannot set up the catalog") { c, log in
            try await c.query("BEGIN", logger: log)
            do {
                for f in fields {
                    try await c.query(PostgresQuery(unsafeSQL: "INSERT INTO fields(name, declaration) VALUES ($1, $2) ON CONFLICT(name) DO UPDATE SET declaration = excluded.declaration",
                                                    binds: PostgresEngine.bindings([.string(f.name), .string(f.storedText)])), logger: log)
                    guard f.indexed, FieldDeclaration.validName(f.name) else { continue }
                    try await c.query(PostgresQuery(unsafeSQL: "CREATE INDEX IF NOT EXISTS field_\(f.name) ON entries((\(d.fieldExpression(f))))"), logger: log)
                }
                if let i = fields.first(where: { $0.name == "instrument" }), let t = fields.first(where: { $0.name == "start_time" }) {
                    try await c.query(PostgresQuery(unsafeSQL: "CREATE INDEX IF NOT EXISTS latest_by_instrument ON entries((\(d.fieldExpression(i))), (\(d.fieldExpression(t))))"), logger: log)
                }
                try await c.query("COMMIT", logger: log)
            } catch {
                _ = try? await c.query("ROLLBACK", logger: log)
                throw error
            }
        }
    }

    public func storedFields() throws -> [FieldDeclaration] {
        try select("SELECT declaration FROM fields ORDER BY seq", []).compactMap { $0.first?.stringValue }.compactMap(FieldDeclaration.fromStored)
    }

    public func stamps(_ paths: [String]) throws -> [String: (size: Int64, mtime: Double)] {
        if paths.isEmpty { return [:] }
        var out: [String: (size: Int64, mtime: Double)] = [:]
        let rows = try run("cannot read registered files") { c, log -> [(String, Int64, Double)] in
            var b = PostgresBindings()
            b.append(paths)
            var result: [(String, Int64, Double)] = []
            for try await (p, s, m) in try await c.query(PostgresQuery(unsafeSQL: "SELECT path, size, mtime FROM files WHERE path = ANY($1)", binds: b), logger: log)
                .decode((String, Int64, Double).self) { result.append((p, s, m)) }
            return result
        }
        for (p, s, m) in rows { out[p] = (s, m) }
        return out
    }

    public func replace(_ files: [FileRecord]) throws {
        if files.isEmpty { return }
        let now = Date().timeIntervalSince1970
        try run("cannot store entries") { c, log in
            try await c.query("BEGIN", logger: log)
            do {
                for f in files {
                    try await c.query(PostgresQuery(unsafeSQL: "DELETE FROM entries WHERE path = $1", binds: PostgresEngine.bindings([.string(f.path)])), logger: log)
                    for e in f.entries {
                        let row = StoredEntry(e)
                        try await c.query(PostgresQuery(unsafeSQL: "INSERT INTO entries(path, entry, si, harvested, meta, words) VALUES ($1, $2, $3::jsonb, $4::jsonb, $5::jsonb, $6)",
                                                        binds: PostgresEngine.bindings([.string(e.path), .string(e.entry), .string(row.si), .string(row.harvested),
                                                                                        .string(row.meta), .string(row.words)])), logger: log)
                    }
                    try await c.query(PostgresQuery(unsafeSQL: """
                        INSERT INTO files(path, size, mtime, registered) VALUES ($1, $2, $3, $4)
                        ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime = excluded.mtime, registered = excluded.registered
                        """, binds: PostgresEngine.bindings([.string(f.path), .int(f.size), .double(f.mtime), .double(now)])), logger: log)
                }
                try await c.query("COMMIT", logger: log)
            } catch {
                _ = try? await c.query("ROLLBACK", logger: log)
                throw error
            }
        }
    }

    public func select(_ sql: String, _ arguments: [CatalogJSON]) throws -> [[CatalogJSON]] {
        try run("query failed") { c, log in
            var out: [[CatalogJSON]] = []
            for try await row in try await c.query(PostgresQuery(unsafeSQL: sql, binds: PostgresEngine.bindings(arguments)), logger: log) {
                out.append(row.map(PostgresEngine.value))
            }
            return out
        }
    }

    static func value(_ cell: PostgresCell) -> CatalogJSON {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int8, .int4, .int2: return (try? cell.decode(Int64.self)).map { .int($0) } ?? .null
        case .float8, .float4, .numeric: return (try? cell.decode(Double.self)).map { .double($0) } ?? .null
        case .bool: return (try? cell.decode(Bool.self)).map { .bool($0) } ?? .null
        default: return (try? cell.decode(String.self)).map { .string($0) } ?? .null
        }
    }

    var closed = false

    /// Closes the connection (once; also when the engine is released unclosed, as a Lua
    /// catalog collected at exit is).
    public func close() {
        lock.lock()
        defer { lock.unlock() }
        if closed { return }
        closed = true
        let c = connection
        _ = try? PostgresLink.blocking { try await c.close() }
    }

    deinit { close() }
}
