import CProcessShims
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// Remote evaluations run in worker processes of the server (`nxlua serve eval-worker`),
/// not in its threads. In one process an evaluation shares HDF5's global lock, and its
/// open files, with the HDF5 gate that answers every REST read: in the live run (a stack
/// growing, macros busy, one client looping r:eval over the whole stack) a GET of the
/// tree waited 8.6 s behind an 8.9 s evaluation where it takes 0.3 s alone. A worker
/// opens the files on its own, as any other reader, and runs 5 nice steps below the
/// server (at least nice 10) with all its threads, in a session of its own with the
/// server's nice value (with sched_autogroup, an evaluation in the server's session took
/// the server's share of the CPU, and REST reads waited), so the stacker, the macros and
/// the REST reads of a live scan come first.
/// A worker that crashes, runs out of memory or overruns its time is killed and replaced
/// without touching the server.
///
/// Protocol on the worker's stdin/stdout: each message is a little-endian UInt32 length,
/// that many bytes of JSON, then (for an array result) `"bytes"` raw bytes.
/// Request: {"code", "args", "user", "time", "instructions", "memory", "access"}.
/// Answer: {"json": value} | {"error": message} | {"dtype", "shape", "bytes"} + bytes.
public final class EvaluationWorkers: RemoteEvaluator, @unchecked Sendable {
    /// The least nice value of the worker processes (and every thread they start).
    public static let nice: Int32 = 10
    /// How long past its own time limit a worker may take to answer before it is killed
    /// (the worker stops its evaluation itself; this covers a worker stuck in C).
    static let grace = 10.0

    let executable: String
    let arguments: [String]
    private let idle = NIOLockedValueBox<[Worker]>([])

    /// `executable` with `arguments` runs `EvaluationWorkers.serve` (nxlua: its own
    /// binary with `serve eval-worker FOLDER`).
    public init(executable: String, arguments: [String]) {
        self.executable = executable
        self.arguments = arguments
        // a worker that died must not take the server with it when the server writes to it
        signal(SIGPIPE, SIG_IGN)
    }

    deinit {
        for w in idle.withLockedValue({ $0 }) { w.stop() }
    }

    /// Ends the waiting workers: their input closes and they exit by themselves (a
    /// sanitized build reports what it found on the way out); killed after 5 s.
    public func shutdown() {
        let workers = idle.withLockedValue { list -> [Worker] in
            defer { list.removeAll() }
            return list
        }
        for w in workers { w.channel.close() }
        let deadline = Channel.now() + 5
        for w in workers {
            var status: Int32 = 0
            while waitpid(w.pid, &status, WNOHANG) == 0 {
                if Channel.now() > deadline {
                    kill(w.pid, SIGKILL)
                    _ = waitpid(w.pid, &status, 0)
                    break
                }
                usleep(10_000)
            }
        }
    }

    public func evaluate(_ request: EvaluationRequest) throws -> EvaluationResult {
        var message: [JSON.Member] = [
            .init("code", .string(request.code)), .init("args", request.arguments), .init("user", .string(request.user)),
            .init("time", .double(request.timeLimit)), .init("instructions", .int(request.instructionLimit)),
            .init("memory", .int(request.memoryLimit)),
        ]
        message.append(.init("access", request.access.folders.map { .array($0.map { .array($0.map(JSON.string)) }) } ?? .null))
        let requestBytes = JSON.object(message).bytes
        var worker: Worker
        if let waiting = idle.withLockedValue({ $0.popLast() }) {
            worker = waiting
            // one that died while it waited (killed from outside) is replaced
            do {
                guard worker.isAlive else { throw WorkerFault.broken("it ended while it waited") }
                try worker.send(requestBytes)
            } catch {
                worker.stop()
                worker = try Worker.start(executable, arguments)
                try sendOrStop(worker, requestBytes)
            }
        } else {
            worker = try Worker.start(executable, arguments)
            try sendOrStop(worker, requestBytes)
        }
        let answer: (JSON, [UInt8])
        do {
            answer = try worker.receive(timeLimit: request.timeLimit + EvaluationWorkers.grace)
        } catch let e as WorkerFault {
            var overran = false
            if case .overran = e { overran = true }
            let status = worker.stop(waitFirst: !overran)
            switch e {
            case .overran:
                throw EvaluationError("time limit of \(request.timeLimit) s reached (the evaluation's process did not stop by itself and was killed)")
            case .broken(let what):
                throw ServeError(500, "eval: the evaluation's process \(status) before it answered (\(what)); the next evaluation starts a new one")
            }
        }
        idle.withLockedValue { $0.append(worker) }
        let (head, bytes) = answer
        if let error = head["error"]?.stringValue { throw EvaluationError(error) }
        if let value = head["json"] { return .json(value) }
        guard let dtype = head["dtype"]?.stringValue, case .array(let dims)? = head["shape"] else {
            throw ServeError(500, "eval: the evaluation's process answered something unreadable: \(head.text.prefix(200))")
        }
        return .array(dtype: dtype, shape: dims.compactMap { $0.intValue }, bytes: bytes)
    }

    private func sendOrStop(_ worker: Worker, _ head: [UInt8]) throws {
        do { try worker.send(head) } catch {
            let status = worker.stop(waitFirst: true)
            throw ServeError(500, "eval: the evaluation's process \(status) before it read the request (\(error))")
        }
    }

    // MARK: - the worker's side

    /// The worker process's loop: answers requests on stdin until it closes (the server
    /// stopped). `folder` is the served folder; files are resolved and access is checked
    /// by the same rules as the server's routes. Returns the process's exit status.
    public static func serve(folder: String, parent: Int32, evaluator: RemoteEvaluator) -> Int32 {
        // threads 5 steps below the server's; the worker's own session (see the type's
        // comment) gets the server's share, at least nice 10: a whole-stack sum must still
        // finish while the clients of a live scan keep the machine busy
        let server = nx_current_nice()
        guard nx_worker_start(parent, min(19, max(nice, server + 5)), min(19, max(nice, server))) == 0 else { return 1 }
        // the answers go to the original stdout; anything else written there goes to stderr
        let answers = dup(1)
        guard answers >= 0, dup2(2, 1) >= 0 else { return 1 }
        let resolver: DomainResolver
        do { resolver = try DomainResolver(root: folder) } catch {
            complain("nxlua serve eval-worker: \(error)\n")
            return 1
        }
        let channel = Channel(input: 0, output: answers)
        while true {
            let head: JSON
            do {
                guard let (h, _) = try channel.read(deadline: nil) else { return 0 }  // the server closed it
                head = h
            } catch {
                complain("nxlua serve eval-worker: \(error)\n")
                return 1
            }
            var answer: JSON
            var payload: [UInt8] = []
            do {
                let request = try decode(head, resolver)
                switch try evaluator.evaluate(request) {
                case .json(let v): answer = .obj(["json": v])
                case .array(let dtype, let shape, let bytes):
                    answer = .obj(["dtype": .string(dtype), "shape": .array(shape.map { .int($0) }), "bytes": .int(bytes.count)])
                    payload = bytes
                }
            } catch let e as EvaluationError {
                answer = .obj(["error": .string(e.message)])
            } catch {
                answer = .obj(["error": .string("\(error)")])
            }
            do { try channel.write(answer.bytes, payload) } catch { return 1 }
        }
    }

    static func decode(_ head: JSON, _ resolver: DomainResolver) throws -> EvaluationRequest {
        guard let code = head["code"]?.stringValue, let user = head["user"]?.stringValue,
              let time = head["time"]?.doubleValue, let instructions = head["instructions"]?.intValue,
              let memory = head["memory"]?.intValue else {
            throw EvaluationError("the server's request to its evaluation process is incomplete")
        }
        // null: everything; otherwise folders as lists of names (anything else is refused:
        // an empty list would read as the whole tree)
        var folders: [[String]]? = nil
        if let given = head["access"], given != .null {
            guard case .array(let list) = given else { throw EvaluationError("the server's request names no readable folders") }
            folders = try list.map { item in
                guard case .array(let parts) = item, !parts.isEmpty, parts.allSatisfy({ $0.stringValue != nil }) else {
                    throw EvaluationError("the server's request names a readable folder wrongly")
                }
                return parts.compactMap(\.stringValue)
            }
        }
        let access = FolderAccess(folders: folders)
        return EvaluationRequest(code: code, arguments: head["args"] ?? .null, user: user, access: access,
                                 timeLimit: time, instructionLimit: instructions, memoryLimit: memory,
                                 resolveFile: EvaluationRequest.fileResolver(resolver, access, user: user))
    }
}

/// Writes to stderr (fd 2) directly.
func complain(_ text: String) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
}

enum WorkerFault: Error {
    /// No answer within the time limit and its grace.
    case overran
    /// The pipe closed or carried garbage (the worker died or misbehaved).
    case broken(String)
}

/// One worker process and the pipes to it.
final class Worker {
    let pid: pid_t
    let channel: Channel

    private init(pid: pid_t, channel: Channel) {
        self.pid = pid
        self.channel = channel
    }

    static func start(_ executable: String, _ arguments: [String]) throws -> Worker {
        let args = [executable] + arguments + [String(getpid())]
        var cArgs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        var toChild: Int32 = -1, fromChild: Int32 = -1, pid: pid_t = 0
        let e = nx_spawn_worker(executable, &cArgs, &toChild, &fromChild, &pid)
        guard e == 0 else {
            throw ServeError(500, "eval: cannot start an evaluation process (\(executable)): \(String(cString: strerror(e)))")
        }
        return Worker(pid: pid, channel: Channel(input: fromChild, output: toChild))
    }

    func send(_ head: [UInt8]) throws {
        do { try channel.write(head, []) } catch { throw WorkerFault.broken("\(error)") }
    }

    func receive(timeLimit: Double) throws -> (JSON, [UInt8]) {
        do {
            guard let answer = try channel.read(deadline: Channel.now() + timeLimit) else {
                throw WorkerFault.broken("its output closed")
            }
            return answer
        } catch let e as WorkerFault { throw e } catch Channel.Failure.timedOut {
            throw WorkerFault.overran
        } catch { throw WorkerFault.broken("\(error)") }
    }

    /// False once the process has ended (it is then reaped; `stop` says nothing more).
    var isAlive: Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == 0
    }

    /// Ends the process and reaps it; says how it ended ("was killed by signal 9").
    /// `waitFirst`: its output closed, so it is on its way out (the pipe closes before
    /// the process can be reaped): give it two seconds before killing it.
    @discardableResult
    func stop(waitFirst: Bool = false) -> String {
        channel.close()
        var status: Int32 = 0
        var r = waitpid(pid, &status, WNOHANG)
        let deadline = Channel.now() + (waitFirst ? 2 : 0)
        while r == 0 && Channel.now() < deadline {
            usleep(5_000)
            r = waitpid(pid, &status, WNOHANG)
        }
        if r == 0 {
            kill(pid, SIGKILL)
            repeat { r = waitpid(pid, &status, 0) } while r < 0 && errno == EINTR
            return "was stopped"
        }
        guard r == pid else { return "ended" }
        let signalled = status & 0x7f
        if signalled != 0 { return "was killed by signal \(signalled)" }
        return "exited with status \((status >> 8) & 0xff)"
    }
}

/// Length-prefixed JSON messages (and raw payloads) over two pipe descriptors.
final class Channel {
    enum Failure: Error, CustomStringConvertible {
        case timedOut
        case io(String)
        var description: String {
            switch self {
            case .timedOut: return "timed out"
            case .io(let m): return m
            }
        }
    }

    let input: Int32, output: Int32
    private var closed = false

    init(input: Int32, output: Int32) {
        self.input = input
        self.output = output
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    func close() {
        guard !closed else { return }
        closed = true
        _ = Glibc.close(input)
        if output != input { _ = Glibc.close(output) }
    }

    func write(_ head: [UInt8], _ payload: [UInt8]) throws {
        let n = UInt32(head.count)
        try writeAll([UInt8(n & 0xff), UInt8(n >> 8 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 24)] + head)
        if !payload.isEmpty { try writeAll(payload) }
    }

    private func writeAll(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let w = Glibc.write(output, raw.baseAddress! + done, raw.count - done)
                if w < 0 {
                    if errno == EINTR { continue }
                    throw Failure.io("write: \(String(cString: strerror(errno)))")
                }
                done += w
            }
        }
    }

    /// The next message; nil at a clean end of input (before a message began).
    func read(deadline: Double?) throws -> (JSON, [UInt8])? {
        guard let prefix = try readExactly(4, deadline: deadline, endAllowed: true) else { return nil }
        let n = Int(prefix[0]) | Int(prefix[1]) << 8 | Int(prefix[2]) << 16 | Int(prefix[3]) << 24
        guard let text = try readExactly(n, deadline: deadline, endAllowed: false) else { return nil }
        let head: JSON
        do { head = try JSON.parse(text, maxDepth: 256) } catch { throw Failure.io("an unreadable message: \(error)") }
        var payload: [UInt8] = []
        if let count = head["bytes"]?.intValue, count > 0 {
            payload = try readExactly(count, deadline: deadline, endAllowed: false) ?? []
        }
        return (head, payload)
    }

    private func readExactly(_ count: Int, deadline: Double?, endAllowed: Bool) throws -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            if let deadline {
                let left = deadline - Channel.now()
                if left <= 0 { throw Failure.timedOut }
                var p = pollfd(fd: input, events: Int16(POLLIN), revents: 0)
                let r = poll(&p, 1, Int32(min(left * 1000 + 1, 60_000)))
                if r < 0 && errno != EINTR { throw Failure.io("poll: \(String(cString: strerror(errno)))") }
                if r <= 0 { continue }
            }
            let r = out.withUnsafeMutableBytes { Glibc.read(input, $0.baseAddress! + done, count - done) }
            if r < 0 {
                if errno == EINTR { continue }
                throw Failure.io("read: \(String(cString: strerror(errno)))")
            }
            if r == 0 {
                if done == 0 && endAllowed { return nil }
                throw Failure.io("the pipe closed in the middle of a message")
            }
            done += r
        }
        return out
    }
}
