import Foundation
import GRDB

/// The embedded journal: one SQLite file in WAL mode on a local disk (WAL's shared
/// memory does not work over NFS). Many processes append (the stacker, `nxlua trigger`,
/// `nxlua serve`), the macro runner reads and keeps its cursors and records in the same
/// file. Appends are durable (synchronous=FULL: the WAL is synced at each commit), so
/// sources batch: one commit per stacker flush, per HTTP request.
public final class SQLiteJournal: JournalStore, @unchecked Sendable {
    public let path: String
    public var location: String { path }
    /// One runner per SQLite journal (a lock file; see MacroRunner).
    public var sharedByRunners: Bool { false }
    let pool: DatabasePool

    /// `durable`: false for the macro runner's bookkeeping (synchronous=NORMAL: a commit
    /// survives the process being killed, not a power cut; records are rebuilt by
    /// re-delivery in that case, events are never at risk).
    public init(path: String, durable: Bool = true) throws {
        self.path = path
        var config = Configuration()
        // Another process holds the write lock (the stacker, a trigger, the runner): retry
        // every half millisecond for up to 30 s. SQLite's own busy timeout backs off to
        // 100 ms sleeps, which showed as the p99 of frame-to-handler latency.
        config.busyMode = .callback { tries in
            usleep(500)
            return tries < 60_000
        }
        config.label = "nxlua.journal"
        let synchronous = durable ? "FULL" : "NORMAL"
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
        }
        do {
            pool = try DatabasePool(path: path, configuration: config)
            try pool.write { db in try SQLiteJournal.createSchema(db) }
        } catch {
            throw EventError("\(path): cannot open the event journal: \(SQLiteJournal.describe(error))")
        }
    }

    static func createSchema(_ db: Database) throws {
        try db.execute(sql: """
        CREATE TABLE IF NOT EXISTS events(
          seq INTEGER PRIMARY KEY AUTOINCREMENT,
          kind TEXT NOT NULL,
          run TEXT NOT NULL,
          key TEXT UNIQUE,
          source TEXT NOT NULL,
          time REAL NOT NULL,
          payload TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS events_run ON events(run, kind);
        CREATE TABLE IF NOT EXISTS cursors(
          macro TEXT PRIMARY KEY,
          seq INTEGER NOT NULL,
          version TEXT,
          updated REAL NOT NULL);
        CREATE TABLE IF NOT EXISTS records(
          macro TEXT NOT NULL,
          seq INTEGER NOT NULL,
          status TEXT NOT NULL,
          version TEXT NOT NULL,
          error TEXT,
          attempts INTEGER NOT NULL,
          updated REAL NOT NULL,
          PRIMARY KEY(macro, seq)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS macros(
          macro TEXT PRIMARY KEY,
          path TEXT NOT NULL,
          version TEXT NOT NULL,
          pending TEXT,
          failures INTEGER NOT NULL,
          total_failures INTEGER NOT NULL,
          disabled INTEGER NOT NULL,
          message TEXT,
          heartbeat REAL NOT NULL);
        """)
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? DatabaseError { return e.message ?? "\(e.resultCode)" }
        if let e = error as? EventError { return e.message }
        return "\(error)"
    }

    func wrap<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as EventError { throw e } catch {
            throw EventError("\(path): \(what): \(SQLiteJournal.describe(error))")
        }
    }

    // MARK: EventSink, EventJournal

    @discardableResult
    public func append(_ events: [NewEvent]) throws -> [Int64?] {
        if events.isEmpty { return [] }
        let payloads = events.map { e -> String in
            var text = ""
            EventValue.writeObject(e.payload, to: &text)
            return text
        }
        return try wrap("cannot append events") {
            try pool.write { db -> [Int64?] in
                let insert = try db.cachedStatement(sql: """
                    INSERT INTO events(kind, run, key, source, time, payload) VALUES (?, ?, ?, ?, ?, ?)
                    """)
                // looked up first, not INSERT OR IGNORE: an ignored insert still uses up a
                // sequence number, and the journal's numbers have no gaps
                let known = try db.cachedStatement(sql: "SELECT 1 FROM events WHERE key = ?")
                var seqs: [Int64?] = []
                seqs.reserveCapacity(events.count)
                for (e, p) in zip(events, payloads) {
                    if let key = e.key, try Int.fetchOne(known, arguments: [key]) != nil {
                        seqs.append(nil)
                        continue
                    }
                    try insert.execute(arguments: [e.kind.rawValue, e.run, e.key, e.source, e.time, p])
                    seqs.append(db.lastInsertedRowID)
                }
                return seqs
            }
        }
    }

    public func events(after seq: Int64, limit: Int) throws -> [Event] {
        try wrap("cannot read events") {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT seq, kind, run, key, source, time, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                 arguments: [seq, limit]).map(SQLiteJournal.event)
            }
        }
    }

    static func event(_ row: Row) throws -> Event {
        let seq: Int64 = row["seq"]
        let kindName: String = row["kind"]
        let text: String = row["payload"]
        guard let kind = EventKind(rawValue: kindName) else { throw EventError("event \(seq): unknown kind '\(kindName)'") }
        let payload: [String: EventValue]
        do { payload = try JSONDecoder().decode([String: EventValue].self, from: Data(text.utf8)) } catch {
            throw EventError("event \(seq): payload is not a JSON object: \(error)")
        }
        return Event(seq: seq, kind: kind, run: row["run"], payload: payload, key: row["key"], source: row["source"], time: row["time"])
    }

    public func lastSeq() throws -> Int64 {
        try wrap("cannot read events") {
            // AUTOINCREMENT's counter, not MAX(seq): pruning may have removed the last events
            try pool.read { db in
                try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'events'")
                    ?? Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM events") ?? 0
            }
        }
    }

    /// The latest run that wrote `file` (a resumed stacker continues it), and whether it stopped.
    public func lastRun(writing file: String) throws -> (run: String, stopped: Bool)? {
        try wrap("cannot read runs") {
            try pool.read { db in
                guard let run = try String.fetchOne(db, sql: """
                    SELECT run FROM events WHERE kind = 'run.start' AND json_extract(payload, '$.file') = ?
                    ORDER BY seq DESC LIMIT 1
                    """, arguments: [file]) else { return nil }
                let stops = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM events WHERE run = ? AND kind = 'run.stop'", arguments: [run]) ?? 0
                return (run, stops > 0)
            }
        }
    }

    /// The frame ranges announced (frames.ready) for a run's stream.
    public func announcedFrames(run: String, stream: String) throws -> [Range<Int>] {
        try wrap("cannot read runs") {
            try pool.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT json_extract(payload, '$.first') AS lo, json_extract(payload, '$.stop') AS hi FROM events
                    WHERE run = ? AND kind = 'frames.ready' AND json_extract(payload, '$.stream') = ?
                    """, arguments: [run, stream]).compactMap { row -> Range<Int>? in
                    guard let lo: Int = row["lo"], let hi: Int = row["hi"], hi >= lo else { return nil }
                    return lo..<hi
                }
            }
        }
    }

    /// The sequence number of the latest run.start, and whether that run has stopped.
    public func lastRunStart() throws -> (seq: Int64, stopped: Bool)? {
        try wrap("cannot read runs") {
            try pool.read { db in
                guard let row = try Row.fetchOne(db, sql: "SELECT seq, run FROM events WHERE kind = 'run.start' ORDER BY seq DESC LIMIT 1")
                else { return nil }
                let seq: Int64 = row["seq"]
                let run: String = row["run"]
                let stops = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM events WHERE run = ? AND kind = 'run.stop' AND seq > ?",
                                             arguments: [run, seq]) ?? 0
                return (seq, stops > 0)
            }
        }
    }

    public func prune(olderThan seconds: Double) throws -> Int {
        try wrap("cannot prune the journal") {
            try pool.write { db in
                try db.execute(sql: """
                    DELETE FROM events WHERE seq <= (SELECT COALESCE(MIN(seq), 0) FROM cursors)
                      AND time < ? AND kind NOT IN ('run.start', 'run.stop')
                    """, arguments: [Date().timeIntervalSince1970 - seconds])
                let removed = db.changesCount
                try db.execute(sql: "DELETE FROM records WHERE status IN ('done', 'skipped') AND seq NOT IN (SELECT seq FROM events)")
                return removed
            }
        }
    }

    public func size() throws -> JournalSize {
        try wrap("cannot read the journal's size") {
            try pool.read { db in
                let events = try Int64.fetchOne(db, sql: "SELECT COUNT(*) FROM events") ?? 0
                let oldest = try Double.fetchOne(db, sql: "SELECT MIN(time) FROM events")
                let pages = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0
                let pageSize = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 0
                return JournalSize(events: events, bytes: pages * pageSize, oldest: oldest)
            }
        }
    }

    // MARK: MacroLedger

    public func cursor(of macro: String) throws -> Int64? {
        try wrap("cannot read the cursor of \(macro)") {
            try pool.read { db in try Int64.fetchOne(db, sql: "SELECT seq FROM cursors WHERE macro = ?", arguments: [macro]) }
        }
    }

    /// Sets a macro's cursor (a new macro's starting point).
    public func setCursor(of macro: String, to seq: Int64) throws {
        try wrap("cannot write the cursor of \(macro)") {
            try pool.write { db in
                try db.execute(sql: "INSERT INTO cursors(macro, seq, updated) VALUES (?, ?, ?) ON CONFLICT(macro) DO UPDATE SET seq = excluded.seq, updated = excluded.updated",
                               arguments: [macro, seq, Date().timeIntervalSince1970])
            }
        }
    }

    public func begin(macro: String, seq: Int64, version: String) throws -> Int {
        try wrap("cannot record the start of event \(seq) in \(macro)") {
            try pool.write { db in
                try db.execute(sql: """
                    INSERT INTO records(macro, seq, status, version, error, attempts, updated) VALUES (?, ?, 'running', ?, NULL, 1, ?)
                    ON CONFLICT(macro, seq) DO UPDATE SET status = 'running', version = excluded.version, attempts = attempts + 1, updated = excluded.updated
                    """, arguments: [macro, seq, version, Date().timeIntervalSince1970])
                return try Int.fetchOne(db, sql: "SELECT attempts FROM records WHERE macro = ? AND seq = ?", arguments: [macro, seq]) ?? 1
            }
        }
    }

    public func finish(macro: String, outcome: MacroRecord?, skipped: [Int64], version: String, cursor: Int64) throws {
        try wrap("cannot record events of \(macro)") {
            try pool.write { db in
                let now = Date().timeIntervalSince1970
                if !skipped.isEmpty {
                    let skip = try db.cachedStatement(sql: """
                        INSERT INTO records(macro, seq, status, version, error, attempts, updated) VALUES (?, ?, 'skipped', ?, NULL, 0, ?)
                        ON CONFLICT(macro, seq) DO UPDATE SET status = 'skipped', updated = excluded.updated
                        """)
                    for s in skipped { try skip.execute(arguments: [macro, s, version, now]) }
                }
                if let r = outcome {
                    try db.execute(sql: """
                        INSERT INTO records(macro, seq, status, version, error, attempts, updated) VALUES (?, ?, ?, ?, ?, ?, ?)
                        ON CONFLICT(macro, seq) DO UPDATE SET status = excluded.status, version = excluded.version, error = excluded.error, updated = excluded.updated
                        """, arguments: [macro, r.seq, r.status.rawValue, r.version, r.error, r.attempts, now])
                }
                try db.execute(sql: """
                    INSERT INTO cursors(macro, seq, version, updated) VALUES (?, ?, ?, ?)
                    ON CONFLICT(macro) DO UPDATE SET seq = MAX(seq, excluded.seq), version = excluded.version, updated = excluded.updated
                    """, arguments: [macro, cursor, version, now])
            }
        }
    }

    public func records(of macro: String) throws -> [MacroRecord] {
        try wrap("cannot read the records of \(macro)") {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT seq, status, version, error, attempts FROM records WHERE macro = ? ORDER BY seq", arguments: [macro]).map { row in
                    MacroRecord(macro: macro, seq: row["seq"], status: RecordStatus(rawValue: row["status"]) ?? .failed,
                                version: row["version"], error: row["error"], attempts: row["attempts"])
                }
            }
        }
    }

    public func publish(_ s: MacroStatus) throws {
        try wrap("cannot write the status of \(s.macro)") {
            try pool.write { db in
                try db.execute(sql: """
                    INSERT INTO macros(macro, path, version, pending, failures, total_failures, disabled, message, heartbeat)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(macro) DO UPDATE SET path = excluded.path, version = excluded.version, pending = excluded.pending,
                      failures = excluded.failures, total_failures = excluded.total_failures, disabled = excluded.disabled,
                      message = excluded.message, heartbeat = excluded.heartbeat
                    """, arguments: [s.macro, s.path, s.version, s.pendingVersion, s.failures, s.totalFailures, s.disabled ? 1 : 0, s.message, s.heartbeat])
            }
        }
    }

    public func statuses() throws -> [MacroStatus] {
        try wrap("cannot read macro statuses") {
            try pool.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT m.*, COALESCE(c.seq, 0) AS cursor FROM macros m LEFT JOIN cursors c ON c.macro = m.macro ORDER BY m.macro
                    """).map { row in
                    MacroStatus(macro: row["macro"], path: row["path"], version: row["version"], pendingVersion: row["pending"],
                                cursor: row["cursor"], failures: row["failures"], totalFailures: row["total_failures"],
                                disabled: (row["disabled"] as Int) != 0, message: row["message"], heartbeat: row["heartbeat"])
                }
            }
        }
    }
}
