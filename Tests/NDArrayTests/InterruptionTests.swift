import Foundation
import Dispatch
@testable import NDArray
import XCTest

/// Interruption checks are per thread: one Lua state's limit (a macro's, an evaluation's)
/// stops its own kernels only, including their helper threads.
final class InterruptionTests: XCTestCase {
    func testAThreadsCheckStopsItsOwnKernelsOnly() {
        let other = DispatchSemaphore(value: 0)
        let inside = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var otherSaw = true
        Interruption.withPoll({ true }) {
            XCTAssertTrue(Interruption.requested)
            DispatchQueue.global().async {
                otherSaw = Interruption.requested
                other.signal()
            }
            other.wait()
            // helper threads of a parallel kernel carry the caller's check
            nonisolated(unsafe) var helpers = [Bool](repeating: false, count: 8)
            let lock = NSLock()
            parallel(8) { k in
                let r = Interruption.requested
                lock.lock(); helpers[k] = r; lock.unlock()
            }
            XCTAssertEqual(helpers, [Bool](repeating: true, count: 8))
            inside.signal()
        }
        inside.wait()
        XCTAssertFalse(otherSaw)
        XCTAssertFalse(Interruption.requested)   // restored after the call
    }

    func testNestedChecksRestoreTheOuterOne() {
        Interruption.withPoll({ false }) {
            Interruption.withPoll({ true }) { XCTAssertTrue(Interruption.requested) }
            XCTAssertFalse(Interruption.requested)
        }
    }
}
