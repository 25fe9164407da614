import ArgumentParser
import NeXus
import Stacker
#if canImport(Glibc)
import Glibc
#endif

/// Set by SIGINT/SIGTERM: the stacker finishes the frames in flight, commits and stops,
/// so that rerunning the same command resumes.
nonisolated(unsafe) private var stopRequested: sig_atomic_t = 0

/// `nxlua stack`: detector frames into a NeXus file (docs/stacking.md).
struct StackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nxlua stack",
        abstract: "Stack detector frames (CBF, TIFF) into a NeXus file, from files or from a folder the detector writes into.",
        discussion: """
        Rerun the same command after an interruption or a crash: it resumes where it stopped, with
        no frame lost or duplicated. The output is written in SWMR mode and readable while it grows.
        Exit status: 0 every frame stored; 2 finished with bad or missing frames (recorded in
        /entry/stacking); 130 interrupted (resumable); 1 error. See docs/stacking.md.
        """)

    @Argument(help: "Frame files (numbered by the last number in their names).")
    var files: [String] = []

    @Option(name: .long, help: ArgumentHelp("Follow this folder while the detector writes into it.", valueName: "dir"))
    var watch: String?

    @Option(name: .long, help: ArgumentHelp("Only files matching this shell pattern (watch mode; default *.cbf, *.tif, *.tiff).", valueName: "glob"))
    var pattern: String?

    @Option(name: .long, help: ArgumentHelp("The NeXus file to write (or to resume).", valueName: "file.nxs"))
    var out: String

    @Option(name: .long, help: "The NXentry's name.")
    var entry = "entry"

    @Option(name: .long, help: ArgumentHelp("bslz4, lz4, gzip[:level], blosc[:level], lzf or none.", valueName: "name"))
    var compression = "bslz4"

    @Option(name: .long, help: ArgumentHelp("Expected frame count: stop once all are in; record the rest as missing.", valueName: "n"))
    var frames: Int?

    @Option(name: .long, help: ArgumentHelp("The frame number stored first (default: the lowest listed; watch mode: 0 or 1).", valueName: "n"))
    var first: Int?

    @Option(name: .long, help: "The pixel value of missing and bad frames.")
    var fill: Double = -1

    @Option(name: .long, help: "Decode/compress threads (default: one per core).")
    var workers: Int?

    @Flag(name: .long, help: "Watch by rescanning instead of inotify (NFS, GPFS: no events from other hosts).")
    var poll = false

    @Option(name: .customLong("poll-interval"), help: ArgumentHelp("Seconds between rescans with --poll.", valueName: "s"))
    var pollInterval = 0.2

    @Option(name: .customLong("end-marker"), help: ArgumentHelp("Stop once a file of this name appears in the folder.", valueName: "name"))
    var endMarker: String?

    @Option(name: .long, help: ArgumentHelp("Stop after this many seconds without a new frame.", valueName: "s"))
    var idle: Double?

    @Option(name: .long, help: ArgumentHelp("Retry an undecodable file while it is younger than this (still being written).", valueName: "s"))
    var settle = 5.0

    @Option(name: .customLong("flush-every"), help: ArgumentHelp("Commit at least every n frames (an idle stacker commits at once).", valueName: "n"))
    var flushEvery = 32

    @Flag(name: .long, help: "No progress bar.")
    var quiet = false

    func validate() throws {
        if files.isEmpty && watch == nil { throw ValidationError("give frame files or --watch DIR") }
        if !files.isEmpty && watch != nil { throw ValidationError("give frame files or --watch DIR, not both") }
        if let frames, frames < 1 { throw ValidationError("--frames must be at least 1") }
        if let workers, workers < 1 { throw ValidationError("--workers must be at least 1") }
        if flushEvery < 1 { throw ValidationError("--flush-every must be at least 1") }
    }

    func options() throws -> StackOptions {
        var o = StackOptions(source: watch.map { .watch($0) } ?? .files(files), output: out)
        o.pattern = pattern
        o.entry = entry
        o.compression = compression.lowercased() == "none" ? nil : try NXCompression(parsing: compression)
        o.frames = frames
        o.firstNumber = first
        o.fillValue = fill
        if let workers { o.workers = workers }
        o.poll = poll
        o.pollInterval = pollInterval
        o.endMarker = endMarker
        o.idleTimeout = idle
        o.settleTime = settle
        o.commitFrames = flushEvery
        o.progress = !quiet
        o.program = "nxlua stack (\(versionLine()))"
        o.shouldStop = { stopRequested != 0 }
        return o
    }

    /// Runs with the arguments after "stack"; returns the exit status.
    static func run(_ arguments: [String]) -> Int32 {
        let command: StackCommand
        do {
            command = try StackCommand.parse(arguments)
        } catch {
            let status = StackCommand.exitCode(for: error).rawValue
            let text = StackCommand.fullMessage(for: error)
            if status == 0 { print(text) } else { FileHandleOutput.error(text + "\n") }
            return status
        }
        signal(SIGINT) { _ in stopRequested = 1 }
        signal(SIGTERM) { _ in stopRequested = 1 }
        do {
            let summary = try Stacker(options: try command.options()).run()
            print(describe(summary))
            if summary.stopReason == "interrupted" { return 130 }
            return summary.bad > 0 || !summary.missing.isEmpty ? 2 : 0
        } catch {
            FileHandleOutput.error("nxlua stack: \(error)\n")
            return 1
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
