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
    /// Seconds between two looks at the journal when a worker has caught up.
    public var pollInterval = 0.01
    /// Seconds between two looks at the macros folder (polling: works on NFS).
    public var reloadInterval = 0.5
    /// A changed macro replaces the running version at once, not at the next run.start.
    public var reloadNow = false
    /// New macros start at the beginning of the journal (default: the run in progress).
    public var fromStart = false
    public var log: @Sendable (String) -> Void = { message in
        var line = Array((message + "\n").utf8)
        _ = write(2, &line, line.count)
    }
    public init(directory: String, journalPath: String) {
        self.directory = directory
        self.journalPath = journalPath
    }
}

/// `nxlua macros DIR`: one MacroWorker per `*.lua` file of the folder; the folder is
/// polled for new, changed and removed files. One runner per journal (a lock file).
public final class MacroRunner {
    let options: MacroRunnerOptions
    let journal: SQLiteJournal
    var workers: [String: MacroWorker] = [:]
    /// What was last seen of each file (modification time, size, inode), to read only changes.
    var seen: [String: (mtime: Int, size: Int, inode: UInt, hash: String)] = [:]
    var lockFD: Int32 = -1

    public init(options given: MacroRunnerOptions) throws {
        var options = given
        // macro paths are absolute in the journal: `nxlua macros status`, run from any
        // folder, tells a removed macro by its file being gone
        if !options.directory.hasPrefix("/") {
            options.directory = FileManager.default.currentDirectoryPath + "/" + options.directory
        }
        self.options = options
        var st = stat()
        guard stat(options.directory, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw EventError("\(options.directory): not a folder of macros")
        }
        journal = try SQLiteJournal(path: options.journalPath, durable: false)
        let lockPath = options.journalPath + ".macros.lock"
        lockFD = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard lockFD >= 0 else { throw EventError("\(lockPath): cannot create the runner's lock file") }
        if flock(lockFD, LOCK_EX | LOCK_NB) != 0 {
            close(lockFD)
            throw EventError("\(options.journalPath): another `nxlua macros` runs on this journal (\(lockPath) is locked)")
        }
    }

    deinit { if lockFD >= 0 { close(lockFD) } }

    /// Runs until `shouldStop` says so; then stops the workers after their handler in progress.
    public func run(shouldStop: () -> Bool) {
        var lastScan = 0.0
        while !shouldStop() {
            let now = Date().timeIntervalSince1970
            if now - lastScan >= options.reloadInterval {
                lastScan = now
                scan()
            }
            usleep(20_000)
        }
        // every handler in progress finishes at once (not one after the other); stop()
        // returns once a worker's thread has ended with its Lua states closed
        for w in workers.values { w.requestStop() }
        for w in workers.values { w.stop() }
        workers.removeAll()
    }

    /// Looks at the folder: starts workers for new files, hands changed texts over,
    /// stops the workers of removed files (their cursors stay in the journal).
    func scan() {
        let dir = options.directory
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
            options.log("macros: cannot list \(dir)")
            return
        }
        var present = Set<String>()
        for file in names.sorted() where file.hasSuffix(".lua") && !file.hasPrefix(".") {
            let name = String(file.dropLast(4))
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
            if let w = workers[name] {
                options.log("macro \(name): \(file) changed (version \(source.shortHash))")
                w.reload(source)
            } else {
                let w = MacroWorker(source: source, journal: journal, options: options, log: options.log)
                workers[name] = w
                w.start()
            }
        }
        for (name, w) in workers where !present.contains(name) {
            options.log("macro \(name): file removed; stopped (its cursor is kept)")
            w.stop()
            workers[name] = nil
            seen[name] = nil
        }
    }
}

/// `nxlua macros status`: one line per macro.
public enum MacroStatusReport {
    public static func text(journalPath: String, now: Double = Date().timeIntervalSince1970) throws -> String {
        guard FileManager.default.fileExists(atPath: journalPath) else { throw EventError("\(journalPath): no such journal") }
        let journal = try SQLiteJournal(path: journalPath, durable: false)
        let last = try journal.lastSeq()
        let rows = try journal.statuses()
        if rows.isEmpty { return "\(journalPath): \(last) events; no macro has run on this journal" }
        var lines = ["\(journalPath): \(last) events"]
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
}
