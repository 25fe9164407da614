import Detector
import Dispatch
import NDArray
import NeXus
import TerminalProgress
#if canImport(Glibc)
import Glibc
#endif

/// What to stack and how (`nxlua stack`'s options; `detector.stack` in Lua).
public struct StackOptions: @unchecked Sendable {
    public enum Source: Sendable {
        /// These files, numbered by the numbers in their names.
        case files([String])
        /// A folder the detector writes into, followed until a stop condition.
        case watch(String)
        /// Frames made in memory (a simulation): `names` as the source files would be named
        /// (numbered as files are), `frame(number)` makes the frame of that number on a
        /// worker thread; an error it throws records the frame as bad.
        case generated(names: [String], frame: @Sendable (Int) throws -> Frame)
    }
    public var source: Source
    /// Only names matching this shell pattern (watch mode; default: *.cbf, *.tif, *.tiff).
    public var pattern: String?
    public var output: String
    public var entry = "entry"
    /// nil: stored uncompressed.
    public var compression: NXCompression? = .bitshuffleLZ4
    /// Expected frame count: stop once every frame is in (stored or bad); frames still
    /// missing at the end are recorded as missing up to this count.
    public var frames: Int?
    /// The frame number stored at index 0 (default: the lowest number of a file list; in
    /// watch mode 0 if the first file seen is numbered 0, else 1).
    public var firstNumber: Int?
    /// The value of every pixel of a missing or bad frame.
    public var fillValue: Double = -1
    public var workers = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    /// Watch by rescanning every `pollInterval` instead of inotify (NFS, GPFS).
    public var poll = false
    public var pollInterval = 0.2
    /// Stop once a file of this name appears in the watched folder.
    public var endMarker: String?
    /// Stop after this many seconds without a new frame.
    public var idleTimeout: Double?
    /// A file that does not decode is retried while younger than this (it may still be
    /// being written); older, it is recorded as bad.
    public var settleTime = 5.0
    /// Commit (flush) at least every this many frames, and at most this long after a
    /// frame was written (seconds); an idle pipeline commits at once.
    public var commitFrames = 32
    public var commitDelay = 0.05
    /// Each commit waits for the disk (fdatasync after each of its two flushes), so the
    /// frames marked stored survive a power cut or an OS crash, not only a killed stacker.
    public var durable = true
    public var progress = true
    /// Messages for the user (bad frames, resuming); default: stderr.
    public var log: @Sendable (String) -> Void = { message in
        var line = Array((message + "\n").utf8)
        _ = write(2, &line, line.count)
    }
    /// Polled between frames: true stops the run cleanly (it can be resumed).
    public var shouldStop: () -> Bool = { false }
    /// Run by a worker before it decodes and compresses a frame (the command line sets
    /// the worker thread's scheduling there: see CPUPriority.applyToStacker).
    public var beforeWork: @Sendable () -> Void = {}
    /// Told when frames are safely in the file (the events of DESIGN.md section 11).
    public var observer: StackObserver?
    /// Written as the file's @creator and /entry/program_name.
    public var program = "nxlua stack"
    /// Metadata from outside the frames (--meta, --meta-file), written when the stack is made.
    public var additions = StackAdditions()

    public init(source: Source, output: String) {
        self.source = source
        self.output = output
    }
}

/// Receives the stacker's progress as it happens; called on the stacking thread, so a
/// slow observer slows stacking: hand the events on (the macro journal does).
public protocol StackObserver: AnyObject {
    func runStarted(file: String, dataset: String, frameShape: [Int], resumed: Bool)
    /// Frames `range` (indices) are flushed to `file` and readable there.
    func framesFlushed(_ range: Range<Int>, file: String, dataset: String)
    func runStopped(_ summary: StackSummary)
    /// A resumed stack holds these frames already (called after runStarted): an observer
    /// that may have missed announcing some of them (a crash between the file's commit and
    /// its announcement) announces the difference.
    func runResumed(storedRanges: [Range<Int>], file: String, dataset: String)
    /// Frames `range` are flushed, with what each frame's header said (called instead of
    /// framesFlushed(_:file:dataset:) when implemented).
    func framesFlushed(_ range: Range<Int>, file: String, dataset: String, frames: [FlushedFrame])
}

extension StackObserver {
    public func runResumed(storedRanges: [Range<Int>], file: String, dataset: String) {}
    public func framesFlushed(_ range: Range<Int>, file: String, dataset: String, frames: [FlushedFrame]) {
        framesFlushed(range, file: file, dataset: dataset)
    }
}

/// One frame as committed: its index, the file it came from, its per-frame header values.
public struct FlushedFrame: Sendable {
    public let index: Int
    public let sourceName: String
    public let values: [String: HeaderValue]
    public let time: String?
}

extension Array where Element == FrameStatus {
    /// Index ranges of stored frames.
    var storedRanges: [Range<Int>] {
        var out: [Range<Int>] = []
        var start: Int? = nil
        for (i, s) in enumerated() {
            if s == .stored { if start == nil { start = i } } else if let lo = start { out.append(lo..<i); start = nil }
        }
        if let lo = start { out.append(lo..<count) }
        return out
    }
}

/// The outcome of a run.
public struct StackSummary: Sendable {
    public var output: String
    public var dataset: String
    public var resumed = false
    /// Frames stored by this run, and by earlier runs of a resumed stack.
    public var stored = 0
    public var storedBefore = 0
    /// Frames recorded bad by this run.
    public var bad = 0
    /// Indices still missing at the end (their data is the fill value).
    public var missing: [Int] = []
    public var frameCount = 0
    public var frameShape: [Int] = []
    public var seconds = 0.0
    public var bytesWritten = 0
    public var stopReason = ""
    public var framesPerSecond: Double { seconds > 0 ? Double(stored) / seconds : 0 }
}

/// Stacks detector frames into a NeXus file as they arrive: worker threads decode and
/// compress, the calling thread alone talks to HDF5 (H5Dwrite_chunk of the compressed
/// chunks, per-frame values, two-phase commits), so HDF5's global lock never holds up
/// the workers. Safe to kill at any instant: rerunning resumes (see StackFile).
public final class Stacker {
    let options: StackOptions

    public init(options: StackOptions) { self.options = options }

    enum Outcome {
        case ready(StackFile.Ready)
        case bad(StackFile.Bad)
        case retry(FrameFile)
    }

    /// Runs until the stop condition; throws only for failures of the run itself (the
    /// output cannot be written, the folder vanished), never for a bad frame.
    public func run() throws -> StackSummary {
        let o = options
        let start = StackClock.now()
        var source: FrameSource
        var listFirst: Int? = nil
        var hdf5: HDF5Frames? = nil
        var watchingHDF5 = false
        defer { hdf5?.close() }
        switch o.source {
        case .files(let paths):
            guard !paths.isEmpty else { throw StackError("no frame files given") }
            let inputs = paths.filter(HDF5Frames.isHDF5)
            if !inputs.isEmpty {
                // frames in HDF5 files: numbered from the source's first number, in order
                guard inputs.count == paths.count else {
                    throw StackError("give HDF5 files or frame files, not both (\(inputs[0]) and \(paths.first { !HDF5Frames.isHDF5($0) }!))")
                }
                let h = try HDF5Frames(inputs: inputs)
                hdf5 = h
                let list = ListSource(files: (0..<h.frameCount).map { FrameFile(path: HDF5Frames.virtualPath($0), number: h.firstNumber + $0) })
                listFirst = list.firstNumber
                source = list
            } else {
                let list = ListSource(paths: paths)
                listFirst = list.firstNumber
                source = list
            }
        case .watch(let dir):
            source = try DirectorySource(directory: dir, pattern: o.pattern, endMarker: o.endMarker,
                                         poll: o.poll, pollInterval: o.pollInterval)
            // --pattern '*.h5': HDF5 files, each added as it is closed or renamed into place
            if let p = o.pattern, HDF5Frames.isHDF5(p) { hdf5 = HDF5Frames(watching: dir); watchingHDF5 = true }
        case .generated(let names, _):
            guard !names.isEmpty else { throw StackError("no frames to generate") }
            let list = ListSource(paths: names)
            listFirst = list.firstNumber
            source = list
        }
        let generate: (@Sendable (Int) throws -> Frame)? = { if case .generated(_, let make) = o.source { return make }; return nil }()
        let sourcePages = generate == nil ? SourcePages() : nil
        defer { sourcePages?.finish() }
        defer { (source as? DirectorySource)?.closeWatch() }
        let dataset = "/\(o.entry)/instrument/detector/data"
        var summary = StackSummary(output: o.output, dataset: dataset)

        var stack: StackFile? = nil
        var job: Job? = nil
        if access(o.output, F_OK) == 0 {
            let s = try StackFile.resume(path: o.output, entry: o.entry, expectedFirst: o.firstNumber)
            stack = s
            summary.resumed = true
            summary.storedBefore = s.statuses.filter { $0 == .stored }.count
            if let repair = s.file.repair { o.log("\(o.output): repaired: \(repair)") }
            if !s.framesLostInRepair.isEmpty {
                let shown = s.framesLostInRepair.prefix(10).map(String.init).joined(separator: ", ")
                o.log("\(o.output): \(s.framesLostInRepair.count) frames marked stored lay past the end of the file (indices \(shown)\(s.framesLostInRepair.count > 10 ? ", ..." : "")): stacked again")
            }
            o.log("\(o.output): resuming: \(summary.storedBefore) frames already stored")
            o.observer?.runStarted(file: o.output, dataset: dataset, frameShape: s.frameShape, resumed: true)
            o.observer?.runResumed(storedRanges: s.statuses.storedRanges, file: o.output, dataset: dataset)
        }
        var base = stack?.firstNumber ?? o.firstNumber ?? listFirst
        var queue: [Int: FrameFile] = [:]     // by index, waiting for a worker
        var retries: [(due: Double, file: FrameFile)] = []
        var pendingReady: [StackFile.Ready] = []
        var pendingBad: [StackFile.Bad] = []
        var oldestPending = 0.0
        var inFlight = 0
        var lastActivity = StackClock.now()
        var stopReason = ""
        var draining = false
        let results = OutcomeQueue()
        let total: Int? = {
            if let h = hdf5, !watchingHDF5 { return o.frames ?? h.frameCount }
            if case .files(let p) = o.source { return o.frames ?? p.count }
            if case .generated(let p, _) = o.source { return o.frames ?? p.count }
            return o.frames
        }()
        var progressBar: ProgressBar? = nil  // made with the stack (it knows the frame size)
        func makeBar(_ s: StackFile) {
            guard o.progress else { return }
            progressBar = ProgressBar(label: "stack", total: total ?? 0, unit: "frames",
                                      bytesPerUnit: s.frameShape.reduce(s.dtype.itemSize, *))
        }
        if let s = stack { makeBar(s) }
        // One serial queue per worker: exactly `workers` threads decode and compress, however
        // many frames wait (a concurrent queue may start a thread per waiting item).
        let lanes = (0..<o.workers).map { DispatchQueue(label: "nxlua.stack.worker\($0)") }
        var nextLane = 0
        // Frames handed to the workers and not yet taken back. Deep enough that the workers
        // keep going while this thread spends a commit writing chunks; a finished frame
        // holds only its compressed chunk.
        let maxInFlight = o.workers * 4 + o.commitFrames

        func index(of f: FrameFile) -> Int { f.number - (base ?? 0) }

        func commit() throws {
            guard let s = stack, !pendingReady.isEmpty || !pendingBad.isEmpty else { return }
            let runs = try s.commit(pendingReady, pendingBad, durable: o.durable)
            let flushed = o.observer == nil ? [] : pendingReady.map {
                FlushedFrame(index: $0.index, sourceName: $0.sourceName, values: $0.values, time: $0.time)
            }
            summary.stored += pendingReady.count
            summary.bad += pendingBad.filter { $0.index >= 0 }.count
            summary.bytesWritten += pendingReady.reduce(0) { $0 + $1.chunk.bytes.count }
            pendingReady.removeAll(keepingCapacity: true)
            pendingBad.removeAll()
            for r in runs {
                o.observer?.framesFlushed(r, file: o.output, dataset: dataset,
                                          frames: flushed.filter { r.contains($0.index) }.sorted { $0.index < $1.index })
            }
            progressBar?.update(summary.stored + summary.storedBefore, note: "lag \(queue.count + inFlight + retries.count)")
        }

        func handle(_ outcome: Outcome) {
            lastActivity = StackClock.now()
            switch outcome {
            case .ready(let r):
                if pendingReady.isEmpty && pendingBad.isEmpty { oldestPending = StackClock.now() }
                pendingReady.append(r)
            case .bad(let b):
                o.log("bad frame \(b.sourceName) (index \(b.index)): \(b.error)")
                if pendingReady.isEmpty && pendingBad.isEmpty { oldestPending = StackClock.now() }
                pendingBad.append(b)
            case .retry(let f):
                retries.append((StackClock.now() + 0.2, f))
            }
        }

        /// HDF5 frames are read here (this thread alone talks to HDF5): a chunk already in
        /// the stack's format goes in as stored; another is decoded here and encoded by a worker.
        func takeHDF5(_ f: FrameFile, index i: Int, from h: HDF5Frames, into s: StackFile, job: Job) {
            let k = HDF5Frames.frameIndex(f.path) ?? f.number - h.firstNumber
            let name = h.sourceName(k)
            do {
                if h.chunkFits(k, into: s.data), let chunk = try h.storedChunk(k) {
                    handle(.ready(StackFile.Ready(index: i, chunk: chunk, values: Stacker.perFrameValues(h.values(k), for: job),
                                                  time: nil, sourceName: name)))
                    return
                }
                let frame = Frame(array: try h.frame(k), header: h.header(k))
                inFlight += 1
                nextLane = (nextLane + 1) % lanes.count
                lanes[nextLane].async {
                    o.beforeWork()
                    results.push(Stacker.prepare(frame, FrameFile(path: name, number: f.number), index: i, for: job))
                }
            } catch {
                handle(.bad(StackFile.Bad(index: i, sourceName: name, error: "\(error)")))
            }
        }

        /// The first good frame makes the layout; until then frames are read one by one here.
        func startStack(with f: FrameFile) throws {
            let i = index(of: f)
            if let h = hdf5 {
                let k = HDF5Frames.frameIndex(f.path) ?? f.number - h.firstNumber
                var additions = o.additions
                if let m = h.pixelMask { additions.pixelMask = m; additions.pixelMaskSource = "the pixel mask of \(h.description)" }
                let frame: Frame
                do { frame = Frame(array: try h.frame(k), header: h.header(k)) } catch {
                    handle(.bad(StackFile.Bad(index: i, sourceName: h.sourceName(k), error: "\(error)")))
                    return
                }
                let s = try StackFile.create(path: o.output, entry: o.entry, first: frame, firstNumber: base ?? 0,
                                             compression: o.compression, fillValue: o.fillValue,
                                             source: h.description, program: o.program, additions: additions)
                stack = s
                makeBar(s)
                o.observer?.runStarted(file: o.output, dataset: dataset, frameShape: s.frameShape, resumed: false)
                handle(Stacker.prepare(frame, FrameFile(path: h.sourceName(k), number: f.number), index: i, for: s.job))
                return
            }
            switch Stacker.read(f, settle: o.settleTime, generate: generate) {
            case .failure(let e):
                if case .bad(let b) = e.outcome {
                    handle(.bad(StackFile.Bad(index: i, sourceName: b.sourceName, error: b.error)))
                } else {
                    handle(e.outcome)
                }
            case .success(let frame):
                let s = try StackFile.create(path: o.output, entry: o.entry, first: frame, firstNumber: base ?? 0,
                                             compression: o.compression, fillValue: o.fillValue,
                                             source: Stacker.describe(o.source), program: o.program, additions: o.additions)
                stack = s
                makeBar(s)
                o.observer?.runStarted(file: o.output, dataset: dataset, frameShape: s.frameShape, resumed: false)
                handle(Stacker.prepare(frame, f, index: i, for: s.job))
                sourcePages?.read(f.path)
            }
        }

        /// A watched HDF5 file, closed by its writer or renamed into place: its frames, numbered
        /// by the file's image_nr_low (Eiger) or, for a file of one frame, by the number in
        /// its name (areaDetector's single mode). A file that cannot be opened yet (its
        /// writer's HDF5 lock, a partial file) is tried again while it is younger than --settle.
        var waitingFiles: [(due: Double, file: FrameFile)] = []
        func watchedHDF5(_ f: FrameFile, into h: HDF5Frames) -> [FrameFile] {
            do {
                let (frames, image) = try h.add(f.path)
                if let image { return frames.map { FrameFile(path: HDF5Frames.virtualPath($0), number: image + $0 - frames.lowerBound) } }
                guard frames.count == 1 else {
                    o.log("skipped \(f.path): \(frames.count) frames and no image_nr_low to number them (a watched HDF5 file holds one frame, or says its first image's number)")
                    return []
                }
                return [FrameFile(path: HDF5Frames.virtualPath(frames.lowerBound), number: f.number)]
            } catch {
                var st = stat()
                if stat(f.path, &st) == 0, Double(time(nil) - st.st_mtim.tv_sec) < o.settleTime {
                    waitingFiles.append((StackClock.now() + 0.2, f))
                } else {
                    o.log("skipped \(f.path): \(error)")
                }
                return []
            }
        }

        while true {
            if !draining && o.shouldStop() { draining = true; stopReason = "interrupted" }
            // Intake.
            if !draining {
                // One wait for whatever comes first: a new file, a worker's frame (frames
                // arriving while others are in flight go to the idle workers at once), a
                // commit or a file waiting for its writer that is due.
                let before = StackClock.now()
                var wait = waitingFiles.map { $0.due - before }.min().map { max(0, min(0.05, $0)) } ?? 0.05
                if !queue.isEmpty && inFlight < maxInFlight {
                    wait = 0
                } else if inFlight > 0 {
                    wait = min(wait, 0.02)
                }
                if !pendingReady.isEmpty || !pendingBad.isEmpty { wait = min(wait, max(0, oldestPending + o.commitDelay - before)) }
                var found = try source.next(timeout: wait, wake: results.wakeDescriptor)
                if watchingHDF5, let h = hdf5 {
                    let now = StackClock.now()
                    let due = waitingFiles.filter { $0.due <= now }.map(\.file)
                    waitingFiles.removeAll { $0.due <= now }
                    found = (due + found).flatMap { HDF5Frames.isHDF5($0.path) ? watchedHDF5($0, into: h) : [$0] }
                }
                if !found.isEmpty { lastActivity = StackClock.now() }
                if base == nil, let lowest = found.map(\.number).min() { base = min(1, lowest) }
                for f in found {
                    let i = index(of: f)
                    if i < 0 {
                        handle(.bad(StackFile.Bad(index: i, sourceName: Stacker.name(f.path),
                                                  error: "frame number \(f.number) comes before the first frame number \(base ?? 0) (see --first)")))
                        continue
                    }
                    if let s = stack, i < s.extent, s.statuses[i] == .stored { continue }
                    if let frames = o.frames, i >= frames {
                        o.log("ignoring \(f.path): frame index \(i) is beyond --frames \(frames)")
                        continue
                    }
                    queue[i] = f
                }
                let now = StackClock.now()
                while let k = retries.firstIndex(where: { $0.due <= now }) {
                    let f = retries.remove(at: k).file
                    queue[index(of: f)] = f
                }
            }
            // Work.
            if draining {
                // no new work: the frames in flight finish and are committed
            } else if stack == nil {
                if let i = queue.keys.min() {
                    let f = queue.removeValue(forKey: i)!
                    try startStack(with: f)
                }
            } else if let s = stack, let h = hdf5 {
                if job == nil { job = s.job }
                // a commit's worth at a time, so commits and progress keep pace
                var taken = 0
                while taken < o.commitFrames, inFlight < maxInFlight, let i = queue.keys.min() {
                    let f = queue.removeValue(forKey: i)!
                    takeHDF5(f, index: i, from: h, into: s, job: job!)
                    taken += 1
                }
            } else if let s = stack {
                if job == nil { job = s.job; job!.generate = generate; job!.sourcePages = sourcePages }
                let job = job!
                while inFlight < maxInFlight, let i = queue.keys.min() {
                    let f = queue.removeValue(forKey: i)!
                    inFlight += 1
                    nextLane = (nextLane + 1) % lanes.count
                    lanes[nextLane].async {
                        o.beforeWork()
                        results.push(Stacker.process(f, index: i, job: job, settle: o.settleTime))
                    }
                }
            }
            // Wait for a worker when none can take more, or when draining (no spinning on
            // the writer's core); otherwise the intake's wait above has waited for them.
            let saturated = inFlight >= maxInFlight || (draining && queue.isEmpty)
            for outcome in results.pop(waitingUpTo: inFlight > 0 && saturated ? 0.02 : 0) {
                inFlight -= 1
                handle(outcome)
            }
            let pendingCount = pendingReady.count + pendingBad.count
            if pendingCount > 0 && (pendingCount >= o.commitFrames || StackClock.now() - oldestPending >= o.commitDelay
                                    || (inFlight == 0 && queue.isEmpty)) {
                try commit()
            }
            // Stop conditions.
            // (bad frames seen before any good one wait for the layout: they do not keep a run going)
            let idle = inFlight == 0 && queue.isEmpty && (stack == nil || (pendingReady.isEmpty && pendingBad.isEmpty))
            if draining {
                if inFlight == 0 { break }
                continue
            }
            if let frames = o.frames, let s = stack, idle, s.extent >= frames,
               !s.statuses.prefix(frames).contains(.missing) {
                stopReason = "all \(frames) frames in"; break
            }
            if idle && retries.isEmpty && source.isExhausted { stopReason = "no more files"; break }
            if idle && retries.isEmpty && source.endMarkerSeen {
                // One last look: frames written just before the marker.
                if case .watch = o.source {
                    let late = try source.next(timeout: 0, wake: -1)
                    if !late.isEmpty { for f in late { let i = index(of: f); if i >= 0 { queue[i] = f } }; continue }
                }
                stopReason = "end marker \(o.endMarker ?? "")"; break
            }
            if let t = o.idleTimeout, idle, StackClock.now() - lastActivity >= t {
                stopReason = "idle for \(Stacker.seconds(t)) s"; break
            }
        }
        // In-flight results are in; a retry left over when stopping is a frame still being
        // written: it stays missing, and a rerun picks it up.
        for outcome in results.pop(waitingUpTo: 0) { handle(outcome) }
        if let s = stack {
            if let frames = o.frames { try s.grow(to: frames) }
            try commit()
            try s.file.flush(durable: o.durable)
            summary.missing = s.statuses.indices.filter { s.statuses[$0] == .missing }
            summary.frameCount = s.extent
            summary.frameShape = s.frameShape
            try s.close()
        } else if !pendingBad.isEmpty {
            throw StackError("no readable frame: \(pendingBad.count) bad, the first \(pendingBad[0].sourceName): \(pendingBad[0].error)")
        } else if stopReason == "interrupted" {
            // nothing was stacked
        } else {
            throw StackError("no frame files found (\(Stacker.describe(o.source)))")
        }
        progressBar?.finish()
        summary.seconds = StackClock.now() - start
        summary.stopReason = stopReason
        o.observer?.runStopped(summary)
        return summary
    }

    // MARK: the workers' side (no HDF5 here)

    /// What a worker needs to prepare frames for a stack.
    struct Job: @unchecked Sendable {
        let frameShape: [Int]
        let dtype: DType
        let encoder: NXChunkEncoder
        let perFrameKeys: Set<String>
        let hasTime: Bool
        /// Frames made in memory instead of read (StackOptions.Source.generated).
        var generate: (@Sendable (Int) throws -> Frame)? = nil
        /// The frame files read, handed back to the kernel's page cache (nil: generated).
        var sourcePages: SourcePages? = nil
    }

    static func read(_ f: FrameFile, settle: Double, generate: (@Sendable (Int) throws -> Frame)? = nil) -> Result<Frame, OutcomeError> {
        if let generate {
            do { return .success(try generate(f.number)) } catch {
                let message = (error as? CustomStringConvertible)?.description ?? "\(error)"
                return .failure(OutcomeError(.bad(StackFile.Bad(index: 0, sourceName: name(f.path), error: message))))
            }
        }
        do {
            return .success(try FrameReader.read(f.path))
        } catch {
            // A file the detector is still writing does not decode yet: try again later.
            var st = stat()
            if stat(f.path, &st) == 0, Double(time(nil) - st.st_mtim.tv_sec) < settle {
                return .failure(OutcomeError(.retry(f)))
            }
            let message = (error as? DetectorError)?.message ?? "\(error)"
            return .failure(OutcomeError(.bad(StackFile.Bad(index: 0, sourceName: name(f.path), error: message))))
        }
    }

    struct OutcomeError: Error {
        let outcome: Outcome
        init(_ o: Outcome) { outcome = o }
    }

    static func process(_ f: FrameFile, index: Int, job: Job, settle: Double) -> Outcome {
        let outcome = decode(f, index: index, job: job, settle: settle)
        // a file to retry, or a bad one, stays in the page cache as it is
        if case .ready = outcome { job.sourcePages?.read(f.path) }
        return outcome
    }

    static func decode(_ f: FrameFile, index: Int, job: Job, settle: Double) -> Outcome {
        if job.generate == nil, let streamed = processStreamed(f, index: index, job: job, settle: settle) { return streamed }
        switch read(f, settle: settle, generate: job.generate) {
        case .failure(let e):
            if case .bad(let b) = e.outcome { return .bad(StackFile.Bad(index: index, sourceName: b.sourceName, error: b.error)) }
            return e.outcome
        case .success(let frame):
            return prepare(frame, f, index: index, for: job)
        }
    }

    static func prepare(_ frame: Frame, _ f: FrameFile, index: Int, for job: Job) -> Outcome {
        let a = frame.array
        let n = name(f.path)
        if let mismatch = check(shape: a.shape, dtype: a.dtype, of: n, index: index, for: job) { return mismatch }
        let (values, time) = perFrameValues(frame.header, for: job)
        do {
            let chunk = try job.encoder.encode(consuming: a)
            return .ready(StackFile.Ready(index: index, chunk: chunk, values: values, time: time, sourceName: n))
        } catch {
            return .bad(StackFile.Bad(index: index, sourceName: n, error: "cannot compress: \(error)"))
        }
    }

    /// Byte-offset int32 CBFs into the native bitshuffle encoder: decoded a block at a time,
    /// each block compressed while in the cache, so the 10 MB decoded frame never goes
    /// through main memory (twice). nil when this path does not apply (other files or
    /// compressions): `process` then reads the frame whole.
    static func processStreamed(_ f: FrameFile, index: Int, job: Job, settle: Double) -> Outcome? {
        guard job.encoder.isNative, job.dtype == .int32 else { return nil }
        let n = name(f.path)
        do {
            return try CBFReader.withPixelStream(f.path) { stream -> Outcome in
                if let mismatch = check(shape: stream.shape, dtype: stream.dtype, of: n, index: index, for: job) { return mismatch }
                let (values, time) = perFrameValues(stream.header, for: job)
                let chunk: NXEncodedChunk
                do {
                    chunk = try job.encoder.encode { buffer, count in try stream.next(into: buffer, count: count) }
                } catch let e as NeXusError {
                    return .bad(StackFile.Bad(index: index, sourceName: n, error: "cannot compress: \(e)"))
                }
                return .ready(StackFile.Ready(index: index, chunk: chunk, values: values, time: time, sourceName: n))
            }
        } catch {
            // As in `read`: a file the detector is still writing does not decode yet.
            var st = stat()
            if stat(f.path, &st) == 0, Double(time(nil) - st.st_mtim.tv_sec) < settle { return .retry(f) }
            let message = (error as? DetectorError)?.message ?? "\(error)"
            return .bad(StackFile.Bad(index: index, sourceName: n, error: message))
        }
    }

    static func check(shape: [Int], dtype: DType, of name: String, index: Int, for job: Job) -> Outcome? {
        guard shape == job.frameShape else {
            return .bad(StackFile.Bad(index: index, sourceName: name,
                                      error: "wrong size: a frame of \(NDArray.describe(shape)) where the stack holds \(NDArray.describe(job.frameShape))"))
        }
        guard dtype == job.dtype else {
            return .bad(StackFile.Bad(index: index, sourceName: name,
                                      error: "wrong type: \(dtype.rawValue) pixels where the stack holds \(job.dtype.rawValue)"))
        }
        return nil
    }

    /// The values the stack keeps per frame, of all given.
    static func perFrameValues(_ all: [String: HeaderValue], for job: Job) -> [String: HeaderValue] {
        all.filter { job.perFrameKeys.contains($0.key) }
    }

    /// The header values the stack keeps per frame, and the time stamp.
    static func perFrameValues(_ header: FrameHeader, for job: Job) -> ([String: HeaderValue], String?) {
        var values: [String: HeaderValue] = [:]
        var time: String? = nil
        for e in header.pilatus?.entries ?? [] {
            if job.perFrameKeys.contains(e.key) { values[e.key] = e.value }
            if job.hasTime, e.key == "time", case .text(let t) = e.value { time = t }
        }
        return (values, time)
    }

    /// Seconds as the user gave them: 60 -> "60", 1.5 -> "1.5" (an idle limit of 1.5 s
    /// was reported as "idle for 1 s").
    static func seconds(_ t: Double) -> String {
        t == t.rounded() && abs(t) < 1e15 ? String(Int(t)) : String(t)
    }

    static func name(_ path: String) -> String {
        String(path.split(separator: "/", omittingEmptySubsequences: false).last ?? Substring(path))
    }

    static func describe(_ source: StackOptions.Source) -> String {
        switch source {
        case .files(let p): return p.count == 1 ? p[0] : "\(p.count) files from \(p[0])"
        case .watch(let d): return "folder \(d)"
        case .generated(let names, _): return "\(names.count) generated frames"
        }
    }
}

extension StackFile {
    var job: Stacker.Job {
        Stacker.Job(frameShape: frameShape, dtype: dtype, encoder: encoder,
                    perFrameKeys: Set(perFrame.map(\.key)), hasTime: timeField != nil)
    }
}

/// Outcomes from the workers to the writing thread.
final class OutcomeQueue: @unchecked Sendable {
    private var items: [Stacker.Outcome] = []
    private var mutex = pthread_mutex_t()
    private var ready = pthread_cond_t()
    /// Readable while outcomes wait (a pipe): the stacking thread waits for new files and
    /// for outcomes in one poll().
    let wakeDescriptor: Int32
    private let wakeWriter: Int32

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&ready, nil)
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) == 0 {
            for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        } else {
            fds = [-1, -1]  // then the waits time out instead
        }
        wakeDescriptor = fds[0]
        wakeWriter = fds[1]
    }

    deinit {
        pthread_cond_destroy(&ready)
        pthread_mutex_destroy(&mutex)
        if wakeDescriptor >= 0 { close(wakeDescriptor); close(wakeWriter) }
    }

    func push(_ o: Stacker.Outcome) {
        pthread_mutex_lock(&mutex)
        items.append(o)
        pthread_cond_signal(&ready)
        if wakeWriter >= 0 {
            var one: UInt8 = 1
            _ = write(wakeWriter, &one, 1)  // a full pipe is readable already
        }
        pthread_mutex_unlock(&mutex)
    }

    /// Everything queued, waiting up to `seconds` for the first item.
    func pop(waitingUpTo seconds: Double) -> [Stacker.Outcome] {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        if items.isEmpty && seconds > 0 {
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            let ns = Int(ts.tv_nsec) + Int(seconds * 1e9)
            ts.tv_sec += ns / 1_000_000_000
            ts.tv_nsec = ns % 1_000_000_000
            _ = pthread_cond_timedwait(&ready, &mutex, &ts)
        }
        let out = items
        items.removeAll(keepingCapacity: true)
        if wakeDescriptor >= 0 {
            withUnsafeTemporaryAllocation(byteCount: 256, alignment: 1) { drain in
                while read(wakeDescriptor, drain.baseAddress, drain.count) > 0 {}
            }
        }
        return out
    }
}
