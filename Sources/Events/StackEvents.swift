import Detector
import Foundation
import Stacker

/// Turns the stacker's progress into events: run.start on the first frame, stream.open,
/// frames.ready after each flush (where the frames now are, with their header values),
/// then file.closed and run.stop. Events go through a JournalWriter, so the stacker never
/// waits for the journal. Each event has an idempotency key; a resumed stack continues
/// its run (same uid) and announces the stored frames the journal lacks, which is what a
/// crash between the file's commit and the journal's can leave (at-least-once).
public final class StackEventEmitter: StackObserver, @unchecked Sendable {
    let writer: JournalWriter
    let journal: any JournalStore
    /// Fields of run.start: scan_id, plan, metadata (given on the command line).
    public var runFields: [String: EventValue] = [:]
    public var expectedFrames: Int?
    public let stream = "detector"
    public private(set) var run: String
    var started = false
    var dtype = "?"

    public init(journal: any JournalStore, run: String? = nil, log: @escaping (String) -> Void) {
        self.journal = journal
        self.writer = JournalWriter(sink: journal, log: log)
        self.run = run ?? makeRunUID()
    }

    /// Keys name the run and the file: one run uid given to two stacks (--run) keeps both.
    func event(_ kind: EventKind, _ payload: [String: EventValue], key: String?) -> NewEvent {
        NewEvent(kind: kind, run: run, payload: payload, key: key.map { "\(run)|\(file)|\($0)" }, source: "stack")
    }

    var file = ""

    public func runStarted(file: String, dataset: String, frameShape: [Int], resumed: Bool) {
        let file = EventPaths.absolute(file)   // macros run in other folders
        self.file = file
        var startKey = "run.start"
        if resumed, let previous = try? journal.lastRun(writing: file) {
            run = previous.run
            // a run that stopped (interrupted) and resumes starts again, once per resumption;
            // one whose stacker died (kill -9, a crash, a power cut) goes on in the same run,
            // and says so with a stream.open marked resumed (handlers keep their state: no
            // second run.start)
            if !previous.stopped {
                started = true
                let stamp = Int(Date().timeIntervalSince1970 * 1000)
                writer.submit([event(.streamOpen, ["stream": .string(stream), "file": .string(file), "resumed": .bool(true),
                                                   "after": .string("the stacker of this run ended without stopping (killed or crashed)")],
                                     key: "stream.open/\(stream)/resumed-\(stamp)")])
                return
            }
            startKey = "run.start/resumed-\(Int(Date().timeIntervalSince1970 * 1000))"
        }
        started = true
        var start = runFields
        start["file"] = .string(file)
        start["dataset"] = .string(dataset)
        start["entry"] = .string(dataset.split(separator: "/").first.map(String.init) ?? "entry")
        start["expected_frames"] = expectedFrames.map { .int($0) } ?? .null
        start["resumed"] = .bool(resumed)
        start["frame_shape"] = .array(frameShape.map { .int($0) })
        let open: [String: EventValue] = [
            "stream": .string(stream),
            "file": .string(file),
            "fields": .array([.object([
                "name": .string("data"), "path": .string(dataset),
                "shape": .array(frameShape.map { .int($0) }), "units": .string("counts"),
            ])]),
        ]
        writer.submit([event(.runStart, start, key: startKey),
                       event(.streamOpen, open, key: "stream.open/\(stream)" + (startKey == "run.start" ? "" : "/" + startKey))])
    }

    public func runResumed(storedRanges: [Range<Int>], file: String, dataset: String) {
        let announced = (try? journal.announcedFrames(run: run, stream: stream)) ?? []
        var covered = Set<Int>()
        for r in announced { covered.formUnion(r) }
        var missing: [NewEvent] = []
        for r in storedRanges {
            var lo: Int? = nil
            for i in r {
                if covered.contains(i) {
                    if let l = lo { missing.append(ready(l..<i, file: file, dataset: dataset, frames: [], recovered: true)); lo = nil }
                } else if lo == nil { lo = i }
            }
            if let l = lo { missing.append(ready(l..<r.upperBound, file: file, dataset: dataset, frames: [], recovered: true)) }
        }
        writer.submit(missing)
    }

    public func framesFlushed(_ range: Range<Int>, file: String, dataset: String) {
        framesFlushed(range, file: file, dataset: dataset, frames: [])
    }

    public func framesFlushed(_ range: Range<Int>, file: String, dataset: String, frames: [FlushedFrame]) {
        writer.submit([ready(range, file: file, dataset: dataset, frames: frames, recovered: false)])
    }

    func ready(_ range: Range<Int>, file: String, dataset: String, frames: [FlushedFrame], recovered: Bool) -> NewEvent {
        var payload: [String: EventValue] = [
            "stream": .string(stream), "first": .int(range.lowerBound), "stop": .int(range.upperBound),
            "count": .int(range.count), "file": .string(EventPaths.absolute(file)), "dataset": .string(dataset),
            "slice": .string("\(range.lowerBound):\(range.upperBound)"),
        ]
        if recovered { payload["recovered"] = .bool(true) }
        // per-frame values: one list per header key, aligned with the range
        if !frames.isEmpty {
            var keys = Set<String>()
            for f in frames { keys.formUnion(f.values.keys) }
            var values: [String: EventValue] = [:]
            for k in keys {
                values[k] = .array(frames.map { f in
                    switch f.values[k] {
                    case .integer(let v)?: return .int(v)
                    case .number(let v)?: return .double(v)
                    case .numbers(let v)?: return .array(v.map { .double($0) })
                    case .text(let t)?: return .string(t)
                    case nil: return .null
                    }
                })
            }
            payload["values"] = .object(values)
            payload["sources"] = .array(frames.map { .string($0.sourceName) })
        }
        return event(.framesReady, payload, key: "frames/\(stream)/\(range.lowerBound)-\(range.upperBound)")
    }

    public func runStopped(_ summary: StackSummary) {
        guard started else { return }
        let status = summary.stopReason == "interrupted" ? "abort" : "success"
        stop(status: status, file: summary.output, frames: summary.frameCount,
             extra: ["stored": .int(summary.stored + summary.storedBefore), "bad": .int(summary.bad),
                     "missing": .int(summary.missing.count), "reason": .string(summary.stopReason)])
    }

    /// The run failed (the stacker threw): run.stop with status "fail".
    public func runFailed(_ message: String, file: String) {
        guard started else { return }
        stop(status: "fail", file: file, frames: nil, extra: ["error": .string(message)])
    }

    func stop(status: String, file given: String, frames: Int?, extra: [String: EventValue]) {
        let file = EventPaths.absolute(given)
        let stamp = Int(Date().timeIntervalSince1970 * 1000)
        var payload = extra
        payload["status"] = .string(status)
        payload["frames"] = frames.map { .int($0) } ?? .null
        payload["file"] = .string(file)
        writer.submit([event(.fileClosed, ["file": .string(file)], key: "file.closed/\(stamp)"),
                       event(.runStop, payload, key: "run.stop/\(stamp)")])
    }

    /// Waits for everything to be journaled (at the end of the run).
    public func close() { writer.close() }

    /// The event settings of a stacking run (beside `StackOptions.settings`).
    public static let settings: [StackSetting] = [
        .init("journal", "FILE", "announce the run's events in this journal, for macros (docs/macros.md)"),
        .init("run", "UID", "the run uid of the events (default: a new one; a resumed stack keeps its own)"),
        .init("scan-id", "N", "scan id in run.start"),
        .init("plan", "NAME", "plan or macro name in run.start"),
    ]

    /// The emitter the settings ask for (nil without a journal), observing `options`'s run.
    public static func make(_ v: StackSettingValues, for options: inout StackOptions) throws -> StackEventEmitter? {
        guard let path = try v.string("journal") else { return nil }
        let e = StackEventEmitter(journal: try Journals.open(path), run: try v.string("run"), log: options.log)
        e.expectedFrames = options.frames
        if let id = try v.string("scan-id") { e.runFields["scan_id"] = EventValue(parsingText: id) }
        if let p = try v.string("plan") { e.runFields["plan"] = .string(p) }
        if let run = try v.string("run") { try e.takeRunStart(run, into: &options) }
        options.observer = e
        return e
    }

    /// The run.start a trigger journaled for this run before the stacker began (`nxlua
    /// trigger run.start --run UID sample=LaB6 temperature=300K`): its sample and dotted
    /// values become the stack's metadata (NXsample, NXinstrument, NXuser), under --meta.
    /// The journal is read from its start (events after the last are not waited for).
    func takeRunStart(_ run: String, into options: inout StackOptions) throws {
        var after: Int64 = 0
        var found: Event?
        while true {
            let page = try journal.events(after: after, limit: 5000)
            guard let last = page.last else { break }
            if let e = page.last(where: { $0.kind == .runStart && $0.run == run && $0.source != "stack" }) { found = e }
            after = last.seq
        }
        guard let start = found else { return }
        for (key, value) in start.payload.sorted(by: { $0.key < $1.key }) {
            switch value {
            case .int(let i): options.additions.metadata.add(runStartKey: key, integer: i)
            case .double(let d): options.additions.metadata.add(runStartKey: key, number: d)
            case .string(let t): options.additions.metadata.add(runStartKey: key, text: t)
            case .bool(let b): options.additions.metadata.add(runStartKey: key, boolean: b)
            default: break
            }
        }
    }
}
