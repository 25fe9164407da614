import Events
import Foundation

/// Runs the journal writes of heavy macros on one thread at the runner's own priority.
/// A macro whose handlers are heavy runs 5 nice steps below the others (MacroWorker's
/// yieldIfHeavy); preempted while it held the journal's write lock (GRDB's writer queue,
/// SQLite's lock, which the stacker's events wait for too), it held up every other writer
/// behind it: in the live scenario `perf trace` showed the latency probe's thread waiting
/// 41-99 ms on the writer queue. A thread cannot raise its own priority again without
/// privileges, so the writes go to a thread that never lowered it.
final class PriorityWrites: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var stopping = false
    private var thread: JoinableThread?

    init() {
        thread = JoinableThread(name: "macros.writes") { self.loop() }
    }

    /// Runs `body` on the writing thread and returns its result (the caller waits).
    func run<T>(_ body: @escaping () throws -> T) throws -> T {
        let outcome = Outcome<T>()
        let done = DispatchSemaphore(value: 0)
        condition.lock()
        if stopping {
            condition.unlock()
            return try body()  // the runner is winding down: no thread to hand it to
        }
        jobs.append {
            outcome.value = Result { try body() }
            done.signal()
        }
        condition.signal()
        condition.unlock()
        done.wait()
        return try outcome.value!.get()
    }

    /// Runs what was handed over, then ends the thread (after every worker has stopped).
    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
        thread?.join()
        thread = nil
    }

    private final class Outcome<T>: @unchecked Sendable {  // written before `done` is signalled
        var value: Result<T, Error>?
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            let batch = jobs
            jobs.removeAll()
            let finished = stopping && batch.isEmpty
            condition.unlock()
            if finished { return }
            for job in batch { job() }
        }
    }
}
