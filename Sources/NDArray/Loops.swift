import Dispatch
import Synchronization

/// The one general strided loop: walks the rows (last axis) of a shape for up to three
/// operands with their own element strides (0 = broadcast), calling `row` with each
/// operand's offset of the row's first element. Kernels put their tight inner loop in
/// `row`, so contiguous rows vectorise. `interruptible` kernels stop between rows once an
/// interruption is requested (every `Interruption.block` elements at most): only for
/// kernels whose caller never relies on every row having run (no count-then-fill passes).
@inline(__always)
func forEachRow(shape: [Int], strides: [[Int]], offsets: [Int], interruptible: Bool = false,
                _ row: (_ offsets: UnsafeMutableBufferPointer<Int>, _ length: Int) -> Void) {
    let nd = shape.count
    let ops = strides.count
    if shape.contains(0) { return }
    withUnsafeTemporaryAllocation(of: Int.self, capacity: ops) { offs in
        for k in 0..<ops { offs[k] = offsets[k] }
        if nd == 0 { row(offs, 1); return }
        let inner = shape[nd - 1]
        if nd == 1 { row(offs, inner); return }
        withUnsafeTemporaryAllocation(of: Int.self, capacity: nd) { idx in
            for a in 0..<nd { idx[a] = 0 }
            var sincePoll = 0
            while true {
                row(offs, inner)
                if interruptible {
                    sincePoll += inner
                    if sincePoll >= Interruption.block {
                        sincePoll = 0
                        if Interruption.requested { return }
                    }
                }
                // advance the multi-index over axes nd-2 ... 0 (odometer)
                var axis = nd - 2
                while axis >= 0 {
                    idx[axis] += 1
                    for k in 0..<ops { offs[k] += strides[k][axis] }
                    if idx[axis] < shape[axis] { break }
                    for k in 0..<ops { offs[k] -= strides[k][axis] * shape[axis] }
                    idx[axis] = 0
                    axis -= 1
                }
                if axis < 0 { return }
            }
        }
    }
}

/// How many threads a job of `elements` should use: one for small work (threads cost
/// ~20 µs to wake), the cores for large.
func threadCount(elements: Int) -> Int {
    let cores = max(1, ProcessInfoLite.activeProcessorCount)
    return elements < 1 << 18 ? 1 : cores
}

enum ProcessInfoLite {
    static let activeProcessorCount: Int = {
        #if canImport(Glibc)
        return Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        #else
        return 1
        #endif
    }()
}

/// Runs `body(part)` for parts 0..<n on the cores (inline when n == 1).
func parallel(_ n: Int, _ body: @Sendable (Int) -> Void) {
    if n <= 1 { body(0); return }
    // the helper threads stop when the caller's own check says so
    guard let check = Interruption.threadCheck else {
        DispatchQueue.concurrentPerform(iterations: n, execute: body)
        return
    }
    nonisolated(unsafe) let shared = check
    DispatchQueue.concurrentPerform(iterations: n) { k in Interruption.withCheck(shared) { body(k) } }
}

/// The first error thrown by any of `parallel`'s parts, rethrown by the caller after.
final class FirstError: Sendable {
    private let error = Mutex<Error?>(nil)
    func keep(_ e: Error) { error.withLock { if $0 == nil { $0 = e } } }
    func rethrow() throws { if let e = error.withLock({ $0 }) { throw e } }
}

/// Splits 0..<total into `parts` near-equal ranges.
func partition(_ total: Int, _ parts: Int, _ k: Int) -> Range<Int> {
    let base = total / parts, extra = total % parts
    let lo = k * base + min(k, extra)
    return lo..<(lo + base + (k < extra ? 1 : 0))
}

#if canImport(Glibc)
import Glibc
#endif

/// Stopping long kernels. The array engine knows nothing of Lua. The calling thread's
/// check, installed with `withPoll` around a chunk (Ctrl-C at the REPL), a sandboxed
/// evaluation or a macro handler (their limits), is asked between blocks of about a
/// million elements, and a kernel returns early once it says stop; the caller must then
/// raise (the Lua trampoline does, for every bound function), never hand out the
/// unfinished result. Several Lua states on several threads each stop only their own
/// kernels; a kernel's helper threads (`parallel`) carry the caller's check, and threads
/// that work for nobody's chunk (the stacker's, the server's) are never stopped.
public enum Interruption {
    final class Check {
        let poll: @Sendable () -> Bool
        init(_ poll: @escaping @Sendable () -> Bool) { self.poll = poll }
    }

    nonisolated(unsafe) static let threadKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// The calling thread's check, if one is installed.
    static var threadCheck: Check? {
        guard let p = pthread_getspecific(threadKey) else { return nil }
        return Unmanaged<Check>.fromOpaque(p).takeUnretainedValue()
    }

    static func withCheck<R>(_ check: Check?, _ body: () throws -> R) rethrows -> R {
        let previous = pthread_getspecific(threadKey)
        pthread_setspecific(threadKey, check.map { UnsafeRawPointer(Unmanaged.passUnretained($0).toOpaque()) })
        defer { pthread_setspecific(threadKey, previous) }
        return try withExtendedLifetime(check) { try body() }
    }

    /// Runs `body` with `poll` as this thread's own stop check (on top of the process-wide one).
    public static func withPoll<R>(_ poll: @escaping @Sendable () -> Bool, _ body: () throws -> R) rethrows -> R {
        try withCheck(Check(poll), body)
    }

    @inline(__always)
    static var requested: Bool { threadCheck?.poll() ?? false }

    /// Whether long work on this thread should stop (Swift code outside the kernels:
    /// waits, loops over files).
    public static var isRequested: Bool { requested }

    /// Elements between two polls (tests lower it to stop small arrays at every boundary).
    nonisolated(unsafe) static var block = 1 << 20
}

/// `body(range)` over `r` in blocks of `step`, stopping early once an interruption is
/// requested.
@inline(__always)
func interruptibly(_ r: Range<Int>, step: Int = Interruption.block, _ body: (Range<Int>) -> Void) {
    var lo = r.lowerBound
    while lo < r.upperBound {
        let hi = min(r.upperBound, lo + max(1, step))
        body(lo..<hi)
        if Interruption.requested { return }
        lo = hi
    }
}
