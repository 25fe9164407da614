import CProcessShims
import Events
import Foundation
import Macros
import NXLuaRuntime
#if canImport(Glibc)
import Glibc
#endif

/// The journal the event commands use: --journal, else $NXLUA_JOURNAL, else
/// ./nxlua-journal.sqlite.
func journalPath(_ a: SubcommandOptions) -> String {
    if let j = a.string("journal") { return j }
    if let e = getenv("NXLUA_JOURNAL"), e.pointee != 0 { return String(cString: e) }
    return "nxlua-journal.sqlite"
}

let journalSpec = SubcommandOptions.Spec(name: "journal", valueName: "FILE|URL",
                                         help: "the event journal: a SQLite file or postgres://USER[:PASSWORD]@HOST[:PORT]/DB (default $NXLUA_JOURNAL, else ./nxlua-journal.sqlite)")

/// "30d", "12h", "90m", "45s" or plain seconds.
func parseDuration(_ text: String, option: String) throws -> Double {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604_800]
    var number = Substring(text), factor = 1.0
    if let u = text.last, let f = units[u] { number = text.dropLast(); factor = f }
    guard let v = Double(number), v >= 0, v.isFinite else {
        throw SubcommandOptions.UsageError(message: "--\(option): '\(text)' is not a duration (examples: 30d, 12h, 90m, 45s)")
    }
    return v * factor
}

/// `nxlua trigger KIND --run UID [key=value ...]`: a control system sends an event.
enum TriggerCommand {
    static let specs: [SubcommandOptions.Spec] = [
        .init(name: "run", valueName: "UID", help: "the run's uid (run.start without it makes one and prints it)"),
        .init(name: "file", valueName: "F", help: "the NeXus file concerned (the event's `file` field)"),
        .init(name: "key", valueName: "K", help: "idempotency key: an event with a key already journaled is not added again"),
        journalSpec,
        .init(name: "help", valueName: nil, help: "show this help"),
    ]

    static var usage: String {
        """
        usage: nxlua trigger KIND [--run UID] [--file F] [--journal FILE] [key=value ...]
        Appends one event to the journal, durably, and prints its sequence number (and the
        run uid). KIND is run.start, stream.open, frames.ready, point, file.closed or run.stop.
        Values are typed: integers, numbers, true/false, null, JSON lists and objects;
        anything else is text. Example (a SPEC macro's unix() call):
          nxlua trigger point --run $RUN motor=12.5 counts=1042
        Options:
        \(SubcommandOptions.helpLines(specs))
        See docs/macros.md.
        """
    }

    static func run(_ arguments: [String]) -> Int32 {
        SubcommandOptions.run("trigger", specs: specs, usage: usage, arguments: arguments) { a in
            guard let kindName = a.positional.first else { throw SubcommandOptions.UsageError(message: "give the event kind") }
            let kind = try EventKind(parsing: kindName)
            var payload: [String: EventValue] = [:]
            for item in a.positional.dropFirst() {
                guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
                    throw SubcommandOptions.UsageError(message: "'\(item)' is not key=value")
                }
                payload[String(item[..<eq])] = EventValue(parsingText: String(item[item.index(after: eq)...]))
            }
            if let f = a.string("file") { payload["file"] = .string(f) }
            payload = EventPaths.resolvingFile(payload)   // macros run in other folders
            let run: String
            if let r = a.string("run") { run = r } else if kind == .runStart { run = makeRunUID() } else {
                throw SubcommandOptions.UsageError(message: "--run UID is required for \(kind.rawValue)")
            }
            let journal = try Journals.open(journalPath(a))
            let seqs = try journal.append([NewEvent(kind: kind, run: run, payload: payload, key: a.string("key"), source: "trigger")])
            if let seq = seqs.first ?? nil { print("\(seq) \(run)") } else { print("already journaled (key \(a.string("key") ?? "")) \(run)") }
            return 0
        }
    }
}

nonisolated(unsafe) private var macrosStopRequested: sig_atomic_t = 0

/// `nxlua macros DIR` and `nxlua macros status`.
enum MacrosCommand {
    static let specs: [SubcommandOptions.Spec] = [
        journalSpec,
        .init(name: "time-limit", valueName: "S", help: "seconds a handler (or a file's top level) may run (default 30)"),
        .init(name: "instructions", valueName: "N", help: "Lua instructions a handler may run (default: no limit)"),
        .init(name: "memory", valueName: "MIB", help: "memory of each macro's Lua state, MiB (default 2048)"),
        .init(name: "max-failures", valueName: "K", help: "consecutive failures that disable a macro until it is edited (default 5)"),
        .init(name: "reload-interval", valueName: "S", help: "seconds between looks at the folder (default 0.5)"),
        .init(name: "poll", valueName: "S", help: "seconds between looks at the journal once caught up (default 0.01)"),
        .init(name: "reload-now", valueName: nil, help: "an edited macro takes over at once, not at the next run.start"),
        .init(name: "from-start", valueName: nil, help: "new macros start at the journal's first event (default: the run in progress)"),
        .init(name: "catalog", valueName: "DB", help: "register files written by macro.write_process in this catalog, as derived data of the event's file (docs/catalog.md)"),
        .init(name: "lease", valueName: "S", help: "PostgreSQL: seconds a runner's lease on a macro lasts unrenewed; another runner takes over after (default 5)"),
        .init(name: "until-idle", valueName: nil, help: "exit once every macro has caught up with the journal"),
        .init(name: "keep", valueName: "AGE", help: "prune the journal every 10 minutes: events older than AGE (30d, 12h) that every macro has passed"),
        CPUPriority.spec,
        .init(name: "help", valueName: nil, help: "show this help"),
    ]

    static var usage: String {
        """
        usage: nxlua macros DIR [--journal FILE|URL] [options]
               nxlua macros status [--journal FILE|URL]
        Runs each DIR/*.lua in its own Lua state on its own thread, delivering the journal's
        events to the handlers it registers with on(kind, key, fn). Each macro keeps a durable
        cursor (at-least-once, in order) and a record per event (done, failed, skipped).
        Edited files are reloaded (polling: works on NFS); a broken edit keeps the last good
        version. Stop with Ctrl-C or SIGTERM (the handlers in progress finish). On a
        PostgreSQL journal several runners (on several hosts) share the macros: each macro
        runs in one runner at a time, under a lease another runner takes over when its
        runner dies.
        Options:
        \(SubcommandOptions.helpLines(specs))
        See docs/macros.md.
        """
    }

    static func run(_ given: [String]) -> Int32 {
        // the batch process a runner starts for its heavy macros (MacroRunner.moveHeavyMacros):
        // batch RUNNER-PID, then the runner's own arguments
        var arguments = given
        var batchOf: Int32?
        if arguments.count > 2, arguments[0] == "batch", let runner = Int32(arguments[1]) {
            batchOf = runner
            arguments.removeFirst(2)
        }
        return SubcommandOptions.run("macros", specs: specs, usage: usage, arguments: arguments) { a in
            if a.positional.first == "status" {
                guard a.positional.count == 1 else { throw SubcommandOptions.UsageError(message: "status takes no arguments") }
                print(try MacroStatusReport.text(journalPath: journalPath(a)))
                return 0
            }
            guard a.positional.count == 1 else { throw SubcommandOptions.UsageError(message: "give one folder of macros") }
            var o = MacroRunnerOptions(directory: a.positional[0], journalPath: journalPath(a))
            if let s = try a.number("time-limit", atLeast: 0.001) { o.limits.seconds = s }
            if let n = try a.int("instructions", atLeast: 1000) { o.limits.instructions = n }
            if let m = try a.int("memory", atLeast: 1) { o.limits.memory = m << 20 }
            if let k = try a.int("max-failures", atLeast: 1) { o.maxFailures = k }
            if let r = try a.number("reload-interval", atLeast: 0.01) { o.reloadInterval = r }
            if let p = try a.number("poll", atLeast: 0.001) { o.pollInterval = p }
            if let l = try a.number("lease", atLeast: 0.5) { o.leaseSeconds = l }
            o.reloadNow = a.flag("reload-now")
            o.fromStart = a.flag("from-start")
            let keep = try a.string("keep").map { try parseDuration($0, option: "keep") }
            if let runner = batchOf {
                // 5 steps below the runner (every thread, and the session this process
                // leads), the kernel's default slice: batch work; killed with the runner
                let nice = min(19, nx_current_nice() + 5)
                guard nx_worker_start(runner, nice, nice) == 0 else { return 1 }
                _ = nx_forgo_raising_priority()
                let members = BatchMembers()
                members.startReading()
                o.batchMembers = members
            } else {
                try CPUPriority.apply(a)
                o.batchCommand = (Runtime.executablePath() ?? CommandLine.arguments[0],
                                  ["macros", "batch", String(getpid())] + batchArguments(arguments))
            }
            let runner = try MacroRunner(options: o)
            if let location = a.string("catalog") { try registerDerivedData(in: location, log: o.log) }
            signal(SIGINT) { _ in macrosStopRequested = 1 }
            signal(SIGTERM) { _ in macrosStopRequested = 1 }
            if batchOf == nil { o.log("macros: running \(o.directory) on \(runner.journal.location)") }
            var lastPrune = 0.0
            runner.run(until: {
                if let keep, Date().timeIntervalSince1970 - lastPrune > 600 {
                    lastPrune = Date().timeIntervalSince1970
                    do {
                        let n = try runner.journal.prune(olderThan: keep)
                        if n > 0 { o.log("macros: pruned \(n) events") }
                    } catch { o.log("macros: \(error)") }
                }
                return macrosStopRequested != 0
            }, untilIdle: batchOf == nil && a.flag("until-idle"))
            o.batchMembers?.stop()
            if batchOf == nil { o.log("macros: stopped") }
            return 0
        }
    }

    /// The runner's arguments for a batch process: the same folder, journal and limits;
    /// not --until-idle (the runner decides when its macros are done) nor --keep (the
    /// runner prunes).
    static func batchArguments(_ arguments: [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < arguments.count {
            let arg = arguments[i]
            if arg == "--until-idle" || arg.hasPrefix("--keep=") { i += 1; continue }
            if arg == "--keep" { i += 2; continue }
            out.append(arg)
            i += 1
        }
        return out
    }
}

/// `nxlua replay FILE.nxs...`: existing files' events, so macros run again on old data:
/// appended to a journal for a running runner, or (--macros DIR) run at once over a
/// private journal, exiting when the macros are done.
enum ReplayCommand {
    static let specs: [SubcommandOptions.Spec] = [
        journalSpec,
        .init(name: "macros", valueName: "DIR", help: "run the macros of DIR over the replayed events in a private journal, print a summary and exit (status 1 if a handler failed)"),
        .init(name: "run", valueName: "UID", help: "the run uid of the replayed events (default: a new one per file)"),
        .init(name: "entry", valueName: "NAME", help: "the NXentry (default entry)"),
        .init(name: "chunk", valueName: "N", help: "frames per frames.ready event (default 32)"),
        .init(name: "time-limit", valueName: "S", help: "with --macros: seconds a handler may run (default 30)"),
        .init(name: "help", valueName: nil, help: "show this help"),
    ]

    static var usage: String {
        """
        usage: nxlua replay FILE.nxs... [--journal FILE|URL] [--run UID] [--chunk N]
               nxlua replay FILE.nxs... --macros DIR
        Appends the events the stacker would have produced for each FILE.nxs (run.start,
        stream.open, frames.ready for its stored frames with their per-frame values,
        file.closed, run.stop), so that `nxlua macros` runs its macros on old data.
        Prints each run uid. With --macros DIR, runs the macros of DIR over these events in
        a private journal instead, and exits when they are done with a summary (events,
        done, failed); the status is 1 if any handler failed.
        Options:
        \(SubcommandOptions.helpLines(specs))
        See docs/macros.md.
        """
    }

    static func run(_ arguments: [String]) -> Int32 {
        SubcommandOptions.run("replay", specs: specs, usage: usage, arguments: arguments) { a in
            guard !a.positional.isEmpty else { throw SubcommandOptions.UsageError(message: "give one or more NeXus files") }
            if a.positional.count > 1, a.string("run") != nil {
                throw SubcommandOptions.UsageError(message: "--run names one run: give one file with it")
            }
            var events: [NewEvent] = []
            for file in a.positional {
                var o = StackReplay.Options(path: EventPaths.absolute(file))  // macros run in other folders
                o.run = a.string("run")
                if let e = a.string("entry") { o.entry = e }
                if let c = try a.int("chunk", atLeast: 1) { o.chunk = c }
                events += try StackReplay.events(o)
            }
            if let dir = a.string("macros") {
                if a.string("journal") != nil { throw SubcommandOptions.UsageError(message: "--macros runs on a private journal: leave out --journal") }
                return try runMacros(dir, events: events, timeLimit: try a.number("time-limit", atLeast: 0.001))
            }
            let journal = try Journals.open(journalPath(a))
            let seqs = try journal.append(events)
            var index = 0
            for file in a.positional {
                // each file's events are contiguous, from its run.start on
                let run = events[index].run
                var end = index
                while end < events.count && events[end].run == run { end += 1 }
                let added = seqs[index..<end].compactMap { $0 }
                print("\(run) \(added.count) events (seq \(added.first ?? 0)-\(added.last ?? 0)) \(file)")
                index = end
            }
            return 0
        }
    }

    static func runMacros(_ dir: String, events: [NewEvent], timeLimit: Double?) throws -> Int32 {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nxlua-replay-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/journal.sqlite"
        let journal = try SQLiteJournal(path: path, durable: false)
        try journal.append(events)
        var o = MacroRunnerOptions(directory: dir, journalPath: path)
        o.fromStart = true
        if let t = timeLimit { o.limits.seconds = t }
        let runner = try MacroRunner(options: o)
        signal(SIGINT) { _ in macrosStopRequested = 1 }
        signal(SIGTERM) { _ in macrosStopRequested = 1 }
        let macros = runner.run(until: { macrosStopRequested != 0 }, untilIdle: true)
        var done = 0, failed = 0, skipped = 0
        for s in try journal.statuses() {
            for r in try journal.records(of: s.macro) {
                switch r.status {
                case .done: done += 1
                case .failed: failed += 1
                case .skipped: skipped += 1
                case .running: failed += 1
                }
            }
        }
        let disabled = try journal.statuses().filter { $0.disabled || $0.version.isEmpty }.map(\.macro)
        var line = "replay: \(events.count) events, \(macros) macros: \(done) done, \(failed) failed, \(skipped) skipped"
        if macrosStopRequested != 0 { line += " (interrupted)" }
        print(line)
        for m in disabled { print("replay: macro \(m) did not run to the end (disabled or not loaded; see the messages above)") }
        return failed > 0 || !disabled.isEmpty || macrosStopRequested != 0 ? 1 : 0
    }
}

/// `nxlua journal prune --keep AGE`: the journal stops growing.
enum JournalCommand {
    static let specs: [SubcommandOptions.Spec] = [
        journalSpec,
        .init(name: "keep", valueName: "AGE", help: "keep events younger than AGE (30d, 12h, 90m, 45s); required"),
        .init(name: "help", valueName: nil, help: "show this help"),
    ]

    static var usage: String {
        """
        usage: nxlua journal prune --keep AGE [--journal FILE|URL]
        Removes the events older than AGE that every macro's cursor has passed, except each
        run's run.start and run.stop, with the done and skipped records of the removed
        events (failures stay). Prints how many events were removed and what is left.
        Options:
        \(SubcommandOptions.helpLines(specs))
        See docs/macros.md.
        """
    }

    static func run(_ arguments: [String]) -> Int32 {
        SubcommandOptions.run("journal", specs: specs, usage: usage, arguments: arguments) { a in
            guard a.positional == ["prune"] else { throw SubcommandOptions.UsageError(message: "the only journal command is prune") }
            guard let keepText = a.string("keep") else { throw SubcommandOptions.UsageError(message: "give --keep AGE (for example 30d)") }
            let keep = try parseDuration(keepText, option: "keep")
            let location = journalPath(a)
            if !PostgresJournal.isURL(location) && !FileManager.default.fileExists(atPath: location) {
                throw EventError("\(location): no such journal")
            }
            let journal = try Journals.open(location)
            let removed = try journal.prune(olderThan: keep)
            let size = try journal.size()
            print("\(journal.location): removed \(removed) events; \(size.events) kept")
            return 0
        }
    }
}
