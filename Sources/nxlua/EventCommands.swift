import Events
import Macros
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

let journalSpec = SubcommandOptions.Spec(name: "journal", valueName: "FILE",
                                         help: "the event journal (default $NXLUA_JOURNAL, else ./nxlua-journal.sqlite)")

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
            let journal = try SQLiteJournal(path: journalPath(a))
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
        .init(name: "help", valueName: nil, help: "show this help"),
    ]

    static var usage: String {
        """
        usage: nxlua macros DIR [--journal FILE] [options]
               nxlua macros status [--journal FILE]
        Runs each DIR/*.lua in its own Lua state on its own thread, delivering the journal's
        events to the handlers it registers with on(kind, key, fn). Each macro keeps a durable
        cursor (at-least-once, in order) and a record per event (done, failed, skipped).
        Edited files are reloaded (polling: works on NFS); a broken edit keeps the last good
        version. Stop with Ctrl-C or SIGTERM (the handlers in progress finish).
        Options:
        \(SubcommandOptions.helpLines(specs))
        See docs/macros.md.
        """
    }

    static func run(_ arguments: [String]) -> Int32 {
        SubcommandOptions.run("macros", specs: specs, usage: usage, arguments: arguments) { a in
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
            o.reloadNow = a.flag("reload-now")
            o.fromStart = a.flag("from-start")
            let runner = try MacroRunner(options: o)
            if let location = a.string("catalog") { try registerDerivedData(in: location, log: o.log) }
            signal(SIGINT) { _ in macrosStopRequested = 1 }
            signal(SIGTERM) { _ in macrosStopRequested = 1 }
            o.log("macros: running \(o.directory) on \(o.journalPath)")
            runner.run { macrosStopRequested != 0 }
            o.log("macros: stopped")
            return 0
        }
    }
}

/// `nxlua replay FILE.nxs`: an existing file's events, so macros run again on old data.
enum ReplayCommand {
    static let specs: [SubcommandOptions.Spec] = [
        journalSpec,
        .init(name: "run", valueName: "UID", help: "the run uid of the replayed events (default: a new one)"),
        .init(name: "entry", valueName: "NAME", help: "the NXentry (default entry)"),
        .init(name: "chunk", valueName: "N", help: "frames per frames.ready event (default 32)"),
        .init(name: "help", valueName: nil, help: "show this help"),
    ]

    static var usage: String {
        """
        usage: nxlua replay FILE.nxs [--journal FILE] [--run UID] [--chunk N]
        Appends the events the stacker would have produced for FILE.nxs (run.start,
        stream.open, frames.ready for its stored frames with their per-frame values,
        file.closed, run.stop), so that `nxlua macros` runs its macros on old data.
        Prints the run uid.
        Options:
        \(SubcommandOptions.helpLines(specs))
        See docs/macros.md.
        """
    }

    static func run(_ arguments: [String]) -> Int32 {
        SubcommandOptions.run("replay", specs: specs, usage: usage, arguments: arguments) { a in
            guard a.positional.count == 1 else { throw SubcommandOptions.UsageError(message: "give one NeXus file") }
            var o = StackReplay.Options(path: EventPaths.absolute(a.positional[0]))  // macros run in other folders
            o.run = a.string("run")
            if let e = a.string("entry") { o.entry = e }
            if let c = try a.int("chunk", atLeast: 1) { o.chunk = c }
            let events = try StackReplay.events(o)
            let journal = try SQLiteJournal(path: journalPath(a))
            let seqs = try journal.append(events)
            let added = seqs.compactMap { $0 }
            print("\(events.first?.run ?? "") \(added.count) events (seq \(added.first ?? 0)-\(added.last ?? 0))")
            return 0
        }
    }
}
