import Events
import NeXus
import Stacker
#if canImport(Glibc)
import Glibc
#endif

/// Set by SIGINT/SIGTERM: the stacker finishes the frames in flight, commits and stops,
/// so that rerunning the same command resumes.
nonisolated(unsafe) private var stopRequested: sig_atomic_t = 0

/// `nxlua stack`: detector frames into a NeXus file (docs/stacking.md).
enum StackCommand {
    static let specs: [SubcommandOptions.Spec] = [
        .init(name: "out", valueName: "FILE.nxs", help: "the NeXus file to write, or to resume (required)"),
        .init(name: "watch", valueName: "DIR", help: "follow this folder while the detector writes into it"),
        .init(name: "pattern", valueName: "GLOB", help: "only names matching this shell pattern (default *.cbf, *.tif, *.tiff)"),
        .init(name: "entry", valueName: "NAME", help: "the NXentry's name (default entry)"),
        .init(name: "compression", valueName: "NAME", help: "bslz4 (default), lz4, gzip[:level], blosc[:level], lzf or none"),
        .init(name: "frames", valueName: "N", help: "expected frame count: stop once all are in; the rest are recorded missing"),
        .init(name: "first", valueName: "N", help: "the frame number stored first (default: lowest listed; watching: 0 or 1)"),
        .init(name: "fill", valueName: "V", help: "pixel value of missing and bad frames (default -1)"),
        .init(name: "workers", valueName: "N", help: "decode/compress threads (default: one per core)"),
        .init(name: "poll", valueName: nil, help: "watch by rescanning, not inotify (NFS, GPFS: no events from other hosts)"),
        .init(name: "poll-interval", valueName: "S", help: "seconds between rescans with --poll (default 0.2)"),
        .init(name: "end-marker", valueName: "NAME", help: "stop once a file of this name appears in the folder"),
        .init(name: "idle", valueName: "S", help: "stop after this many seconds without a new frame"),
        .init(name: "settle", valueName: "S", help: "retry an undecodable file while younger than this (default 5)"),
        .init(name: "flush-every", valueName: "N", help: "commit at least every N frames (default 32; an idle stacker commits at once)"),
        .init(name: "no-sync", valueName: nil, help: "do not wait for the disk at each commit: faster, but a power cut or OS crash (not a killed stacker) can lose frames marked stored"),
        .init(name: "quiet", valueName: nil, help: "no progress bar"),
        .init(name: "journal", valueName: "FILE", help: "announce the run's events in this journal, for macros (docs/macros.md)"),
        .init(name: "run", valueName: "UID", help: "the run uid of the events (default: a new one; a resumed stack keeps its own)"),
        .init(name: "scan-id", valueName: "N", help: "scan id in run.start"),
        .init(name: "plan", valueName: "NAME", help: "plan or macro name in run.start"),
        .init(name: "help", valueName: nil, help: "show this help"),
    ]

    static var usage: String {
        """
        usage: nxlua stack FILES... --out FILE.nxs [options]
               nxlua stack --watch DIR --out FILE.nxs [options]
        Stacks detector frames (CBF, TIFF) into a NeXus file, numbered by the last number in
        their names. Rerun the same command after an interruption or a crash: it resumes where
        it stopped, with no frame lost or duplicated. The file is written in SWMR mode and can
        be read while it grows. Exit status: 0 every frame stored; 2 finished with bad or
        missing frames (recorded in /entry/stacking); 130 interrupted (resumable); 1 error.
        Options:
        \(SubcommandOptions.helpLines(specs))
        See docs/stacking.md.
        """
    }

    static func options(_ a: SubcommandOptions) throws -> StackOptions {
        guard let out = a.string("out") else { throw SubcommandOptions.UsageError(message: "--out FILE.nxs is required") }
        let watch = a.string("watch")
        if a.positional.isEmpty && watch == nil { throw SubcommandOptions.UsageError(message: "give frame files or --watch DIR") }
        if !a.positional.isEmpty && watch != nil {
            throw SubcommandOptions.UsageError(message: "give frame files or --watch DIR, not both")
        }
        var o = StackOptions(source: watch.map { .watch($0) } ?? .files(a.positional), output: out)
        o.pattern = a.string("pattern")
        if let e = a.string("entry") { o.entry = e }
        let c = a.string("compression") ?? "bslz4"
        o.compression = c.lowercased() == "none" ? nil : try NXCompression(parsing: c)
        o.frames = try a.int("frames", atLeast: 1)
        o.firstNumber = try a.int("first", atLeast: 0)
        if let f = a.string("fill") {
            guard let v = Double(f) else { throw SubcommandOptions.UsageError(message: "--fill takes a number, not '\(f)'") }
            o.fillValue = v
        }
        if let w = try a.int("workers", atLeast: 1) { o.workers = w }
        o.poll = a.flag("poll")
        if let p = try a.number("poll-interval", atLeast: 0.001) { o.pollInterval = p }
        o.endMarker = a.string("end-marker")
        o.idleTimeout = try a.number("idle", atLeast: 0)
        if let s = try a.number("settle", atLeast: 0) { o.settleTime = s }
        if let n = try a.int("flush-every", atLeast: 1) { o.commitFrames = n }
        o.durable = !a.flag("no-sync")
        o.progress = !a.flag("quiet")
        o.program = "nxlua stack (\(versionLine()))"
        o.shouldStop = { stopRequested != 0 }
        return o
    }

    /// Runs with the arguments after "stack"; returns the exit status.
    static func run(_ arguments: [String]) -> Int32 {
        SubcommandOptions.run("stack", specs: specs, usage: usage, arguments: arguments) { a in
            var stackOptions = try options(a)
            var emitter: StackEventEmitter? = nil
            if let path = a.string("journal") {
                let e = StackEventEmitter(journal: try SQLiteJournal(path: path), run: a.string("run"), log: stackOptions.log)
                e.expectedFrames = stackOptions.frames
                if let id = a.string("scan-id") { e.runFields["scan_id"] = EventValue(parsingText: id) }
                if let p = a.string("plan") { e.runFields["plan"] = .string(p) }
                stackOptions.observer = e
                emitter = e
            }
            defer { emitter?.close() }
            signal(SIGINT) { _ in stopRequested = 1 }
            signal(SIGTERM) { _ in stopRequested = 1 }
            do {
                let summary = try Stacker(options: stackOptions).run()
                print(describe(summary))
                if summary.stopReason == "interrupted" { return 130 }
                return summary.bad > 0 || !summary.missing.isEmpty ? 2 : 0
            } catch {
                emitter?.runFailed("\(error)", file: stackOptions.output)
                throw error
            }
        }
    }

    static func describe(_ s: StackSummary) -> String {
        let shape = s.frameShape.map(String.init).joined(separator: "x")
        var text = "\(s.output):\(s.dataset): \(s.frameCount) frames of \(shape)"
        text += "; this run stored \(s.stored) in \(String(format1: s.seconds)) s (\(Int(s.framesPerSecond.rounded())) frames/s)"
        if s.resumed { text += ", \(s.storedBefore) were stored before" }
        if s.bad > 0 { text += "; \(s.bad) bad" }
        if !s.missing.isEmpty {
            let shown = s.missing.prefix(10).map(String.init).joined(separator: ", ")
            text += "; \(s.missing.count) missing (indices \(shown)\(s.missing.count > 10 ? ", ..." : ""))"
        }
        if !s.stopReason.isEmpty { text += "; stopped: \(s.stopReason)" }
        return text
    }
}

enum FileHandleOutput {
    static func error(_ s: String) {
        var bytes = Array(s.utf8)
        _ = write(2, &bytes, bytes.count)
    }
}

extension String {
    /// One decimal ("3.2").
    init(format1 x: Double) {
        let tenths = Int((x * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}
