#if canImport(Glibc)
import Glibc
#endif
import AsyncHTTPClient
import Dispatch
import NDArray
import NIOCore
import NIOHTTP1
import NIOPosix
import RemoteServer

/// How to reach a server.
public struct RemoteOptions: Sendable {
    public var user: String?
    public var password: String?
    /// Seconds to wait for a connection, and for the next bytes of an answer.
    public var connectTimeout: Double = 10
    public var readTimeout: Double = 60
    /// Attempts of an idempotent read after a dropped connection (1 = no retry).
    public var attempts = 4
    /// Accept any TLS certificate (self-signed test servers only).
    public var insecureTLS = false
    /// Requests in flight at once when a big read is split.
    public var parallelRequests = 2
    /// Whole chunks travel as the file stores them, and are decoded here, when the
    /// server offers it (nxlua serve; see StoredChunksWire).
    public var storedChunks = true
    public init() {}
}

/// One HTTP answer.
struct HTTPReply {
    let status: Int
    let headers: HTTPHeaders
    /// The body when it was collected (not written into a caller's buffer).
    let body: [UInt8]
    /// Bytes received in all.
    let received: Int
    /// A 200 answer of whole chunks as stored (StoredChunksWire), collected in `body`.
    var storedChunks = false
}

/// The HTTP side of the client: one AsyncHTTPClient (keep-alive connections, TCP_NODELAY
/// as SwiftNIO's ClientBootstrap sets by default, TLS by NIOSSL), blocking calls for the
/// Lua thread (they wait on a future, never on an event loop), retries of reads after a
/// dropped connection, and HTTP errors as clear messages.
public final class HTTPSession: @unchecked Sendable {  // immutable after init; AHC is thread-safe
    public let baseURL: String
    public let options: RemoteOptions
    private let client: HTTPClient
    private let authorization: String?

    public init(url: String, options: RemoteOptions) throws {
        var base = url
        while base.hasSuffix("/") { base.removeLast() }
        guard base.hasPrefix("http://") || base.hasPrefix("https://"), base.count > 8 else {
            throw RemoteError("bad server address '\(url)' (http://host:port or https://host:port expected)")
        }
        baseURL = base
        self.options = options
        var config = HTTPClient.Configuration(
            certificateVerification: options.insecureTLS ? .none : .fullVerification,
            redirectConfiguration: .disallow,
            timeout: .init(connect: .milliseconds(Int64(options.connectTimeout * 1000)),
                           read: .milliseconds(Int64(options.readTimeout * 1000))),
            maximumAllowedIdleTimeInConnectionPool: .seconds(60))
        // Connection failures come back at once (a bad certificate must not wait for the
        // connect timeout); perform() retries the ones worth retrying, with pauses.
        config.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup.singleton), configuration: config)
        authorization = options.user.map {
            HTTPClient.Authorization.basic(username: $0, password: options.password ?? "").headerValue
        }
    }

    deinit { try? client.syncShutdown() }

    /// A query string from pairs (values percent-encoded).
    static func query(_ items: [(String, String)]) -> String {
        items.isEmpty ? "" : "?" + items.map { "\($0.0)=\(percentEncoded($0.1))" }.joined(separator: "&")
    }

    static func percentEncoded(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"), UInt8(ascii: "/"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [hex[Int(b >> 4)], hex[Int(b & 15)]], as: UTF8.self)
            }
        }
        return out
    }

    /// A request; `into` receives a 200 answer's body (exactly its size), or the chunks
    /// of an answer of stored chunks decoded (numbers of `elementSize` bytes).
    final class Call: @unchecked Sendable {  // all callbacks run on the task's one event loop
        let request: HTTPClient.Request
        let destination: UnsafeMutableRawBufferPointer?
        let elementSize: Int
        init(_ request: HTTPClient.Request, into destination: UnsafeMutableRawBufferPointer?, elementSize: Int = 1) {
            self.request = request
            self.destination = destination
            self.elementSize = elementSize
        }
    }

    func makeRequest(_ method: HTTPMethod, _ pathAndQuery: String, accept: String, body: [UInt8]? = nil,
                     contentType: String? = nil) throws -> HTTPClient.Request {
        var headers = HTTPHeaders()
        headers.add(name: "Accept", value: accept)
        if let authorization { headers.add(name: "Authorization", value: authorization) }
        if let contentType { headers.add(name: "Content-Type", value: contentType) }
        do {
            return try HTTPClient.Request(url: baseURL + pathAndQuery, method: method, headers: headers,
                                          body: body.map { .bytes($0) })
        } catch {
            throw RemoteError("\(baseURL)\(pathAndQuery): bad request address (\(error))")
        }
    }

    /// Starts a request (the answer arrives in the task's future).
    func start(_ call: Call) -> HTTPClient.Task<HTTPReply> {
        let delegate = Collector(destination: call.destination)
        return client.execute(request: call.request, delegate: delegate)
    }

    /// The task's answer, waited for in steps of 20 ms so that Ctrl-C at the REPL (or an
    /// evaluation's or a macro's limit: `Interruption`) stops the wait: the request is
    /// cancelled and its end awaited (nothing writes into the caller's buffer after
    /// this returns), then "interrupted" is thrown.
    func wait(_ task: HTTPClient.Task<HTTPReply>, what: String) throws -> HTTPReply {
        let done = DispatchSemaphore(value: 0)
        task.futureResult.whenComplete { _ in done.signal() }
        while done.wait(timeout: .now() + .milliseconds(20)) == .timedOut {
            if Interruption.isRequested {
                task.cancel()
                done.wait()
                throw RemoteError("\(what): interrupted")
            }
        }
        return try task.futureResult.wait()
    }

    /// Waits for an answer; idempotent requests are sent again after a dropped
    /// connection (a restarted server, a keep-alive connection closed under us), with
    /// growing pauses. `what` names the object for errors.
    func perform(_ call: Call, what: String, idempotent: Bool = true) throws -> HTTPReply {
        var pause = 0.1
        var attempt = 1
        while true {
            do {
                let reply = try wait(start(call), what: what)
                try land(reply, call, what: what)
                return reply
            } catch let e as RemoteError {
                throw e
            } catch {
                let retry = idempotent && attempt < options.attempts && HTTPSession.isDropped(error)
                if !retry { throw RemoteError("\(what): \(HTTPSession.describe(error, url: call.request.url.absoluteString, options: options))") }
                for _ in 0..<max(1, Int(pause / 0.02)) {  // a pause Ctrl-C can end
                    if Interruption.isRequested { throw RemoteError("\(what): interrupted") }
                    usleep(20_000)
                }
                pause *= 3
                attempt += 1
            }
        }
    }

    struct Dropped: Error { let reason: String }

    /// A 200 answer with a destination is complete there: its bytes arrived whole (else
    /// Dropped: the server's file changed under a streaming read, a connection cut), or
    /// its stored chunks decode into it.
    func land(_ reply: HTTPReply, _ call: Call, what: String) throws {
        guard reply.status == 200, let d = call.destination else { return }
        guard reply.storedChunks else {
            if reply.received != d.count { throw Dropped(reason: "short answer: \(reply.received) of \(d.count) bytes") }
            return
        }
        guard reply.received == reply.body.count else {
            throw RemoteError("\(what): an answer of \(reply.received) bytes of stored chunks for \(d.count) bytes of values")
        }
        let problem = reply.body.withUnsafeBytes {
            StoredChunksWire.decode($0, filters: reply.headers.first(name: StoredChunksWire.filterHeaderName),
                                   elementSize: call.elementSize, into: d)
        }
        if let problem { throw RemoteError("\(what): \(problem)") }
    }

    /// A connection that broke before a whole answer came (worth trying again).
    static func isDropped(_ error: Error) -> Bool {
        if error is Dropped { return true }
        if let e = error as? HTTPClientError { return e == .remoteConnectionClosed || e == .connectTimeout }
        if error is IOError { return true }  // ECONNRESET, EPIPE, ECONNREFUSED (server restarting)
        if let e = error as? ChannelError {
            switch e {
            case .ioOnClosedChannel, .eof, .alreadyClosed, .outputClosed: return true
            default: return false
            }
        }
        if error is NIOConnectionError { return true }
        return false
    }

    /// One sentence per cause, whatever layer (AsyncHTTPClient, NIO, the socket) saw it.
    static func describe(_ error: Error, url: String, options: RemoteOptions) -> String {
        if let e = error as? HTTPClientError {
            if e == .readTimeout { return "no answer from \(url) within \(options.readTimeout) s (read timeout)" }
            if e == .connectTimeout { return "cannot connect to \(url): no answer within \(options.connectTimeout) s (connect timeout)" }
            if e == .deadlineExceeded { return "no answer from \(url) in time" }
            if e == .remoteConnectionClosed { return "the server closed the connection before answering (\(url))" }
            if e == .cancelled { return "the request to \(url) was cancelled" }
        }
        if let d = error as? Dropped { return "\(url): the answer was cut off (\(d.reason))" }
        if let e = error as? NIOConnectionError {
            if e.dnsAError != nil || e.dnsAAAAError != nil { return "cannot connect to \(url): the name '\(e.host)' could not be resolved" }
            if let first = e.connectionErrors.first?.error { return describe(first, url: url, options: options) }
            return "cannot connect to \(url)"
        }
        if error is SocketAddressError.UnknownHost {
            return "cannot connect to \(url): the host name could not be resolved"
        }
        if let e = error as? IOError { return describe(errno: e.errnoCode, url: url) }
        if let e = error as? ChannelError {
            switch e {
            case .connectTimeout: return "cannot connect to \(url): no answer within \(options.connectTimeout) s (connect timeout)"
            case .eof, .ioOnClosedChannel, .alreadyClosed, .outputClosed, .inputClosed:
                return "the connection to \(url) was closed in the middle of the answer"
            default: break
            }
        }
        if "\(type(of: error))".contains("SSL") || "\(type(of: error))".contains("TLS") {
            return "TLS failure with \(url): \(error) (a self-signed certificate? see {insecure = true} in docs/remote.md)"
        }
        return "request to \(url) failed: \(error)"
    }

    /// The socket errors a client meets, in words.
    static func describe(errno code: Int32, url: String) -> String {
        switch code {
        case ECONNREFUSED: return "cannot connect to \(url): connection refused (is the server running on that port?)"
        case ECONNRESET, EPIPE: return "the connection to \(url) was reset in the middle of the answer"
        case ETIMEDOUT: return "cannot connect to \(url): the connection timed out"
        case EHOSTUNREACH, ENETUNREACH: return "cannot connect to \(url): no route to the host (\(String(cString: strerror(code))))"
        default: return "request to \(url) failed: \(String(cString: strerror(code))) (errno \(code))"
        }
    }

    /// Turns a non-200 answer into an error naming what was asked and why it failed.
    func check(_ reply: HTTPReply, what: String) throws {
        guard reply.status != 200 else { return }
        var message = String(decoding: reply.body.prefix(2000), as: UTF8.self)
        if let j = try? JSON.parse(reply.body), let m = j["error"]?.stringValue ?? j["message"]?.stringValue { message = m }
        message = message.split(separator: "\n").first.map(String.init) ?? ""
        let said = message.isEmpty ? "" : " (server: \(message))"
        let who = options.user.map { "user '\($0)'" } ?? "no user"
        let text: String
        switch reply.status {
        case 401: text = "401 unauthorized: bad credentials for \(who) on \(baseURL)\(said)"
        case 403: text = "403 forbidden: \(who) may not read this\(said)"
        case 404: text = "404 not found: no such domain or object\(said)"
        case 413: text = "413 too big: the server refuses a request this large\(said)"
        case 400: text = "400 bad request\(said)"
        default: text = "HTTP \(reply.status)\(said)"
        }
        throw RemoteError("\(what): \(text)", status: reply.status)
    }

    // MARK: the calls the tree makes

    /// GET returning JSON.
    public func getJSON(_ pathAndQuery: String, what: String) throws -> JSON {
        let reply = try perform(Call(try makeRequest(.GET, pathAndQuery, accept: "application/json"), into: nil), what: what)
        try check(reply, what: what)
        do { return try JSON.parse(reply.body) } catch {
            throw RemoteError("\(what): the server's answer is not JSON (\(error))")
        }
    }

    /// POST a JSON body; the reply as it came (status checked).
    func postJSON(_ pathAndQuery: String, body: JSON, accept: String, what: String) throws -> HTTPReply {
        let req = try makeRequest(.POST, pathAndQuery, accept: accept, body: body.bytes, contentType: "application/json")
        let reply = try perform(Call(req, into: nil), what: what, idempotent: false)
        try check(reply, what: what)
        return reply
    }

    /// GETs binary values into `destination` (exactly its size), several requests in
    /// flight; numbers of `elementSize` bytes (for answers of stored chunks).
    func getBinary(_ parts: [(pathAndQuery: String, destination: UnsafeMutableRawBufferPointer)], elementSize: Int = 1,
                   what: String) throws {
        let calls = try parts.map {
            Call(try makeRequest(.GET, $0.pathAndQuery, accept: "application/octet-stream"), into: $0.destination, elementSize: elementSize)
        }
        if calls.count == 1 {
            let reply = try perform(calls[0], what: what)
            try check(reply, what: what)
            return
        }
        // A window of requests in flight; each answer is checked (and retried alone) in order.
        var inFlight: [(Int, HTTPClient.Task<HTTPReply>)] = []
        var next = 0
        func launch() {
            while next < calls.count && inFlight.count < max(1, options.parallelRequests) {
                inFlight.append((next, start(calls[next])))
                next += 1
            }
        }
        launch()
        var failure: Error?
        while !inFlight.isEmpty {
            let (i, task) = inFlight.removeFirst()
            if failure == nil {
                do {
                    var reply: HTTPReply
                    do {
                        reply = try wait(task, what: what)
                        try land(reply, calls[i], what: what)
                    } catch let e as RemoteError { throw e } catch {
                        guard HTTPSession.isDropped(error) else {
                            throw RemoteError("\(what): \(HTTPSession.describe(error, url: calls[i].request.url.absoluteString, options: options))")
                        }
                        reply = try perform(calls[i], what: what)
                    }
                    try check(reply, what: what)
                } catch {
                    failure = error
                }
                if failure == nil { launch() }
            } else {
                task.cancel()  // after a failure or Ctrl-C: the rest is not wanted
                _ = try? task.futureResult.wait()  // nothing may still write into the caller's buffer
            }
        }
        if let failure { throw failure }
    }
}

/// Collects an answer: a 200 answer with a destination is copied into it as it arrives
/// (no second copy of big values), anything else into a byte array (at most 64 MiB).
final class Collector: HTTPClientResponseDelegate, @unchecked Sendable {  // one event loop
    typealias Response = HTTPReply
    let destination: UnsafeMutableRawBufferPointer?
    private var status = 0
    private var headers = HTTPHeaders()
    private var body: [UInt8] = []
    private var received = 0
    private var storedChunks = false

    init(destination: UnsafeMutableRawBufferPointer?) { self.destination = destination }

    func didReceiveHead(task: HTTPClient.Task<HTTPReply>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        status = Int(head.status.code)
        headers = head.headers
        // stored chunks are collected, and decoded into the destination by the caller
        storedChunks = status == 200 && destination != nil
            && (head.headers.first(name: "Content-Type") ?? "").hasPrefix(StoredChunksWire.contentType)
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<HTTPReply>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        let n = buffer.readableBytes
        if status == 200, !storedChunks, let d = destination {
            if received + n <= d.count {
                buffer.withUnsafeReadableBytes { src in
                    (d.baseAddress! + received).copyMemory(from: src.baseAddress!, byteCount: n)
                }
            }
        } else if body.count + n <= max(64 << 20, 2 * (destination?.count ?? 0)) {
            body.append(contentsOf: buffer.readableBytesView)
        }
        received += n
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didFinishRequest(task: HTTPClient.Task<HTTPReply>) throws -> HTTPReply {
        HTTPReply(status: status, headers: headers, body: body, received: received, storedChunks: storedChunks)
    }
}
