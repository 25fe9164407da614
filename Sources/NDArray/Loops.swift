import Dispatch

/// The one general strided loop: walks the rows (last axis) of a shape for up to three
/// operands with their own element strides (0 = broadcast), calling `row` with each
/// operand's offset of the row's first element. Kernels put their tight inner loop in
/// `row`, so contiguous rows vectorise.
@inline(__always)
func forEachRow(shape: [Int], strides: [[Int]], offsets: [Int],
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
            while true {
                row(offs, inner)
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
    DispatchQueue.concurrentPerform(iterations: n, execute: body)
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

/// Ctrl-C for long kernels. The array engine knows nothing of Lua: the runtime installs
/// `poll` (a load of the SIGINT flag), kernels ask `requested` between blocks of about a
/// million elements and return early, and the binding then raises "interrupted!" (the
/// unfinished result is never handed out).
public enum Interruption {
    nonisolated(unsafe) public static var poll: @Sendable () -> Bool = { false }

    @inline(__always)
    static var requested: Bool { poll() }

    /// Elements between two polls.
    static let block = 1 << 20
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
