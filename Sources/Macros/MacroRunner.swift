import Events
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct MacroRunnerOptions: Sendable {
    public var directory: String
    public var journalPath: String
    public var limits = MacroLimits()
    /// Consecutive failures that disable a macro until its file changes.
    public var maxFailures = 5
    /// Seconds between two looks at the journal when a worker has caught up (nil: 0.01 s
    /// on SQLite; 1 s on PostgreSQL, where appends also wake the workers through NOTIFY).
    public var pollInterval: Double?
    /// Seconds a runner's lease on a macro lasts unrenewed (PostgreSQL): another runner
    /// takes the macro over this long after its runner died.
    public var leaseSeconds = 5.0
    /// Seconds between two looks at the macros folder (polling: works on NFS).
    public var reloadInterval = 0.5
    /// A changed macro replaces the running version at once, not at the next run.start.
    public var reloadNow = false
    /// New macros start at the beginning of the journal (default: the run in progress).
    public var fromStart = false
    /// How to start the runner's batch process (`nxlua macros batch RUNNER-PID ...`), where
    /// heavy macros run (see MacroRunner.moveHeavyMacros): the executable and its
    /// arguments. nil keeps heavy macros in the runner, 5 nice steps below the light ones.
    public var batchCommand: (executable: String, arguments: [String])?
    /// This runner is a batch process: it runs only the macros its runner handed over,
    /// takes no runner lock (its runner holds it), and stops when its stdin ends.
    public var batchMembers: BatchMembers?
    public var log: @Sendable (String) -> Void = { message in
        var line = Array((message + "\n").utf8)
        _ = write(2, &line, line.count)
    }
    public init(directory: String, journalPath: String) {
        self.directory = directory
        self.journalPath = journalPath
    }
}

/// Wakes the workers waiting for new events (a NOTIFY from PostgreSQL); they poll too.
final class JournalWakeup: @unchecked Sendable {
    private let condition = NSCondition()
    private var generation = 0

    var current: Int { condition.lock(); defer { condition.unlock() }; return generation }

    func signal() {
        condition.lock()
        generation += 1
        condition.broadcast()
        condition.unlock()
    }

    /// Waits up to `seconds` unless a wake-up came after `seen` was read.
    func wait(since seen: Int, seconds: Double) {
        let deadline = Date(timeIntervalSinceNow: seconds)
        condition.lock()
        while generation == seen {
            if !condition.wait(until: deadline) { break }
        }
        condition.unlock()
    }
}

/// `nxlua macros DIR`: one MacroWorker per `*.lua` file of the folder; the folder is
/// polled for new, changed and removed files. On SQLite, one runner per journal (a lock
/// file). On PostgreSQL, several runners (on several hosts) share the journal: each macro
/// runs where its lease is held, and each runner takes about its share of the macros.
public final class MacroRunner {
    let options: MacroRunnerOptions
    public let journal: any JournalStore
    /// Leases when several runners share the journal (nil: this runner runs every macro).
    let leases: MacroLeases?
    /// This runner's name in the leases: host, process and a random part.
    let owner: String
    let wakeup = JournalWakeup()
    var workers: [String: MacroWorker] = [:]
    /// Workers asked to stop (hand-over, lost lease), finishing their handler in progress
    /// while the runner keeps renewing the other leases; their lease is released after.
    var leaving: [String: MacroWorker] = [:]
    /// The heavy macros' journal writes, at the runner's priority (while run() runs).
    var priorityWrites: PriorityWrites?
    /// The latest text of each macro file of the folder, leased here or not.
    var sources: [String: MacroSource] = [:]
    /// What was last seen of each file (modification time, size, inode), to read only changes.
    var seen: [String: (mtime: Int, size: Int, inode: UInt, hash: String)] = [:]
    var lockFD: Int32 = -1
    /// The batch process and the macros handed over to it.
    var batch: BatchProcess?
    var inBatch: Set<String> = []
    /// Macros that stay here (below the light ones): their batch process ended abnormally.
    var keptHere: Set<String> = []
    var listener: JoinableThread?
    let stopping = StopFlag()

    final class StopFlag: @unchecked Sendable {
        private let lock = NSLock()
        private var since: Double?
        func set() { lock.lock(); if since == nil { since = Date().timeIntervalSince1970 }; lock.unlock() }
        var isSet: Bool { lock.lock(); defer { lock.unlock() }; return since != nil }
        /// Waits on the server are abandoned only when a stop has waited this long (a
        /// handler's last commit normally completes, so its event is not run again).
        func overdue(_ seconds: Double) -> Bool {
            lock.lock(); defer { lock.unlock() }
            return since.map { Date().timeIntervalSince1970 - $0 > seconds } ?? false
        }
    }

    public init(options given: MacroRunnerOptions) throws {
        var options = given
        // macro paths are absolute in the journal: `nxlua macros status`, run from any
        // folder, tells a removed macro by its file being gone
        if !options.directory.hasPrefix("/") {
            options.directory = FileManager.default.currentDirectoryPath + "/" + options.directory
        }
        var st = stat()
        guard stat(options.directory, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw EventError("\(options.directory): not a folder of macros")
        }
        let journal = try Journals.open(options.journalPath, durable: false)
        self.journal = journal
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        let hostName = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        owner = "\(hostName):\(getpid()):\(UInt32.random(in: 0...UInt32.max))"
        let shared = journal.sharedByRunners ? journal as? MacroLeases : nil
        leases = shared
        if let l = shared {
            l.leaseOwner = owner
            if options.pollInterval == nil { options.pollInterval = 1 }
        } else if options.pollInterval == nil {
            options.pollInterval = 0.01
        }
        if shared == nil, options.batchMembers == nil {
            let lockPath = options.journalPath + ".macros.lock"
            lockFD = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard lockFD >= 0 else { throw EventError("\(lockPath): cannot create the runner's lock file") }
            if flock(lockFD, LOCK_EX | LOCK_NB) != 0 {
                close(lockFD)
                throw EventError("\(options.journalPath): another `nxlua macros` runs on this journal (\(lockPath) is locked)")
            }
        }
        self.options = options
        if let pg = journal as? PostgresJournal {
            let flag = stopping
            pg.cancelled = { flag.overdue(10) }
            let wakeup = self.wakeup
            listener = pg.listen(wake: { wakeup.signal() }, stopped: { flag.isSet })
        }
    }

    deinit { if lockFD >= 0 { close(lockFD) } }

    /// Runs until `shouldStop` says so; then stops the workers after their handler in progress.
    public func run(shouldStop: () -> Bool) {
        run(until: shouldStop)
    }

    /// Runs until `shouldStop` says so, or (`untilIdle`) until every macro has caught up
    /// with the journal; returns the number of macros that were running.
    @discardableResult
    public func run(until shouldStop: () -> Bool, untilIdle: Bool = false) -> Int {
        var lastScan = 0.0, lastBalance = 0.0, membersSeen = -1
        let renewEvery = min(1, options.leaseSeconds / 4)
        let writes = PriorityWrites()  // started here, at the runner's priority
        priorityWrites = writes
        while !shouldStop() {
            let now = Date().timeIntervalSince1970
            if now - lastScan >= options.reloadInterval {
                lastScan = now
                scan()
            }
            if leases != nil, now - lastBalance >= renewEvery {
                lastBalance = now
                balance()
            }
            moveHeavyMacros()
            reapBatch()
            if untilIdle, !workers.isEmpty || !inBatch.isEmpty, idle() { break }
            if let members = options.batchMembers {
                if members.closed { break }  // the runner stopped or died
                if members.generation != membersSeen { membersSeen = members.generation; lastScan = 0; continue }
            }
            usleep(20_000)
        }
        let count = workers.count + inBatch.count
        stopping.set()
        wakeup.signal()
        // every handler in progress finishes at once (not one after the other); stop()
        // returns once a worker's thread has ended with its Lua states closed, and the
        // batch process ends after its handlers in progress
        batch?.requestStop()
        for w in workers.values { w.requestStop() }
        for w in workers.values { w.stop() }
        for w in leaving.values { w.stop() }
        if let b = batch {
            let status = b.wait()
            if !BatchProcess.endedCleanly(status) { options.log("macros: the batch process \(b.pid) \(BatchProcess.describe(status))") }
        }
        batch = nil
        inBatch.removeAll()
        workers.removeAll()
        leaving.removeAll()
        writes.stop()  // every worker has stopped: nothing more is handed over
        priorityWrites = nil
        if let leases { try? leases.unregisterRunner(owner) }
        listener?.join()
        listener = nil
        return count
    }

    /// Every loaded macro has passed the journal's last event (or is disabled, or not loaded).
    func idle() -> Bool {
        guard let last = try? journal.lastSeq() else { return false }
        guard workers.values.allSatisfy({ $0.caughtUp(with: last) }) else { return false }
        if inBatch.isEmpty { return true }
        // the batch process's progress is in the journal (its macros' cursors and states)
        guard let rows = try? journal.statuses() else { return false }
        return inBatch.allSatisfy { name in
            rows.first { $0.macro == name }.map { $0.cursor >= last || $0.disabled || $0.version.isEmpty } ?? false
        }
    }

    /// Heavy macros go to the batch process: one that says `macro.heavy()` before its
    /// first event, one whose handlers proved heavy at its next run.start (a macro keeps
    /// state in its Lua state during a run; a new version takes over at run.start for the
    /// same reason). Each continues there from its cursor. In the runner's session their
    /// threads kept the session busy, and a light handler woke behind them: in the live
    /// scenario the latency probe ran 63-67 ms (median) and 252-308 ms (p99) after the
    /// commit of its frame, 11-12 and 77-95 ms with the heavy macros in the batch process.
    func moveHeavyMacros() {
        for (name, w) in workers where w.movesOut && w.hasFinished {
            w.stop()
            workers[name] = nil
            do {
                // the handover is a line: a name with a line break in it stays here
                guard !name.contains("\n") else { throw EventError("its file name has a line break") }
                if batch == nil, let command = options.batchCommand {
                    let b = try BatchProcess(command.executable, command.arguments)
                    batch = b
                    options.log("macros: batch process \(b.pid) started (heavy macros, below the light ones)")
                }
                guard let b = batch, b.run(name) else { throw EventError("the batch process is gone") }
                inBatch.insert(name)
                options.log("macro \(name): runs in the batch process \(b.pid) from now on")
            } catch {
                options.log("macro \(name): \(error); it stays here")
                keptHere.insert(name)
                if let s = sources[name] { startWorker(s) }
            }
        }
    }

    /// A batch process that ended by itself failed (the runner stops it only when it
    /// stops): its macros run here again from their cursors, below the light ones.
    func reapBatch() {
        guard let b = batch, let status = b.poll() else { return }
        batch = nil
        options.log("macros: the batch process \(b.pid) \(BatchProcess.describe(status)); its macros run here again")
        for name in inBatch.sorted() {
            guard let s = sources[name], FileManager.default.fileExists(atPath: s.path) else { continue }
            keptHere.insert(name)
            startWorker(s, continuing: true)
        }
        inBatch.removeAll()
    }

    /// Looks at the folder: starts workers for new files (SQLite: all of them; PostgreSQL:
    /// balance() starts the leased ones), hands changed texts over, stops the workers of
    /// removed files (their cursors stay in the journal).
    func scan() {
        let dir = options.directory
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
            options.log("macros: cannot list \(dir)")
            return
        }
        var present = Set<String>()
        for file in names.sorted() where file.hasSuffix(".lua") && !file.hasPrefix(".") {
            let name = String(file.dropLast(4))
            if let members = options.batchMembers, !members.contains(name) { continue }
            let path = dir.hasSuffix("/") ? dir + file : dir + "/" + file
            var st = stat()
            guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            present.insert(name)
            let mtime = Int(st.st_mtim.tv_sec) * 1_000_000_000 + Int(st.st_mtim.tv_nsec)
            if let s = seen[name], s.mtime == mtime, s.size == Int(st.st_size), s.inode == UInt(st.st_ino) { continue }
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            let source = MacroSource(name: name, path: path, text: String(decoding: data, as: UTF8.self))
            let unchanged = seen[name]?.hash == source.hash
            seen[name] = (mtime, Int(st.st_size), UInt(st.st_ino), source.hash)
            if unchanged { continue }
            sources[name] = source
            if let w = workers[name] {
                options.log("macro \(name): \(file) changed (version \(source.shortHash))")
                w.reload(source)
            } else if leases == nil && !inBatch.contains(name) {  // the batch process reloads by itself
                startWorker(source)
            }
        }
        for name in Array(sources.keys) where !present.contains(name) {
            sources[name] = nil
            seen[name] = nil
            keptHere.remove(name)
            inBatch.remove(name)  // the batch process sees the file gone too
            guard let w = workers[name] else { continue }
            options.log("macro \(name): file removed; stopped (its cursor is kept)")
            w.stop()
            workers[name] = nil
            if let leases { try? leases.releaseLease(name, owner: owner) }
        }
    }

    /// `continuing`: the macro ran in the batch process until now (the batch process's
    /// own workers always continue from the runner).
    func startWorker(_ source: MacroSource, continuing: Bool = false) {
        // heavy macros move out only where this runner runs every macro (SQLite); with
        // leases (PostgreSQL, several runners) they stay, below the light ones
        let placement: MacroWorker.HeavyPlacement = options.batchMembers != nil ? .alone
            : (leases == nil && options.batchCommand != nil && !keptHere.contains(source.name)) ? .batchProcess : .lowerPriority
        let w = MacroWorker(source: source, journal: journal, options: options, wakeup: wakeup, priorityWrites: priorityWrites,
                            heavy: placement, continuing: continuing || placement == .alone, log: options.log)
        workers[source.name] = w
        w.start()
    }

    /// Several runners: renews this runner's leases, stops the macros whose lease was
    /// lost, gives up macros beyond its share (another runner joined) and takes free or
    /// expired leases up to its share (a runner left or died).
    func balance() {
        guard let leases else { return }
        let held: Set<String>
        let runners: Int
        do {
            runners = try leases.registerRunner(owner, seconds: options.leaseSeconds)
            held = try leases.renewLeases(owner: owner, seconds: options.leaseSeconds)
        } catch {
            options.log("macros: \(error)")
            return
        }
        for (name, w) in leaving where w.hasFinished {
            w.stop()
            leaving[name] = nil
            try? leases.releaseLease(name, owner: owner)
        }
        for (name, w) in workers where !held.contains(name) {
            options.log("macro \(name): lease lost (this runner stalled past it); stopped here")
            w.requestStop()
            workers[name] = nil
            leaving[name] = w
        }
        let share = (sources.count + runners - 1) / runners
        if workers.count > share {
            for name in workers.keys.sorted().prefix(workers.count - share) {
                let w = workers[name]!
                w.requestStop()
                workers[name] = nil
                leaving[name] = w
                options.log("macro \(name): handed over after its handler in progress (\(runners) runners share \(sources.count) macros)")
            }
        }
        for name in sources.keys.shuffled() where workers.count < share && workers[name] == nil && leaving[name] == nil {
            do {
                guard try leases.takeLease(name, owner: owner, seconds: options.leaseSeconds) else { continue }
            } catch {
                options.log("macros: \(error)")
                return
            }
            options.log("macro \(name): runs here (runner \(owner))")
            startWorker(sources[name]!)
        }
    }
}

/// `nxlua macros status`: one line per macro.
public enum MacroStatusReport {
    public static func text(journalPath: String, now: Double = Date().timeIntervalSince1970) throws -> String {
        if !PostgresJournal.isURL(journalPath) && !FileManager.default.fileExists(atPath: journalPath) {
            throw EventError("\(journalPath): no such journal")
        }
        let journal = try Journals.open(journalPath, durable: false)
        let last = try journal.lastSeq()
        let rows = try journal.statuses()
        let size = try journal.size()
        var summary = "\(journal.location): \(last) events, \(size.events) kept (\(byteText(size.bytes)))"
        if let oldest = size.oldest { summary += ", oldest \(timeText(oldest)) (\(ageText(now - oldest)) ago)" }
        if rows.isEmpty { return summary + "; no macro has run on this journal" }
        var lines = [summary]
        let header = ["macro", "version", "cursor", "lag", "failures", "state", "seen"]
        var table = [header]
        // A macro whose file is gone was removed: the runner stopped it, and its old
        // failures and messages no longer apply. It stays listed because its cursor stays
        // in the journal: a new file of that name continues from there.
        let removed = Set(rows.filter { !FileManager.default.fileExists(atPath: $0.path) }.map(\.macro))
        for s in rows {
            let gone = removed.contains(s.macro)
            let state = gone ? "removed" : s.disabled ? "DISABLED" : (s.version.isEmpty ? "not loaded" : (s.pendingVersion != nil ? "running (new version waits for run.start)" : "running"))
            let age = max(0, now - s.heartbeat)
            table.append([s.macro, s.version.isEmpty ? "-" : String(s.version.prefix(12)), "\(s.cursor)", gone ? "-" : "\(max(0, last - s.cursor))",
                          gone ? "-" : "\(s.failures) in a row, \(s.totalFailures) in all", state, age < 5 ? "now" : "\(Int(age)) s ago"])
        }
        let widths = header.indices.map { c in table.map { $0[c].count }.max() ?? 0 }
        for row in table {
            lines.append(row.enumerated().map { c, v in c == row.count - 1 ? v : v.padding(toLength: widths[c], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
        for s in rows {
            if removed.contains(s.macro) {
                lines.append("\(s.macro): removed (\(s.path) is gone); a new file of that name continues after event \(s.cursor)")
            } else if let m = s.message {
                lines.append("\(s.macro): \(m)")
            }
        }
        return lines.joined(separator: "\n")
    }

    static func byteText(_ n: Int64) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(n) bytes" : String(format: "%.1f", v) + " " + units[u]
    }

    static func timeText(_ t: Double) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
        return f.string(from: Date(timeIntervalSince1970: t))
    }

    static func ageText(_ s: Double) -> String {
        let s = max(0, s)
        if s < 120 { return "\(Int(s)) s" }
        if s < 7200 { return "\(Int(s / 60)) min" }
        if s < 172_800 { return "\(Int(s / 3600)) h" }
        return "\(Int(s / 86400)) days"
    }
}
