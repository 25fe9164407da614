import Catalog
import Events
import NativeLibraries
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
    /// The options: the stacking and event settings shared with `detector.stack{...}`.
    static let specs: [SubcommandOptions.Spec] = (StackOptions.settings + StackEventEmitter.settings).map {
        SubcommandOptions.Spec(name: $0.name, valueName: $0.valueName, help: $0.help)
    } + [CPUPriority.stackerSpec,
         .init(name: "catalog", valueName: "DB", help: "register the output in this catalog at the start (status running) and again at the end (frames, status) (docs/catalog.md)"),
         .init(name: "help", valueName: nil, help: "show this help")]

    static var usage: String {
        """
        usage: nxlua stack FILES... --out FILE.nxs [options]
               nxlua stack --watch DIR --out FILE.nxs [options]
        Stacks detector frames (CBF, TIFF, or HDF5: an Eiger master file, areaDetector files,
        FILE.h5:/path/to/data) into a NeXus file, numbered by the last number in their names
        (HDF5: in order). Rerun the same command after an interruption or a crash: it resumes where
        it stopped, with no frame lost or duplicated. The file is written in SWMR mode and can
        be read while it grows. Exit status: 0 every frame stored; 2 finished with bad or
        missing frames (recorded in /entry/stacking); 130 interrupted (resumable); 1 error.
        Options:
        \(SubcommandOptions.helpLines(specs))
        See docs/stacking.md.
        """
    }

    /// The command line as the settings' values (its errors show the usage).
    struct Values: StackSettingValues {
        let a: SubcommandOptions
        func string(_ name: String) throws -> String? { a.string(name) }
        func strings(_ name: String) throws -> [String] { a.strings(name) }
        func integer(_ name: String, atLeast low: Int) throws -> Int? { try a.int(name, atLeast: low) }
        func number(_ name: String, atLeast low: Double) throws -> Double? { try a.number(name, atLeast: low) }
        func flag(_ name: String) throws -> Bool { a.flag(name) }
    }

    /// Runs with the arguments after "stack"; returns the exit status.
    static func run(_ arguments: [String]) -> Int32 {
        SubcommandOptions.run("stack", specs: specs, usage: usage, arguments: arguments) { a in
            let workerPriority = try CPUPriority.applyToStacker(a)  // before the stacker starts its threads
            var stackOptions: StackOptions
            do { stackOptions = try StackOptions.make(files: a.positional, Values(a: a)) } catch let e as StackSettingError {
                throw SubcommandOptions.UsageError(message: e.message)
            }
            stackOptions.program = "nxlua stack (\(versionLine(NativeLibraries.stacking)))"
            stackOptions.shouldStop = { stopRequested != 0 }
            stackOptions.beforeWork = workerPriority
            let emitter = try StackEventEmitter.make(Values(a: a), for: &stackOptions)
            defer { emitter?.close() }
            let registrar = try a.string("catalog").map { try StackRegistrar(catalog: Catalog(location: $0), inner: stackOptions.observer, log: stackOptions.log) }
            if let registrar { stackOptions.observer = registrar }
            defer { registrar?.catalog.close() }
            signal(SIGINT) { _ in stopRequested = 1 }
            signal(SIGTERM) { _ in stopRequested = 1 }
            do {
                let summary = try Stacker(options: stackOptions).run()
                registrar?.finished(file: stackOptions.output, status: summary.stopReason == "interrupted" ? "interrupted" : "done")
                print(describe(summary))
                if summary.stopReason == "interrupted" { return 130 }
                return summary.bad > 0 || !summary.missing.isEmpty ? 2 : 0
            } catch {
                emitter?.runFailed("\(error)", file: stackOptions.output)
                registrar?.finished(file: stackOptions.output, status: "failed", error: "\(error)")
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

/// `nxlua stack --catalog DB`: the output is registered when the run starts (status
/// running, so a search finds a stack being written) and harvested again when it ends
/// (frames, bad frames, status done, interrupted or failed). Events go on to the journal's
/// emitter; a catalog failure is logged and never stops the stacking.
final class StackRegistrar: StackObserver {
    let catalog: Catalog
    let inner: StackObserver?
    let log: (String) -> Void
    var entry = "entry"

    init(catalog: Catalog, inner: StackObserver?, log: @escaping (String) -> Void) {
        self.catalog = catalog
        self.inner = inner
        self.log = log
    }

    func runStarted(file: String, dataset: String, frameShape: [Int], resumed: Bool) {
        inner?.runStarted(file: file, dataset: dataset, frameShape: frameShape, resumed: resumed)
        entry = dataset.split(separator: "/").first.map(String.init) ?? "entry"
        // not harvested now: this process holds the file open for writing
        do {
            try catalog.record(file, entry: entry, fields: [
                "kind": .text("stack"), "status": .text("running"), "signal_shape": .text((["0"] + frameShape.map(String.init)).joined(separator: "x")),
                "start_time": .time(NXTime.iso(Double(time(nil))), seconds: Double(time(nil))),
            ], harvest: false)
        } catch { log("catalog: \(error)") }
    }

    func runResumed(storedRanges: [Range<Int>], file: String, dataset: String) {
        inner?.runResumed(storedRanges: storedRanges, file: file, dataset: dataset)
    }

    func framesFlushed(_ range: Range<Int>, file: String, dataset: String) {
        inner?.framesFlushed(range, file: file, dataset: dataset)
    }

    func framesFlushed(_ range: Range<Int>, file: String, dataset: String, frames: [FlushedFrame]) {
        inner?.framesFlushed(range, file: file, dataset: dataset, frames: frames)
    }

    func runStopped(_ summary: StackSummary) { inner?.runStopped(summary) }

    /// Harvests the closed file with its final status.
    func finished(file: String, status: String, error: String? = nil) {
        var fields: [String: FieldValue] = ["kind": .text("stack"), "status": .text(status)]
        if let error { fields["error"] = .text(error) }
        do { try catalog.record(file, entry: entry, fields: fields) } catch { log("catalog: \(error)") }
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
