import Foundation

/// Hands events to a sink on a thread of its own, so the source (the stacker's writing
/// thread) never waits for a commit or for another process holding the journal's write
/// lock. Events queued together are appended in one commit; a failed append is retried
/// (the idempotency keys make a retry harmless) until `flush` gives up.
public final class JournalWriter: @unchecked Sendable {
    let sink: EventSink
    let log: (String) -> Void
    private var queue: [NewEvent] = []
    private var appending = false
    private var stopping = false
    private var lastError: String?
    private let condition = NSCondition()
    private var thread: JoinableThread?

    public init(sink: EventSink, log: @escaping (String) -> Void) {
        self.sink = sink
        self.log = log
        // the thread holds the writer until its loop ends (close() ends it and waits for
        // that, so the journal is never released by a thread still winding down while the
        // process exits)
        thread = JoinableThread(name: "nxlua.journal") { self.loop() }
    }

    /// Queues events; returns at once.
    public func submit(_ events: [NewEvent]) {
        guard !events.isEmpty else { return }
        condition.lock()
        queue += events
        condition.signal()
        condition.unlock()
    }

    /// Waits until everything submitted is appended (at most `seconds`); returns the
    /// number of events still not journaled (0: all are).
    @discardableResult
    public func flush(seconds: Double = 30) -> Int {
        let deadline = Date(timeIntervalSinceNow: seconds)
        condition.lock()
        defer { condition.unlock() }
        while !queue.isEmpty || appending {
            if !condition.wait(until: deadline) { break }
        }
        return queue.count + (appending ? 1 : 0)
    }

    /// Flushes, stops the thread and waits until it has ended.
    public func close(seconds: Double = 30) {
        let left = flush(seconds: seconds)
        if left > 0 { log("journal: \(left) events could not be journaled: \(lastError ?? "timed out")") }
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
        thread?.join()
    }

    private func loop() {
        var delay = 0.01
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if stopping { condition.unlock(); return }
            let batch = queue
            queue.removeAll(keepingCapacity: true)
            appending = true
            condition.unlock()
            do {
                try sink.append(batch)
                delay = 0.01
                condition.lock()
                appending = false
                condition.broadcast()
                condition.unlock()
            } catch {
                let message = "\(error)"
                if message != lastError { log("journal: \(message) (retrying)") }
                condition.lock()
                lastError = message
                queue.insert(contentsOf: batch, at: 0)
                appending = false
                condition.broadcast()
                condition.unlock()
                Thread.sleep(forTimeInterval: delay)
                delay = min(1, delay * 2)
            }
        }
    }
}
