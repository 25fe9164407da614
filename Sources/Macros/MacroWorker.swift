import CProcessShims
import Events
import Foundation

/// One macro on its own thread with its own Lua state: reads the journal from its
/// durable cursor, runs its handlers, records each event done / failed / skipped. A
/// handler is marked running before it starts (durably), so after a crash the records
/// say which event was interrupted, and that event is delivered again (attempt 2).
final class MacroWorker: @unchecked Sendable {
    /// Where the macro goes once its handlers prove heavy (see yieldIfHeavy).
    enum HeavyPlacement {
        /// To the runner's batch process: the worker stops at a safe point (before its first
        /// event, or before a run.start) and the runner hands the macro over.
        case batchProcess
        /// Stays, 5 nice steps below the runner's other threads.
        case lowerPriority
        /// In the batch process already.
        case alone
    }

    let name: String
    let journal: any JournalStore
    let options: MacroRunnerOptions
    let wakeup: JournalWakeup
    let log: (String) -> Void
    /// Where this macro's journal writes run once it yields (nil: on its own thread).
    let priorityWrites: PriorityWrites?

    // Shared with the runner's thread (under `lock`).
    private let lock = NSLock()
    private var incoming: MacroSource?
    private var stopRequested = false
    private var statusCopy: MacroStatus

    // The worker thread's own.
    private var current: MacroState?
    private var pending: MacroState?
    private var cursor: Int64 = 0
    private var failures = 0
    private var totalFailures = 0
    private var disabled = false
    private var message: String?
    /// The version that was disabled where the macro ran before (continuing): it stays
    /// disabled here until the file changes.
    private var disabledBefore: String?
    private var path: String
    private var lastPublished = 0.0
    /// CPU seconds per handled event, averaged over the last few (see yieldIfHeavy).
    private var handlerCPU = 0.0
    private var yielded = false
    let heavy: HeavyPlacement
    /// Set (under `lock`) when the worker stops to continue in the batch process.
    private var movingOut = false
    /// An event was handled by this worker (a macro that says macro.heavy() moves before).
    private var handledAny = false
    /// Set by start(), joined by stop() (the runner's thread).
    private var thread: JoinableThread?
    /// The macro ran in another process until now (the runner or its batch process): its
    /// failures in a row go on counting from its status in the journal.
    let continuing: Bool

    init(source: MacroSource, journal: any JournalStore, options: MacroRunnerOptions, wakeup: JournalWakeup,
         priorityWrites: PriorityWrites? = nil, heavy: HeavyPlacement = .lowerPriority, continuing: Bool = false,
         log: @escaping (String) -> Void) {
        self.wakeup = wakeup
        self.heavy = heavy
        self.continuing = continuing
        self.priorityWrites = priorityWrites
        name = source.name
        path = source.path
        self.journal = journal
        self.options = options
        self.log = log
        incoming = source
        statusCopy = MacroStatus(macro: source.name, path: source.path, version: "", pendingVersion: nil, cursor: 0,
                                 failures: 0, totalFailures: 0, disabled: false, message: nil, heartbeat: 0)
    }

    func start() {
        // the thread holds the worker until its loop ends; the cycle ends with it
        thread = JoinableThread(name: "macro.\(name)", stackSize: 16 << 20) { self.run() }
    }

    /// A new text of the file (the runner saw it change).
    func reload(_ source: MacroSource) {
        lock.lock(); incoming = source; lock.unlock()
    }

    /// Asks the thread to stop after the handler in progress; returns at once.
    func requestStop() {
        lock.lock(); stopRequested = true; lock.unlock()
    }

    /// Asks the thread to stop after the handler in progress, and waits until it has
    /// ended: its Lua states are closed then, on that thread, and it holds nothing more.
    func stop() {
        requestStop()
        thread?.join()
    }

    var status: MacroStatus { lock.lock(); defer { lock.unlock() }; return statusCopy }

    /// Nothing left to do up to `last` (`--until-idle`): the cursor is there, or the macro
    /// cannot run (disabled, not loaded).
    func caughtUp(with last: Int64) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return started && (statusCopy.cursor >= last || statusCopy.disabled || statusCopy.version.isEmpty)
    }
    /// The cursor was read and the first text loaded (statusCopy means something).
    private var started = false

    private var shouldStop: Bool { lock.lock(); defer { lock.unlock() }; return stopRequested }

    private func takeIncoming() -> MacroSource? {
        lock.lock(); defer { lock.unlock() }
        let s = incoming
        incoming = nil
        return s
    }

    /// The worker stops to continue in the batch process (the runner hands it over once
    /// the thread has ended).
    var movesOut: Bool { lock.lock(); defer { lock.unlock() }; return movingOut }

    private func moveOut(_ why: String) {
        lock.lock(); movingOut = true; stopRequested = true; lock.unlock()
        log("macro \(name): \(why); it moves to the batch process, below the lighter macros")
    }

    /// The thread's loop has ended (stop() will not wait).
    var hasFinished: Bool { lock.lock(); defer { lock.unlock() }; return finished }
    private var finished = false

    private func run() {
        // The Lua states end with the thread's loop, on the thread that ran them (their
        // finalizers close files the macro left open), before stop() returns.
        defer {
            pending = nil
            current = nil
            lock.lock(); finished = true; lock.unlock()
        }
        do {
            if let c = try journal.cursor(of: name) {
                cursor = c
            } else {
                cursor = try startingCursor()
                try journal.setCursor(of: name, to: cursor)
            }
        } catch {
            log("macro \(name): \(error)")
            return
        }
        if continuing, let s = (try? journal.statuses())?.first(where: { $0.macro == name }) {
            failures = s.failures
            totalFailures = s.totalFailures
            if s.disabled { disabledBefore = s.version; message = s.message }
        }
        while !shouldStop {
            if let s = takeIncoming() { load(s) }
            publish(force: false)
            if !started { lock.lock(); started = true; lock.unlock() }
            let seen = wakeup.current
            var batch: [Event] = []
            if current != nil && !disabled {
                do { batch = try journal.events(after: cursor, limit: 256) } catch {
                    note("cannot read the journal: \(error)")
                }
            }
            if batch.isEmpty {
                wakeup.wait(since: seen, seconds: options.pollInterval ?? 0.01)
                continue
            }
            process(batch)
        }
        publish(force: true)
    }

    /// Where a macro seen for the first time starts: at the start of the run in progress
    /// (a macro joining mid-run still sees its run.start), else at the end; --from-start:
    /// at the beginning of the journal.
    private func startingCursor() throws -> Int64 {
        if options.fromStart { return 0 }
        // the end first, then the run: a run.start committed between the two reads (a
        // stacker starting with the runner) is still delivered, from its start
        let end = try journal.lastSeq()
        if let last = try journal.lastRunStart(), !last.stopped { return min(last.seq - 1, end) }
        return end
    }

    private func load(_ source: MacroSource) {
        if let c = current, c.source.hash == source.hash, source.path == path { pending = nil; return }
        path = source.path
        do {
            let state = try MacroState(source, bounds: options.limits)
            if current == nil, let v = disabledBefore, v == source.hash {
                // disabled where it ran before: an edit re-enables it, not a move
                current = state
                disabled = true
                disabledBefore = nil
                log("macro \(name): taken over, still \(message ?? "disabled; edit \(path) to re-enable")")
            } else if current == nil || disabled || options.reloadNow {
                let was = current?.source.shortHash
                current = state
                pending = nil
                if disabled { log("macro \(name): re-enabled with version \(source.shortHash)") }
                else if let was { log("macro \(name): version \(source.shortHash) replaces \(was) at once") }
                else { log("macro \(name): loaded version \(source.shortHash)") }
                // a new version starts counting anew; the first one loaded here goes on
                // with the count read from the journal (continuing)
                if disabled || was != nil { failures = 0 }
                disabled = false
                message = nil
                if state.declaredHeavy { declaredHeavy() }
            } else {
                pending = state
                message = nil
                log("macro \(name): version \(source.shortHash) compiled; it takes over at the next run.start")
            }
        } catch {
            let kept = current.map { "; version \($0.source.shortHash) keeps running" } ?? "; not running until the file is fixed"
            note("\(error)\(kept)")
        }
        publish(force: true)
    }

    private func note(_ text: String) {
        message = text
        log("macro \(name): \(text)")
    }

    private func process(_ batch: [Event]) {
        var skipped: [Int64] = []
        for event in batch {
            if shouldStop { break }
            // a heavy macro leaves for the batch process where a run starts: its state
            // (upvalues kept during a run) starts anew there, as a new version's does
            if event.kind == .runStart, heavy == .batchProcess, yielded || (pending ?? current)?.declaredHeavy == true {
                moveOut(yielded ? "a new run starts" : "it says macro.heavy()")
                break
            }
            // a reload waiting for the next run takes over before that run's first event
            if event.kind == .runStart, let p = pending {
                log("macro \(name): version \(p.source.shortHash) takes over for run \(event.run)")
                current = p
                pending = nil
                if p.declaredHeavy { declaredHeavy() }
            }
            guard let state = current, !disabled else { break }
            if !state.wants(event.kind) {
                skipped.append(event.seq)
                cursor = event.seq
                continue
            }
            let version = state.source.hash
            let attempt: Int
            do { attempt = try write { [journal, name] in try journal.begin(macro: name, seq: event.seq, version: version) } } catch {
                note("\(error)")
                break
            }
            handledAny = true
            var record = MacroRecord(macro: name, seq: event.seq, status: .done, version: version, error: nil, attempts: attempt)
            let cpuBefore = MacroWorker.threadCPUSeconds()
            do {
                try state.handle(event, attempt: attempt)
                failures = 0
            } catch {
                failures += 1
                totalFailures += 1
                record.status = .failed
                record.error = "\(error)"
                log("macro \(name): event \(event.seq) (\(event.kind.rawValue), run \(event.run)) failed: \(error)")
                if failures >= options.maxFailures {
                    disabled = true
                    let first = "\(error)".split(separator: "\n").first.map(String.init) ?? ""
                    message = "disabled after \(failures) consecutive failures (last: \(first)); edit \(path) to re-enable"
                    log("macro \(name): \(message!)")
                }
            }
            yieldIfHeavy(cpu: MacroWorker.threadCPUSeconds() - cpuBefore)
            do {
                try write { [journal, name, skipped] in
                    try journal.finish(macro: name, outcome: record, skipped: skipped, version: version, cursor: event.seq)
                }
                skipped.removeAll()
                cursor = event.seq
            } catch {
                note("\(error)")
                return
            }
            publish(force: record.status == .failed)
        }
        if !skipped.isEmpty, let last = skipped.last {
            do {
                let version = current?.source.hash ?? ""
                try write { [journal, name, skipped] in
                    try journal.finish(macro: name, outcome: nil, skipped: skipped, version: version, cursor: last)
                }
            } catch { note("\(error)") }
        }
        publish(force: false)
    }

    /// Handlers above this much CPU per event (averaged) make their macro yield.
    static let heavyHandlerCPU = 0.02

    /// Shortest job first among the runner's macros: a macro whose handlers average more
    /// than `heavyHandlerCPU` of CPU per event (sums over whole frames) gives way from then
    /// on, so that a light handler (an alert, a latency probe) is not queued behind it when
    /// the machine is busy: it runs 5 nice steps below the others here at once, and moves
    /// to the batch process at the next run.start (`heavy` .batchProcess, see
    /// MacroRunner.moveHeavyMacros). In the live scenario the light macro's handler waited
    /// up to 0.36 s behind three frame-summing ones in the runner's threads at nice 10.
    private func yieldIfHeavy(cpu: Double) {
        handlerCPU = handlerCPU == 0 ? cpu : 0.8 * handlerCPU + 0.2 * cpu
        guard heavy != .alone, !yielded, handlerCPU > MacroWorker.heavyHandlerCPU else { return }
        lowerPriority("handlers take about \(Int(handlerCPU * 1000)) ms of CPU per event")
    }

    /// The macro says macro.heavy(): to the batch process before its first event, else
    /// below the others here (and to the batch process at the next run.start).
    private func declaredHeavy() {
        if heavy == .batchProcess, !handledAny { moveOut("it says macro.heavy()"); return }
        if heavy != .alone, !yielded { lowerPriority("it says macro.heavy()") }
    }

    private func lowerPriority(_ why: String) {
        yielded = true
        let nice = nx_lower_thread_priority(5)
        _ = nx_set_thread_slice(0)  // batch work now: the kernel's default slice, not the runner's short one
        let later = heavy == .batchProcess ? "; it moves to the batch process at the next run.start" : ""
        log("macro \(name): \(why); it yields to lighter macros (nice \(nice))\(later)")
    }

    static func threadCPUSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    private func publish(force: Bool) {
        let now = Date().timeIntervalSince1970
        let s = MacroStatus(macro: name, path: path, version: current?.source.hash ?? "", pendingVersion: pending?.source.hash,
                            cursor: cursor, failures: failures, totalFailures: totalFailures, disabled: disabled,
                            message: message, heartbeat: now)
        lock.lock(); statusCopy = s; lock.unlock()
        guard force || now - lastPublished >= 1 else { return }
        lastPublished = now
        do { try write { [journal] in try journal.publish(s) } } catch { log("macro \(name): \(error)") }
    }

    /// A journal write: on the runner's writing thread once this macro yields (see
    /// PriorityWrites), else here.
    private func write<T>(_ body: @escaping () throws -> T) throws -> T {
        guard yielded, let priorityWrites else { return try body() }
        return try priorityWrites.run(body)
    }
}
