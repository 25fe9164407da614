import Foundation

/// Where sources put events. The embedded journal (SQLiteJournal) is one sink; a bridge
/// to a facility message bus (Kafka, Redis streams) would be another, fed from the
/// journal by a forwarder with its own durable cursor (docs/macros.md, "At scale").
public protocol EventSink: AnyObject {
    /// Appends a batch durably in one commit, in order. Returns each event's sequence
    /// number, or nil for an event whose idempotency key was journaled already.
    @discardableResult
    func append(_ events: [NewEvent]) throws -> [Int64?]
}

/// A journal that can be read back in order.
public protocol EventJournal: EventSink {
    /// Up to `limit` events with sequence numbers above `seq`, in order.
    func events(after seq: Int64, limit: Int) throws -> [Event]
    /// The highest sequence number so far (0: empty).
    func lastSeq() throws -> Int64
}

/// What happened to one event in one macro.
public enum RecordStatus: String, Sendable, CaseIterable {
    /// The handler was started and has not finished: found so after a crash, it is run again.
    case running
    case done
    case failed
    /// No handler of this macro wanted the event (or the macro was disabled).
    case skipped
}

/// One macro's record of one event.
public struct MacroRecord: Sendable, Equatable {
    public var macro: String
    public var seq: Int64
    public var status: RecordStatus
    public var version: String
    public var error: String?
    /// How many times a handler was started on this event (2 or more: a crash hit mid-handler).
    public var attempts: Int
    public init(macro: String, seq: Int64, status: RecordStatus, version: String, error: String?, attempts: Int) {
        self.macro = macro
        self.seq = seq
        self.status = status
        self.version = version
        self.error = error
        self.attempts = attempts
    }
}

/// The state of one macro as the runner last published it (`nxlua macros status`).
public struct MacroStatus: Sendable, Equatable {
    public var macro: String
    public var path: String
    /// Content hash of the version running.
    public var version: String
    /// A newer version compiled and waiting for the next run.start.
    public var pendingVersion: String?
    public var cursor: Int64
    /// Consecutive failures, and all failures since the runner started it.
    public var failures: Int
    public var totalFailures: Int
    public var disabled: Bool
    /// The last problem worth showing (a load error, why it was disabled).
    public var message: String?
    /// When the runner last touched this row (seconds since 1970).
    public var heartbeat: Double
    public init(macro: String, path: String, version: String, pendingVersion: String?, cursor: Int64, failures: Int,
                totalFailures: Int, disabled: Bool, message: String?, heartbeat: Double) {
        self.macro = macro
        self.path = path
        self.version = version
        self.pendingVersion = pendingVersion
        self.cursor = cursor
        self.failures = failures
        self.totalFailures = totalFailures
        self.disabled = disabled
        self.message = message
        self.heartbeat = heartbeat
    }
}

/// The macros' durable side of the journal: cursors, records, status.
public protocol MacroLedger: AnyObject {
    /// The last sequence number the macro has finished with (nil: never started).
    func cursor(of macro: String) throws -> Int64?
    /// Marks a handler as started on `seq` (attempts + 1) and returns the attempt number.
    func begin(macro: String, seq: Int64, version: String) throws -> Int
    /// Records the outcome of `seq` and of the skipped events before it, and moves the
    /// cursor to `cursor`, in one commit.
    func finish(macro: String, outcome: MacroRecord?, skipped: [Int64], version: String, cursor: Int64) throws
    func records(of macro: String) throws -> [MacroRecord]
    func publish(_ status: MacroStatus) throws
    func statuses() throws -> [MacroStatus]
}

/// How big a journal is (`nxlua macros status`).
public struct JournalSize: Sendable, Equatable {
    public var events: Int64
    public var bytes: Int64
    /// Time of the oldest event kept (nil: empty).
    public var oldest: Double?
}

/// A journal with its ledger, on either engine (SQLiteJournal, PostgresJournal): what the
/// stacker, the commands, the server and the macro runner use.
public protocol JournalStore: EventJournal, MacroLedger, Sendable {
    /// Where it is, for messages (a file, or a URL without its password).
    var location: String { get }
    /// Several runners may share this journal (leases), rather than one per journal.
    var sharedByRunners: Bool { get }
    func setCursor(of macro: String, to seq: Int64) throws
    func lastRun(writing file: String) throws -> (run: String, stopped: Bool)?
    func announcedFrames(run: String, stream: String) throws -> [Range<Int>]
    func lastRunStart() throws -> (seq: Int64, stopped: Bool)?
    /// Removes events older than `olderThan` seconds that every macro's cursor has passed,
    /// keeping run.start and run.stop, with the records of removed events that say
    /// skipped or done (failures stay). Returns how many events went.
    func prune(olderThan seconds: Double) throws -> Int
    func size() throws -> JournalSize
}

public enum Journals {
    /// A postgres:// URL or a SQLite file. `durable`: false for bookkeeping that can be
    /// rebuilt (SQLite: synchronous=NORMAL; PostgreSQL: synchronous_commit=off).
    public static func open(_ location: String, durable: Bool = true) throws -> any JournalStore {
        if PostgresJournal.isURL(location) { return try PostgresJournal(url: location, durable: durable) }
        return try SQLiteJournal(path: location, durable: durable)
    }
}
