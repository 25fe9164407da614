@testable import Events
import Foundation
import XCTest

final class EventsTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "/events-tests-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    func point(_ run: String, _ i: Int, key: String? = nil) -> NewEvent {
        NewEvent(kind: .point, run: run, payload: ["i": .int(i), "motor": .double(Double(i) / 2)], key: key, source: "test")
    }

    func testAppendReadsBackInOrderWithPayloads() throws {
        let j = try SQLiteJournal(path: dir + "/j.sqlite")
        XCTAssertEqual(try j.lastSeq(), 0)
        let first = try j.append((0..<3).map { point("r1", $0) })
        let second = try j.append([NewEvent(kind: .runStop, run: "r1", payload: ["status": .string("success"),
                                                                                 "values": .array([.int(1), .null, .object(["a": .bool(true)])])],
                                            source: "test")])
        XCTAssertEqual(first, [1, 2, 3])
        XCTAssertEqual(second, [4])
        let all = try j.events(after: 0, limit: 100)
        XCTAssertEqual(all.map(\.seq), [1, 2, 3, 4])
        XCTAssertEqual(all[1].payload["i"], .int(1))
        XCTAssertEqual(all[1].payload["motor"], .double(0.5))
        XCTAssertEqual(all[3].payload["values"], .array([.int(1), .null, .object(["a": .bool(true)])]))
        // the cursor is exclusive and the limit bounds a batch
        XCTAssertEqual(try j.events(after: 1, limit: 2).map(\.seq), [2, 3])
        XCTAssertEqual(try j.events(after: 4, limit: 10).count, 0)
    }

    func testIdempotencyKeysMakeRetriesHarmless() throws {
        let j = try SQLiteJournal(path: dir + "/j.sqlite")
        XCTAssertEqual(try j.append([point("r", 0, key: "r/p0"), point("r", 1, key: "r/p1")]), [1, 2])
        // a source retrying a batch after a crash: the journaled ones are skipped
        XCTAssertEqual(try j.append([point("r", 1, key: "r/p1"), point("r", 2, key: "r/p2")]), [nil, 3])
        XCTAssertEqual(try j.lastSeq(), 3)   // no gap left by the duplicate
        // twice in one batch: the second is the duplicate
        XCTAssertEqual(try j.append([point("r", 3, key: "r/p3"), point("r", 3, key: "r/p3")]), [4, nil])
    }

    func testAnotherConnectionSeesCommittedEventsAndReopenKeepsThem() throws {
        let path = dir + "/j.sqlite"
        var writer: SQLiteJournal? = try SQLiteJournal(path: path)
        let reader = try SQLiteJournal(path: path, durable: false)
        try writer!.append([point("r", 0)])
        XCTAssertEqual(try reader.events(after: 0, limit: 10).count, 1)
        try writer!.append((1..<1000).map { point("r", $0) })
        XCTAssertEqual(try reader.lastSeq(), 1000)
        writer = nil   // dropped without any goodbye, as a killed process would
        let again = try SQLiteJournal(path: path)
        XCTAssertEqual(try again.append([point("r", 1000)]), [1001])
        XCTAssertEqual(try reader.events(after: 995, limit: 10).map(\.seq), [996, 997, 998, 999, 1000, 1001])
    }

    func testCursorsAndRecords() throws {
        let j = try SQLiteJournal(path: dir + "/j.sqlite", durable: false)
        try j.append((0..<5).map { point("r", $0) })
        XCTAssertNil(try j.cursor(of: "m"))
        // events 1, 2 skipped, 3 started, then the process dies before finishing it
        XCTAssertEqual(try j.begin(macro: "m", seq: 3, version: "v1"), 1)
        XCTAssertNil(try j.cursor(of: "m"))
        // after a restart: delivered again, attempt 2, recorded with the skipped ones
        let reopened = try SQLiteJournal(path: dir + "/j.sqlite", durable: false)
        XCTAssertEqual(try reopened.begin(macro: "m", seq: 3, version: "v1"), 2)
        try reopened.finish(macro: "m", outcome: MacroRecord(macro: "m", seq: 3, status: .failed, version: "v1", error: "boom", attempts: 2),
                            skipped: [1, 2], version: "v1", cursor: 3)
        XCTAssertEqual(try reopened.cursor(of: "m"), 3)
        let recs = try reopened.records(of: "m")
        XCTAssertEqual(recs.map(\.seq), [1, 2, 3])
        XCTAssertEqual(recs.map(\.status), [.skipped, .skipped, .failed])
        XCTAssertEqual(recs[2].error, "boom")
        XCTAssertEqual(recs[2].attempts, 2)
        // a cursor never moves back
        try reopened.finish(macro: "m", outcome: nil, skipped: [], version: "v1", cursor: 2)
        XCTAssertEqual(try reopened.cursor(of: "m"), 3)
        // other macros have their own
        XCTAssertNil(try reopened.cursor(of: "other"))
    }

    func testStatusRoundTrip() throws {
        let j = try SQLiteJournal(path: dir + "/j.sqlite", durable: false)
        try j.append([point("r", 0), point("r", 1)])
        try j.setCursor(of: "m", to: 1)
        let s = MacroStatus(macro: "m", path: "/x/m.lua", version: "abc", pendingVersion: "def", cursor: 1, failures: 2,
                            totalFailures: 3, disabled: true, message: "disabled after 2", heartbeat: 10)
        try j.publish(s)
        XCTAssertEqual(try j.statuses(), [s])
    }

    func testWriterBatchesInOrderAndFlushes() throws {
        let j = try SQLiteJournal(path: dir + "/j.sqlite")
        let w = JournalWriter(sink: j) { XCTFail("unexpected log: \($0)") }
        for i in 0..<2000 { w.submit([point("r", i)]) }
        XCTAssertEqual(w.flush(), 0)
        w.close()
        let all = try j.events(after: 0, limit: 5000)
        XCTAssertEqual(all.map { $0.payload["i"]?.intValue ?? -1 }, Array(0..<2000))
    }

    func testPayloadTextRoundTrips() throws {
        let v = EventValue.object([
            "quote\"back\\slash": .string("line\nbreak\ttab\u{01}ctrl é ✓ 😀"),
            "numbers": .array([.int(-3), .double(0.1), .double(1e-300), .double(2.5e20), .double(.nan), .null, .bool(false)]),
            "nested": .object(["b": .int(2), "a": .array([])]),
        ])
        let text = v.jsonText
        let back = try JSONDecoder().decode(EventValue.self, from: Data(text.utf8))
        guard case .object(let o) = back, case .array(let nums)? = o["numbers"] else { return XCTFail(text) }
        XCTAssertEqual(o["quote\"back\\slash"], .string("line\nbreak\ttab\u{01}ctrl é ✓ 😀"))
        XCTAssertEqual(nums, [.int(-3), .double(0.1), .double(1e-300), .double(2.5e20), .null, .null, .bool(false)])
        XCTAssertEqual(o["nested"], .object(["b": .int(2), "a": .array([])]))
        XCTAssertTrue(text.contains("{\"a\":[],\"b\":2}"), text)   // keys sorted
    }

    func testValuesFromText() {
        XCTAssertEqual(EventValue(parsingText: "12"), .int(12))
        XCTAssertEqual(EventValue(parsingText: "12.5"), .double(12.5))
        XCTAssertEqual(EventValue(parsingText: "true"), .bool(true))
        XCTAssertEqual(EventValue(parsingText: "[1, \"a\"]"), .array([.int(1), .string("a")]))
        XCTAssertEqual(EventValue(parsingText: "[oops"), .string("[oops"))
        XCTAssertEqual(EventValue(parsingText: "sample A"), .string("sample A"))
        XCTAssertThrowsError(try EventKind(parsing: "frame.ready")) { e in
            XCTAssertTrue("\(e)".contains("unknown event kind 'frame.ready'"))
        }
    }

    func testHandlerKeyNamesTheRunAndRange() {
        let e = Event(seq: 9, kind: .framesReady, run: "R", payload: ["first": .int(4), "stop": .int(8), "stream": .string("detector")],
                      key: nil, source: "t", time: 0)
        XCTAssertEqual(e.handlerKey, "R/detector/4-8")
    }

    func testNotAJournalIsAClearError() throws {
        let path = dir + "/notes.txt"
        try "hello, not sqlite at all, but long enough to have a header............................................".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try SQLiteJournal(path: path)) { e in
            XCTAssertTrue("\(e)".contains("notes.txt: cannot open the event journal"), "\(e)")
        }
    }
}
