import Foundation
import GRDB

/// The embedded catalog: one SQLite file in WAL mode (readers never wait for a
/// registration), FTS5 for free text, expression indexes on declared fields.
public final class SQLiteEngine: CatalogEngine, @unchecked Sendable {
    public let dialect = SQLDialect.sqlite
    public let location: String
    let pool: DatabasePool

    public init(path: String) throws {
        location = path
        var config = Configuration()
        // a stacker and a registration may write at once: wait for the other's commit
        config.busyMode = .callback { tries in
            usleep(500)
            return tries < 60_000
        }
        config.label = "nxlua.catalog"
        config.prepareDatabase { db in
            // NORMAL in WAL mode: a commit survives a killed process (what the catalog
            // promises); a power cut may lose the last commits, which a rerun redoes
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        do {
            pool = try DatabasePool(path: path, configuration: config)
            // the writer's page cache: the field indexes take values in random order, and
            // at 1M entries SQLite's default 2 MB re-read their pages on every batch
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA cache_size = -65536") }
            try pool.write { db in
                try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS files(
                  path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime REAL NOT NULL, registered REAL NOT NULL) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS entries(
                  id INTEGER PRIMARY KEY AUTOINCREMENT,
                  path TEXT NOT NULL, entry TEXT NOT NULL,
                  si TEXT NOT NULL, harvested TEXT NOT NULL, meta TEXT NOT NULL, words TEXT NOT NULL,
                  UNIQUE(path, entry));
                CREATE VIRTUAL TABLE IF NOT EXISTS entries_fts USING fts5(words, content='entries', content_rowid='id');
                DROP TRIGGER IF EXISTS entries_ai;
                CREATE TRIGGER IF NOT EXISTS entries_ad AFTER DELETE ON entries BEGIN
                  INSERT INTO entries_fts(entries_fts, rowid, words) VALUES ('delete', old.id, old.words); END;
                CREATE TRIGGER IF NOT EXISTS entries_au AFTER UPDATE ON entries BEGIN
                  INSERT INTO entries_fts(entries_fts, rowid, words) VALUES ('delete', old.id, old.words);
                  INSERT INTO entries_fts(rowid, words) VALUES (new.id, new.words); END;
                CREATE TABLE IF NOT EXISTS fields(name TEXT PRIMARY KEY, declaration TEXT NOT NULL);
                """)
            }
        } catch {
            throw CatalogError("\(path): cannot open the catalog: \(SQLiteEngine.describe(error))")
        }
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? DatabaseError { return e.message ?? "\(e.resultCode)" }
        return "\(error)"
    }

    func wrap<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as CatalogError { throw e } catch {
            throw CatalogError("\(location): \(what): \(SQLiteEngine.describe(error))")
        }
    }

    public func prepare(fields: [FieldDeclaration]) throws {
        try wrap("cannot set up the catalog") {
            try pool.write { db in
                let put = try db.cachedStatement(sql: "INSERT INTO fields(name, declaration) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET declaration = excluded.declaration")
                for f in fields {
                    try put.execute(arguments: [f.name, f.storedText])
                    guard f.indexed, FieldDeclaration.validName(f.name) else { continue }
                    try db.execute(sql: "CREATE INDEX IF NOT EXISTS field_\(f.name) ON entries(\(dialect.fieldExpression(f)))")
                }
                // "the latest scan of this instrument"
                if let i = fields.first(where: { $0.name == "instrument" }), let t = fields.first(where: { $0.name == "start_time" }) {
                    try db.execute(sql: "CREATE INDEX IF NOT EXISTS latest_by_instrument ON entries(\(dialect.fieldExpression(i)), \(dialect.fieldExpression(t)))")
                }
            }
        }
    }

    public func storedFields() throws -> [FieldDeclaration] {
        try wrap("cannot read the catalog's fields") {
            try pool.read { db in
                try String.fetchAll(db, sql: "SELECT declaration FROM fields ORDER BY rowid").compactMap(FieldDeclaration.fromStored)
            }
        }
    }

    public func stamps(_ paths: [String]) throws -> [String: (size: Int64, mtime: Double)] {
        try wrap("cannot read registered files") {
            try pool.read { db in
                var out: [String: (size: Int64, mtime: Double)] = [:]
                let s = try db.cachedStatement(sql: "SELECT size, mtime FROM files WHERE path = ?")
                for p in paths {
                    if let row = try Row.fetchOne(s, arguments: [p]) { out[p] = (row[0], row[1]) }
                }
                return out
            }
        }
    }

    public func replace(_ files: [FileRecord]) throws {
        if files.isEmpty { return }
        try wrap("cannot store entries") {
            try pool.write { db in
                let delete = try db.cachedStatement(sql: "DELETE FROM entries WHERE path = ?")
                let insert = try db.cachedStatement(sql: "INSERT INTO entries(path, entry, si, harvested, meta, words) VALUES (?, ?, ?, ?, ?, ?)")
                let file = try db.cachedStatement(sql: """
                    INSERT INTO files(path, size, mtime, registered) VALUES (?, ?, ?, ?)
                    ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime = excluded.mtime, registered = excluded.registered
                    """)
                let now = Date().timeIntervalSince1970
                // new rows are indexed for free text after the batch, in one statement: a
                // trigger per row interleaved the FTS index with the field indexes and ran
                // at a third of the rate (3k vs 10k entries/s measured with fourteen indexes)
                let before = try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(id), 0) FROM entries") ?? 0
                for f in files {
                    try delete.execute(arguments: [f.path])
                    for e in f.entries {
                        let row = StoredEntry(e)
                        try insert.execute(arguments: [e.path, e.entry, row.si, row.harvested, row.meta, row.words])
                    }
                    try file.execute(arguments: [f.path, f.size, f.mtime, now])
                }
                try db.execute(sql: "INSERT INTO entries_fts(rowid, words) SELECT id, words FROM entries WHERE id > ?", arguments: [before])
            }
        }
    }

    public func select(_ sql: String, _ arguments: [CatalogJSON]) throws -> [[CatalogJSON]] {
        try wrap("query failed") {
            try pool.read { db in
                let args = StatementArguments(arguments.map { a -> DatabaseValueConvertible? in
                    switch a {
                    case .null: return nil
                    case .bool(let b): return b
                    case .int(let i): return i
                    case .double(let d): return d
                    case .string(let s): return s
                    case .array, .object: return a.text
                    }
                })
                return try Row.fetchAll(db, sql: sql, arguments: args).map { row in
                    (0..<row.count).map { i -> CatalogJSON in
                        let v = row[i] as DatabaseValue
                        switch v.storage {
                        case .null: return .null
                        case .int64(let x): return .int(x)
                        case .double(let x): return .double(x)
                        case .string(let s): return .string(s)
                        case .blob(let d): return .string(String(decoding: d, as: UTF8.self))
                        }
                    }
                }
            }
        }
    }

    public func close() { try? pool.close() }
}

/// An entry as its stored columns: normalised values (si), values as harvested, the
/// undeclared metadata, and the words of its free text.
struct StoredEntry {
    let si: String
    let harvested: String
    let meta: String
    let words: String

    init(_ e: CatalogEntry) {
        var si: [String: CatalogJSON] = [:], h: [String: CatalogJSON] = [:]
        for (k, v) in e.fields {
            si[k] = v.normalised
            h[k] = v.harvested
        }
        self.si = CatalogJSON.object(si).text
        self.harvested = CatalogJSON.object(h).text
        self.meta = CatalogJSON.object(e.metadata.mapValues { .string($0) }).text
        self.words = CatalogText.words(e.freeText)
    }
}
