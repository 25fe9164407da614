import Foundation
import NIOCore
import PostgresLink
import PostgresNIO

/// The journal on PostgreSQL (a postgres:// URL): sources on many hosts append, several
/// `nxlua macros` runners share the work through leases. Same tables and meaning as
/// SQLiteJournal's. Sequence numbers come from one counter row locked by each append
/// until its commit, so appenders queue there: numbers have no gaps and no duplicates, and
/// commits become visible in sequence order (a reader never sees event 11 before 10).
public final class PostgresJournal: JournalStore, MacroLeases, @unchecked Sendable {
    public let location: String
    public var sharedByRunners: Bool { true }
    let pool: PostgresPool
    /// The runner holding leases: begin/finish of a macro whose lease it lost are refused,
    /// so a runner that stalled past its lease cannot record over its successor.
    public var leaseOwner: String?

    public static func isURL(_ location: String) -> Bool { PostgresURL.isPostgres(location) }

    /// Channel on which appends notify (a wake-up only: notifications are not kept).
    static let channel = "nxlua_journal"

    /// `durable`: false for the macro runner's bookkeeping, as SQLiteJournal's: its
    /// commits (records, cursors, statuses, leases) return without waiting for the server's
    /// disk flush (synchronous_commit=off). They survive the runner being killed and are
    /// seen by every other connection at once; only a crash of the server's machine can
    /// lose the last fraction of a second of them, after which events are re-delivered
    /// as after a runner crash. Two flushes per handled event otherwise bound a runner
    /// to a few hundred events a second per disk.
    public init(url: String, connections: Int = 4, durable: Bool = true) throws {
        var parsed: PostgresURL
        do { parsed = try PostgresURL(url) } catch { throw EventError("\(error)") }
        parsed.synchronousCommit = durable
        location = parsed.location
        do { pool = try PostgresPool(url: parsed, size: connections) } catch { throw EventError("\(error)") }
        try run("cannot set up the event journal") { c in
            try await c.query("BEGIN", logger: PostgresLink.logger)
            // several processes starting at once on a new database create the tables once
            try await c.query("SELECT pg_advisory_xact_lock(7262016)", logger: PostgresLink.logger)
            for sql in PostgresJournal.schema { try await c.query(PostgresQuery(unsafeSQL: sql), logger: PostgresLink.logger) }
            try await c.query("COMMIT", logger: PostgresLink.logger)
        }
    }

    /// Polled while waiting for the server (a runner stopping on Ctrl-C or SIGTERM).
    public var cancelled: @Sendable () -> Bool {
        get { pool.cancelled }
        set { pool.cancelled = newValue }
    }

    static let schema = [
        """
        CREATE TABLE IF NOT EXISTS events(seq BIGINT PRIMARY KEY, kind TEXT NOT NULL, run TEXT NOT NULL, key TEXT UNIQUE,
          source TEXT NOT NULL, time DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL)
        """,
        "CREATE INDEX IF NOT EXISTS events_run ON events(run, kind)",
        "CREATE INDEX IF NOT EXISTS events_kind ON events(kind, seq)",
        "CREATE TABLE IF NOT EXISTS journal_counter(id INTEGER PRIMARY KEY, seq BIGINT NOT NULL)",
        "INSERT INTO journal_counter VALUES (1, 0) ON CONFLICT DO NOTHING",
        "CREATE TABLE IF NOT EXISTS cursors(macro TEXT PRIMARY KEY, seq BIGINT NOT NULL, version TEXT, updated DOUBLE PRECISION NOT NULL)",
        """
        CREATE TABLE IF NOT EXISTS records(macro TEXT NOT NULL, seq BIGINT NOT NULL, status TEXT NOT NULL, version TEXT NOT NULL,
          error TEXT, attempts INTEGER NOT NULL, updated DOUBLE PRECISION NOT NULL, PRIMARY KEY(macro, seq))
        """,
        """
        CREATE TABLE IF NOT EXISTS macros(macro TEXT PRIMARY KEY, path TEXT NOT NULL, version TEXT NOT NULL, pending TEXT,
          failures INTEGER NOT NULL, total_failures INTEGER NOT NULL, disabled INTEGER NOT NULL, message TEXT,
          heartbeat DOUBLE PRECISION NOT NULL, runner TEXT)
        """,
        "CREATE TABLE IF NOT EXISTS leases(macro TEXT PRIMARY KEY, owner TEXT NOT NULL, expires DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE IF NOT EXISTS runners(owner TEXT PRIMARY KEY, expires DOUBLE PRECISION NOT NULL)",
    ]

    static let now = "extract(epoch from clock_timestamp())::float8"

    func run<T>(_ what: String, _ body: @escaping @Sendable (PostgresConnection) async throws -> T) throws -> T {
        do { return try pool.run(body) } catch let e as EventError { throw e } catch {
            throw EventError("\(location): \(what): \(PostgresLink.describe(error))")
        }
    }

    /// One transaction: committed if `body` returns, rolled back if it throws.
    func transaction<T>(_ what: String, _ body: @escaping @Sendable (PostgresConnection) async throws -> T) throws -> T {
        try run(what) { c in
            try await c.query("BEGIN", logger: PostgresLink.logger)
            do {
                let r = try await body(c)
                try await c.query("COMMIT", logger: PostgresLink.logger)
                return r
            } catch {
                _ = try? await c.query("ROLLBACK", logger: PostgresLink.logger)
                throw error
            }
        }
    }

    static func query(_ sql: String, _ binds: (inout PostgresBindings) -> Void = { _ in }) -> PostgresQuery {
        var b = PostgresBindings()
        binds(&b)
        return PostgresQuery(unsafeSQL: sql, binds: b)
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
        let keys = Array(Set(events.compactMap(\.key)))
        return try transaction("cannot append events") { c in
            let log = PostgresLink.logger
            // the counter row stays locked until COMMIT: appenders take turns from here
            var last: Int64 = 0
            for try await s in try await c.query("SELECT seq FROM journal_counter WHERE id = 1 FOR UPDATE", logger: log).decode(Int64.self) { last = s }
            var known = Set<String>()
            if !keys.isEmpty {
                for try await k in try await c.query(PostgresJournal.query("SELECT key FROM events WHERE key = ANY($1)") { $0.append(keys) }, logger: log)
                    .decode(String.self) { known.insert(k) }
            }
            var seqs: [Int64?] = []
            var seqColumn: [Int64] = [], kinds: [String] = [], runs: [String] = [], keyColumn: [String] = [], hasKey: [Bool] = []
            var sources: [String] = [], times: [Double] = [], texts: [String] = []
            for (e, p) in zip(events, payloads) {
                if let k = e.key {
                    if known.contains(k) { seqs.append(nil); continue }
                    known.insert(k)   // twice in one batch: the second is the duplicate
                }
                last += 1
                seqs.append(last)
                seqColumn.append(last); kinds.append(e.kind.rawValue); runs.append(e.run)
                keyColumn.append(e.key ?? ""); hasKey.append(e.key != nil)
                sources.append(e.source); times.append(e.time); texts.append(p)
            }
            if !seqColumn.isEmpty {
                try await c.query(PostgresJournal.query("""
                    INSERT INTO events(seq, kind, run, key, source, time, payload)
                    SELECT s, k, r, CASE WHEN h THEN y END, o, t, p
                    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::text[], $7::float8[], $8::text[])
                      AS u(s, k, r, y, h, o, t, p)
                    """) { b in
                        b.append(seqColumn); b.append(kinds); b.append(runs); b.append(keyColumn); b.append(hasKey)
                        b.append(sources); b.append(times); b.append(texts)
                    }, logger: log)
                try await c.query(PostgresJournal.query("UPDATE journal_counter SET seq = $1 WHERE id = 1") { $0.append(last) }, logger: log)
                // delivered at COMMIT, to runners waiting on LISTEN
                try await c.query("SELECT pg_notify('nxlua_journal', '')", logger: log)
            }
            return seqs
        }
    }

    public func events(after seq: Int64, limit: Int) throws -> [Event] {
        let rows = try run("cannot read events") { c in
            var out: [(Int64, String, String, String?, String, Double, String)] = []
            for try await r in try await c.query(PostgresJournal.query(
                "SELECT seq, kind, run, key, source, time, payload FROM events WHERE seq > $1 ORDER BY seq LIMIT $2") { b in
                    b.append(seq); b.append(limit)
                }, logger: PostgresLink.logger).decode((Int64, String, String, String?, String, Double, String).self) { out.append(r) }
            return out
        }
        return try rows.map { seq, kindName, run, key, source, time, text in
            guard let kind = EventKind(rawValue: kindName) else { throw EventError("event \(seq): unknown kind '\(kindName)'") }
            let payload: [String: EventValue]
            do { payload = try JSONDecoder().decode([String: EventValue].self, from: Data(text.utf8)) } catch {
                throw EventError("event \(seq): payload is not a JSON object: \(error)")
            }
            return Event(seq: seq, kind: kind, run: run, payload: payload, key: key, source: source, time: time)
        }
    }

    public func lastSeq() throws -> Int64 {
        try one("cannot read events", "SELECT seq FROM journal_counter WHERE id = 1", Int64.self) ?? 0
    }

    func one<T: PostgresDecodable & Sendable>(_ what: String, _ sql: String, _ type: T.Type,
                                              _ binds: @escaping @Sendable (inout PostgresBindings) -> Void = { _ in }) throws -> T? {
        try run(what) { c in
            var out: T?
            for try await v in try await c.query(PostgresJournal.query(sql, binds), logger: PostgresLink.logger).decode(T.self) { out = v }
            return out
        }
    }

    public func lastRun(writing file: String) throws -> (run: String, stopped: Bool)? {
        let r = try run("cannot read runs") { c -> (String, Int64)? in
            var out: (String, Int64)?
            for try await v in try await c.query(PostgresJournal.query("""
                SELECT run, (SELECT COUNT(*) FROM events s WHERE s.run = e.run AND s.kind = 'run.stop') FROM events e
                WHERE kind = 'run.start' AND payload::jsonb->>'file' = $1 ORDER BY seq DESC LIMIT 1
                """) { $0.append(file) }, logger: PostgresLink.logger).decode((String, Int64).self) { out = v }
            return out
        }
        return r.map { ($0.0, $0.1 > 0) }
    }

    public func announcedFrames(run: String, stream: String) throws -> [Range<Int>] {
        try self.run("cannot read runs") { c in
            var out: [Range<Int>] = []
            for try await (lo, hi) in try await c.query(PostgresJournal.query("""
                SELECT (payload::jsonb->>'first')::bigint, (payload::jsonb->>'stop')::bigint FROM events
                WHERE run = $1 AND kind = 'frames.ready' AND payload::jsonb->>'stream' = $2
                """) { $0.append(run); $0.append(stream) }, logger: PostgresLink.logger).decode((Int64?, Int64?).self) {
                if let lo, let hi, hi >= lo { out.append(Int(lo)..<Int(hi)) }
            }
            return out
        }
    }

    public func lastRunStart() throws -> (seq: Int64, stopped: Bool)? {
        let r = try run("cannot read runs") { c -> (Int64, Int64)? in
            var out: (Int64, Int64)?
            for try await v in try await c.query("""
                SELECT seq, (SELECT COUNT(*) FROM events s WHERE s.run = e.run AND s.kind = 'run.stop' AND s.seq > e.seq) FROM events e
                WHERE kind = 'run.start' ORDER BY seq DESC LIMIT 1
                """, logger: PostgresLink.logger).decode((Int64, Int64).self) { out = v }
            return out
        }
        return r.map { ($0.0, $0.1 > 0) }
    }

    public func prune(olderThan seconds: Double) throws -> Int {
        try transaction("cannot prune the journal") { c in
            let log = PostgresLink.logger
            // appends wait meanwhile: the lowest cursor cannot move under the delete (cursors
            // only grow, so a concurrent finish is harmless anyway)
            var removed = 0
            for try await n in try await c.query(PostgresJournal.query("""
                WITH gone AS (
                  DELETE FROM events WHERE seq <= (SELECT COALESCE(MIN(seq), 0) FROM cursors)
                    AND time < \(PostgresJournal.now) - $1 AND kind NOT IN ('run.start', 'run.stop')
                  RETURNING seq)
                SELECT COUNT(*) FROM gone
                """) { $0.append(seconds) }, logger: log).decode(Int64.self) { removed = Int(n) }
            try await c.query("DELETE FROM records r WHERE status IN ('done', 'skipped') AND NOT EXISTS (SELECT 1 FROM events e WHERE e.seq = r.seq)", logger: log)
            return removed
        }
    }

    public func size() throws -> JournalSize {
        let r = try run("cannot read the journal's size") { c -> (Int64, Int64, Double?) in
            var out: (Int64, Int64, Double?) = (0, 0, nil)
            for try await v in try await c.query("""
                SELECT (SELECT COUNT(*) FROM events), pg_total_relation_size('events') + pg_total_relation_size('records'),
                  (SELECT MIN(time) FROM events)
                """, logger: PostgresLink.logger).decode((Int64, Int64, Double?).self) { out = v }
            return out
        }
        return JournalSize(events: r.0, bytes: r.1, oldest: r.2)
    }

    // MARK: MacroLedger

    public func cursor(of macro: String) throws -> Int64? {
        try one("cannot read the cursor of \(macro)", "SELECT seq FROM cursors WHERE macro = $1", Int64.self) { $0.append(macro) }
    }

    public func setCursor(of macro: String, to seq: Int64) throws {
        try run("cannot write the cursor of \(macro)") { c in
            try await c.query(PostgresJournal.query("""
                INSERT INTO cursors(macro, seq, updated) VALUES ($1, $2, \(PostgresJournal.now))
                ON CONFLICT(macro) DO UPDATE SET seq = excluded.seq, updated = excluded.updated
                """) { $0.append(macro); $0.append(seq) }, logger: PostgresLink.logger)
        }
    }

    /// Throws unless `leaseOwner` (when set) holds the macro's lease, inside a transaction.
    static func checkLease(_ c: PostgresConnection, macro: String, owner: String?) async throws {
        guard let owner else { return }
        var held = false
        for try await _ in try await c.query(PostgresJournal.query("SELECT 1 FROM leases WHERE macro = $1 AND owner = $2 FOR SHARE") {
            $0.append(macro); $0.append(owner)
        }, logger: PostgresLink.logger).decode(Int.self) { held = true }
        if !held { throw EventError("macro \(macro): this runner's lease was lost to another runner") }
    }

    public func begin(macro: String, seq: Int64, version: String) throws -> Int {
        let owner = leaseOwner
        return try transaction("cannot record the start of event \(seq) in \(macro)") { c in
            try await PostgresJournal.checkLease(c, macro: macro, owner: owner)
            var attempts = 1
            for try await a in try await c.query(PostgresJournal.query("""
                INSERT INTO records(macro, seq, status, version, error, attempts, updated) VALUES ($1, $2, 'running', $3, NULL, 1, \(PostgresJournal.now))
                ON CONFLICT(macro, seq) DO UPDATE SET status = 'running', version = excluded.version, attempts = records.attempts + 1,
                  updated = excluded.updated
                RETURNING attempts
                """) { $0.append(macro); $0.append(seq); $0.append(version) }, logger: PostgresLink.logger).decode(Int32.self) { attempts = Int(a) }
            return attempts
        }
    }

    public func finish(macro: String, outcome: MacroRecord?, skipped: [Int64], version: String, cursor: Int64) throws {
        let owner = leaseOwner
        try transaction("cannot record events of \(macro)") { c in
            let log = PostgresLink.logger
            try await PostgresJournal.checkLease(c, macro: macro, owner: owner)
            if !skipped.isEmpty {
                try await c.query(PostgresJournal.query("""
                    INSERT INTO records(macro, seq, status, version, error, attempts, updated)
                    SELECT $1, s, 'skipped', $3, NULL, 0, \(PostgresJournal.now) FROM unnest($2::bigint[]) AS u(s)
                    ON CONFLICT(macro, seq) DO UPDATE SET status = 'skipped', updated = excluded.updated
                    """) { $0.append(macro); $0.append(skipped); $0.append(version) }, logger: log)
            }
            if let r = outcome {
                try await c.query(PostgresJournal.query("""
                    INSERT INTO records(macro, seq, status, version, error, attempts, updated) VALUES ($1, $2, $3, $4, $5, $6, \(PostgresJournal.now))
                    ON CONFLICT(macro, seq) DO UPDATE SET status = excluded.status, version = excluded.version, error = excluded.error,
                      updated = excluded.updated
                    """) { b in
                        b.append(macro); b.append(r.seq); b.append(r.status.rawValue); b.append(r.version); b.append(r.error); b.append(Int32(r.attempts))
                    }, logger: log)
            }
            try await c.query(PostgresJournal.query("""
                INSERT INTO cursors(macro, seq, version, updated) VALUES ($1, $2, $3, \(PostgresJournal.now))
                ON CONFLICT(macro) DO UPDATE SET seq = GREATEST(cursors.seq, excluded.seq), version = excluded.version, updated = excluded.updated
                """) { $0.append(macro); $0.append(cursor); $0.append(version) }, logger: log)
        }
    }

    public func records(of macro: String) throws -> [MacroRecord] {
        try run("cannot read the records of \(macro)") { c in
            var out: [MacroRecord] = []
            for try await (seq, status, version, error, attempts) in try await c.query(PostgresJournal.query(
                "SELECT seq, status, version, error, attempts FROM records WHERE macro = $1 ORDER BY seq") { $0.append(macro) },
                logger: PostgresLink.logger).decode((Int64, String, String, String?, Int32).self) {
                out.append(MacroRecord(macro: macro, seq: seq, status: RecordStatus(rawValue: status) ?? .failed, version: version,
                                       error: error, attempts: Int(attempts)))
            }
            return out
        }
    }

    public func publish(_ s: MacroStatus) throws {
        let owner = leaseOwner
        try run("cannot write the status of \(s.macro)") { c in
            try await c.query(PostgresJournal.query("""
                INSERT INTO macros(macro, path, version, pending, failures, total_failures, disabled, message, heartbeat, runner)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                ON CONFLICT(macro) DO UPDATE SET path = excluded.path, version = excluded.version, pending = excluded.pending,
                  failures = excluded.failures, total_failures = excluded.total_failures, disabled = excluded.disabled,
                  message = excluded.message, heartbeat = excluded.heartbeat, runner = excluded.runner
                """) { b in
                    b.append(s.macro); b.append(s.path); b.append(s.version); b.append(s.pendingVersion); b.append(Int32(s.failures))
                    b.append(Int32(s.totalFailures)); b.append(Int32(s.disabled ? 1 : 0)); b.append(s.message); b.append(s.heartbeat); b.append(owner)
                }, logger: PostgresLink.logger)
        }
    }

    public func statuses() throws -> [MacroStatus] {
        try run("cannot read macro statuses") { c in
            var out: [MacroStatus] = []
            let rows = try await c.query("""
                SELECT m.macro, m.path, m.version, m.pending, m.failures, m.total_failures, m.disabled, m.message, m.heartbeat,
                  COALESCE(c.seq, 0) FROM macros m LEFT JOIN cursors c ON c.macro = m.macro ORDER BY m.macro
                """, logger: PostgresLink.logger)
            for try await (macro, path, version, pending, failures, total, disabled, message, heartbeat, cursor) in rows.decode(
                (String, String, String, String?, Int32, Int32, Int32, String?, Double, Int64).self) {
                out.append(MacroStatus(macro: macro, path: path, version: version, pendingVersion: pending, cursor: cursor,
                                       failures: Int(failures), totalFailures: Int(total), disabled: disabled != 0, message: message,
                                       heartbeat: heartbeat))
            }
            return out
        }
    }

    // MARK: MacroLeases

    public func registerRunner(_ owner: String, seconds: Double) throws -> Int {
        try transaction("cannot register the runner") { c in
            let log = PostgresLink.logger
            try await c.query(PostgresJournal.query("""
                INSERT INTO runners(owner, expires) VALUES ($1, \(PostgresJournal.now) + $2)
                ON CONFLICT(owner) DO UPDATE SET expires = excluded.expires
                """) { $0.append(owner); $0.append(seconds) }, logger: log)
            try await c.query(PostgresJournal.query("DELETE FROM runners WHERE expires < \(PostgresJournal.now) - 60"), logger: log)
            var live = 1
            for try await n in try await c.query(PostgresJournal.query("SELECT COUNT(*) FROM runners WHERE expires >= \(PostgresJournal.now)"), logger: log)
                .decode(Int64.self) { live = Int(n) }
            return max(1, live)
        }
    }

    public func unregisterRunner(_ owner: String) throws {
        try run("cannot unregister the runner") { c in
            try await c.query(PostgresJournal.query("DELETE FROM leases WHERE owner = $1") { $0.append(owner) }, logger: PostgresLink.logger)
            try await c.query(PostgresJournal.query("DELETE FROM runners WHERE owner = $1") { $0.append(owner) }, logger: PostgresLink.logger)
        }
    }

    public func takeLease(_ macro: String, owner: String, seconds: Double) throws -> Bool {
        try one("cannot take the lease of \(macro)", """
            INSERT INTO leases(macro, owner, expires) VALUES ($1, $2, \(PostgresJournal.now) + $3)
            ON CONFLICT(macro) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
            WHERE leases.owner = excluded.owner OR leases.expires < \(PostgresJournal.now)
            RETURNING 1
            """, Int32.self) { $0.append(macro); $0.append(owner); $0.append(seconds) } != nil
    }

    public func renewLeases(owner: String, seconds: Double) throws -> Set<String> {
        try run("cannot renew leases") { c in
            var held = Set<String>()
            for try await m in try await c.query(PostgresJournal.query(
                "UPDATE leases SET expires = \(PostgresJournal.now) + $2 WHERE owner = $1 RETURNING macro") {
                    $0.append(owner); $0.append(seconds)
                }, logger: PostgresLink.logger).decode(String.self) { held.insert(m) }
            return held
        }
    }

    public func releaseLease(_ macro: String, owner: String) throws {
        try run("cannot release the lease of \(macro)") { c in
            try await c.query(PostgresJournal.query("DELETE FROM leases WHERE macro = $1 AND owner = $2") {
                $0.append(macro); $0.append(owner)
            }, logger: PostgresLink.logger)
        }
    }

    /// Calls `wake` on each append anywhere (LISTEN on a connection of its own) until
    /// `stopped` says so; reconnects after a broken link. A wake-up only: the runner's
    /// workers poll slowly as well, since notifications are not kept.
    public func listen(wake: @escaping @Sendable () -> Void, stopped: @escaping @Sendable () -> Bool) -> JoinableThread {
        let pool = self.pool
        return JoinableThread(name: "nxlua.journal.listen") {
            while !stopped() {
                guard let c = try? pool.dedicatedConnection() else { Thread.sleep(forTimeInterval: 1); continue }
                _ = try? PostgresLink.blocking(cancelled: stopped) {
                    try await c.listen(on: PostgresJournal.channel) { notifications in
                        for try await _ in notifications { wake() }
                    }
                }
                _ = try? PostgresLink.blocking { try await c.close() }
                wake()
            }
        }
    }

    public func close() { pool.close() }
}

/// Several runners sharing a journal: each macro runs where its lease is held.
public protocol MacroLeases: AnyObject {
    var leaseOwner: String? { get set }
    /// Announces a live runner for `seconds`; returns how many runners are alive.
    func registerRunner(_ owner: String, seconds: Double) throws -> Int
    /// The runner leaves: its leases are free at once.
    func unregisterRunner(_ owner: String) throws
    /// Takes the macro's lease if it is free, expired or already `owner`'s.
    func takeLease(_ macro: String, owner: String, seconds: Double) throws -> Bool
    /// Extends `owner`'s leases; returns the macros it still holds.
    func renewLeases(owner: String, seconds: Double) throws -> Set<String>
    func releaseLease(_ macro: String, owner: String) throws
}
