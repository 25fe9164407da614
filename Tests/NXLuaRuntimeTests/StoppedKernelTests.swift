import Foundation
import XCTest
@testable import LuaBridge
@testable import NDArray
@testable import NXLuaRuntime

/// A kernel stopped early (Ctrl-C, a macro's or an evaluation's limit) must raise: its
/// unfinished result never reaches Lua code, not even the next statement. The stop is
/// injected deterministically at each poll the kernel makes in turn.
final class StoppedKernelTests: XCTestCase {
    /// Kernels and reductions over arrays of several blocks.
    static let expressions = [
        "x:sum()", "x:sum(0)", "x:sum(1)", "x:mean()", "x:std()", "x:max()", "x:argmax()",
        "x + 1", "x * y", "x:astype('int32')", "x:cumsum()", "x:histogram(10)", "x:gt(0.5)", "x:sqrt()", "x:clip(0, 0.5)",
        "array.where(x:gt(0.5), x, y)", "x:add_(1)", "x:nansum()", "x:var(0)",
    ]
    static let setUp = "x = array.ones({3, 6000}); y = array.ones({3, 6000}) * 2; RESULT = nil"
    static let reset = "x = array.ones({3, 6000}); RESULT = 'untouched'"

    // small arrays, polled every 4096 elements: every boundary of 17 kernels in seconds
    // under ASan (a million elements per block took minutes there)
    override func setUp() { Interruption.block = 4096 }
    override func tearDown() { Interruption.block = 1 << 20 }

    /// Counts the polls a kernel makes (the caller's and its helper threads').
    final class PollCounter: @unchecked Sendable {
        let lock = NSLock()
        var count = 0
        var stopAt = Int.max
        func poll() -> Bool {
            lock.lock(); defer { lock.unlock() }
            count += 1
            if count >= stopAt { LuaInterrupt.request(); return true }
            return false
        }
    }

    func testCtrlCAtEveryPollOfEveryKernelRaises() throws {
        let rt = try Runtime()
        _ = try rt.state.run(Self.setUp)
        var checked = 0
        for expr in Self.expressions {
            // how many polls this kernel makes when nothing stops it
            let counting = PollCounter()
            rt.state.armInterrupt()
            _ = try Interruption.withPoll({ counting.poll() }) { try rt.state.run("RESULT = \(expr); RESULT = nil") }
            rt.state.disarmInterrupt()
            XCTAssertGreaterThan(counting.count, 0, "\(expr) never polls: it could not be stopped")
            for k in 1..<(counting.count + 1) {
                let stopping = PollCounter()
                stopping.stopAt = k
                _ = try rt.state.run(Self.reset)
                rt.state.armInterrupt()
                XCTAssertThrowsError(try Interruption.withPoll({ stopping.poll() }) {
                    try rt.state.run("RESULT = \(expr); AFTER = true")
                }, "\(expr) stopped at poll \(k) of \(counting.count) returned a result") { error in
                    XCTAssertTrue("\(error)".contains("interrupted!"), "\(expr): \(error)")
                }
                rt.state.disarmInterrupt()
                XCTAssertEqual(try rt.state.run("return RESULT, AFTER"), ["untouched", "nil"], "\(expr) at poll \(k)")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, Self.expressions.count)
    }

    /// A limited state (a macro handler, a sandboxed evaluation): its time limit runs
    /// out during the kernel, which then raises the limit's error, even inside pcall.
    func testATimeLimitReachedInsideAKernelRaisesTheLimit() throws {
        let limits = LuaLimits(memory: 1 << 30)
        let rt = try Runtime(limits: limits)
        _ = try rt.state.run(Self.setUp)
        for expr in Self.expressions {
            _ = try rt.state.run(Self.reset)
            nonisolated(unsafe) let watched = limits
            // armed with a deadline already behind: the first poll of the kernel sees it
            // (the chunk is shorter than the hook's period, so the hook does not fire first)
            limits.arm(rt.state, seconds: 1e-9, instructions: .max)
            XCTAssertThrowsError(try Interruption.withPoll({ watched.hasExpired }) {
                try rt.state.run("local ok = pcall(function() RESULT = \(expr) end); AFTER = ok")
            }, "\(expr) returned after its time limit") { error in
                XCTAssertTrue("\(error)".contains("time limit"), "\(expr): \(error)")
            }
            XCTAssertEqual(limits.reached, .time)
            limits.clear(rt.state)
            XCTAssertEqual(try rt.state.run("return RESULT, AFTER"), ["untouched", "nil"], expr)
        }
    }
}
