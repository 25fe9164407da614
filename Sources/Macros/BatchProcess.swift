import CProcessShims
import Events
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The runner's batch process (`nxlua macros batch RUNNER-PID ...`): the heavy macros run
/// there, together (they share its frame cache), in a session of its own 5 nice steps
/// below the runner; it shares the runner's stdout and stderr and is killed with the
/// runner (nx_worker_start), as the runner's own threads would be. The runner writes
/// `run NAME` lines to its stdin, one per macro it hands over.
final class BatchProcess {
    let pid: pid_t
    private var toChild: Int32

    init(_ executable: String, _ arguments: [String]) throws {
        // a handover written after the process died (before the runner reaped it) must
        // fail with EPIPE, not end the runner
        signal(SIGPIPE, SIG_IGN)
        let args = [executable] + arguments
        var cArgs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        var pid: pid_t = 0, fd: Int32 = -1
        let e = nx_spawn_session(executable, &cArgs, &fd, &pid)
        guard e == 0 else { throw EventError("cannot start the batch process (\(executable)): \(String(cString: strerror(e)))") }
        self.pid = pid
        toChild = fd
    }

    deinit { if toChild >= 0 { close(toChild) } }

    /// Hands macro `name` over; false when the process is gone.
    func run(_ name: String) -> Bool {
        guard toChild >= 0 else { return false }
        let line = Array("run \(name)\n".utf8)
        var done = 0
        while done < line.count {
            let n = line[done...].withUnsafeBytes { Glibc.write(toChild, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            done += n
        }
        return true
    }

    /// Asks it to stop after its handlers in progress (its stdin closes; SIGTERM too).
    func requestStop() {
        if toChild >= 0 { close(toChild); toChild = -1 }
        kill(pid, SIGTERM)
    }

    /// The wait status once the process has ended (it is reaped then), else nil.
    func poll() -> Int32? {
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { return status }
        return r < 0 && errno == ECHILD ? -1 : nil
    }

    /// Waits until the process has ended; its wait status (-1: not a child any more).
    func wait() -> Int32 {
        var status: Int32 = 0
        while true {
            if waitpid(pid, &status, 0) == pid { return status }
            if errno != EINTR { return -1 }
        }
    }

    static func endedCleanly(_ status: Int32) -> Bool { status >= 0 && status & 0x7f == 0 && (status >> 8) & 0xff == 0 }

    static func describe(_ status: Int32) -> String {
        if status < 0 { return "ended (its status is unknown)" }
        let signal = status & 0x7f
        if signal != 0 { return "was killed by signal \(signal)" }
        return "exited with status \((status >> 8) & 0xff)"
    }
}

/// In the batch process: the macros its runner handed over, read from stdin (`run NAME`
/// lines) by a thread of its own; `closed` once stdin ends (the runner stopped or died).
public final class BatchMembers: @unchecked Sendable {
    private let lock = NSLock()
    private var names: Set<String> = []
    private var ended = false
    private var stopping = false
    private var count = 0
    private var reader: JoinableThread?

    public init() {}

    /// Starts reading `fd` (stdin).
    public func startReading(_ fd: Int32 = 0) {
        reader = JoinableThread(name: "macros.batch") { [self] in
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !isStopping {
                // a look at the stop flag every 0.2 s: stop() joins this thread
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&p, 1, 200)
                if ready < 0 && errno == EINTR { continue }
                if ready == 0 { continue }
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                pending += buffer[0..<n]
                while let nl = pending.firstIndex(of: 10) {
                    let line = String(decoding: pending[..<nl], as: UTF8.self)
                    pending.removeSubrange(...nl)
                    if line.hasPrefix("run ") { add(String(line.dropFirst(4))) }
                }
            }
            lock.lock(); ended = true; count += 1; lock.unlock()
        }
    }

    /// Ends the reading thread (after the runner stopped).
    public func stop() {
        lock.lock(); stopping = true; lock.unlock()
        reader?.join()
        reader = nil
    }

    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }
    func add(_ name: String) { lock.lock(); names.insert(name); count += 1; lock.unlock() }
    func contains(_ name: String) -> Bool { lock.lock(); defer { lock.unlock() }; return names.contains(name) }
    /// Changes so far (a new member, or stdin's end): the runner scans again when it moved.
    var generation: Int { lock.lock(); defer { lock.unlock() }; return count }
    public var closed: Bool { lock.lock(); defer { lock.unlock() }; return ended }
}
