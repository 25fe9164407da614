import Events
import HTTPTypes
import Hummingbird
import NIOCore

/// POST /nxlua/events: a control system (a SPEC macro calling curl, a Bluesky callback)
/// appends scan events to the journal given with --journal. The body is one event or a
/// list of them: {"kind": "point", "run": "UID", "key": "...", ...fields}; fields other
/// than kind, run and key are the event's payload. All of a request's events are
/// appended in one durable commit; the answer lists their sequence numbers.
extension Responder {
    static let maxEventsBody = 8 << 20

    func postEvents(_ c: Call, _ request: inout Request) async throws -> Response {
        guard let journal = server.journal else {
            throw ServeError(403, "this server takes no events (start it with --journal FILE)")
        }
        guard let user = c.user else { throw ServeError(403, "sending events needs an authenticated user") }
        let body: ByteBuffer
        do { body = try await request.collectBody(upTo: Responder.maxEventsBody) } catch {
            throw ServeError(413, "an events request is \(Responder.maxEventsBody >> 20) MiB at most")
        }
        let parsed: JSON
        do { parsed = try JSON.parse(Array(body.readableBytesView)) } catch {
            throw ServeError(400, "events: the body must be JSON, one event {\"kind\": ..., \"run\": ...} or a list of them: \(error)")
        }
        var items: [JSON]
        if case .array(let list) = parsed { items = list } else { items = [parsed] }
        if items.isEmpty { throw ServeError(400, "events: the list is empty") }
        var events: [NewEvent] = []
        for (i, item) in items.enumerated() {
            let which = items.count > 1 ? "event \(i + 1)" : "the event"
            guard case .object(let members) = item else { throw ServeError(400, "events: \(which) is not a JSON object") }
            guard let kindName = item["kind"]?.stringValue else { throw ServeError(400, "events: \(which) has no \"kind\" string") }
            let kind: EventKind
            do { kind = try EventKind(parsing: kindName) } catch let e as EventError { throw ServeError(400, "events: \(which): \(e.message)") }
            let run: String
            if let r = item["run"]?.stringValue, !r.isEmpty { run = r } else if kind == .runStart { run = makeRunUID() } else {
                throw ServeError(400, "events: \(which) (\(kindName)) has no \"run\" uid")
            }
            var payload: [String: EventValue] = [:]
            for m in members where !["kind", "run", "key"].contains(m.key) { payload[m.key] = Responder.eventValue(m.value) }
            // the sender's current folder is unknown here: a relative file cannot be resolved
            if case .string(let f)? = payload["file"], !f.hasPrefix("/") {
                throw ServeError(400, "events: \(which): \"file\" must be an absolute path on the server's host, not '\(f)' (macros run in other folders)")
            }
            events.append(NewEvent(kind: kind, run: run, payload: payload, key: item["key"]?.stringValue, source: "http:\(user)"))
        }
        let appended = events
        let seqs: [Int64?]
        do {
            seqs = try await server.journalPool.runIfActive { try journal.append(appended) }
        } catch let e as EventError {
            throw ServeError(503, "events: \(e.message)")
        }
        let results: [JSON] = zip(events, seqs).map { e, s in
            .obj(["seq": s.map { .int(Int64($0)) } ?? .null, "run": .string(e.run), "duplicate": .bool(s == nil)])
        }
        return json(.obj(["events": .array(results)]), c, status: 201)
    }

    static func eventValue(_ j: JSON) -> EventValue {
        switch j {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(Int(i))
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .array(let a): return .array(a.map(eventValue))
        case .object(let m): return .object(Dictionary(m.map { ($0.key, eventValue($0.value)) }, uniquingKeysWith: { _, b in b }))
        }
    }
}
