import Catalog
import CompressNIO
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NeXus
import Events
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
#if canImport(Glibc)
import Glibc
#endif

/// `nxlua serve` options (docs/remote.md).
public struct ServeOptions: Sendable {
    public var folder: String
    public var host = "0.0.0.0"
    /// 0 picks a free port (printed at start-up).
    public var port = 5101
    public var usersFile: String?
    public var allowAnonymous = false
    public var tlsCertificate: String?
    public var tlsKey: String?
    public var allowEval = false
    /// Largest response of one value read (HSDS's default); above it 413.
    public var maxRequestSize = 100 << 20
    /// Gzip binary values too when the client accepts it (JSON always is): off by
    /// default, zlib is slower than a local network for detector data.
    public var gzipBinary = false
    /// Wall time of one evaluation. A sum over a 600-frame Pilatus 2M stack took 7.7-9.7 s
    /// on a 2-core server under load; a full 3600-frame rotation is about six times that.
    public var evalTimeLimit = 120.0
    public var evalInstructionLimit = 1_000_000_000
    public var evalMemoryLimit = 256 << 20
    public var logLevel: Logger.Level = .info
    /// POST /nxlua/events appends to this event journal (nil: the route answers 403).
    public var journalPath: String?
    /// GET /nxlua/catalog answers from this catalog (a SQLite file or a postgres:// URL).
    public var catalogLocation: String?

    public init(folder: String) { self.folder = folder }
}

/// The HDF REST server (read-only subset, HSDS's protocol) over the files of a folder.
public final class RemoteServer: Sendable {
    public static let version = "0.1.0"
    let options: ServeOptions
    let resolver: DomainResolver
    let gate = HDF5Gate()
    let store: Store
    let auth: Authenticator
    /// The web viewer's logins (ViewerSessions.swift).
    let sessions = ViewerSessions()
    /// Requests waiting in GET /nxlua/wait (WaitRoute.swift), at most Responder.waitersMost.
    let waiters = NIOLockedValueBox(0)
    let evaluator: RemoteEvaluator?
    let journal: (any JournalStore)?
    let catalog: Catalog?
    /// Evaluations (POST /nxlua/eval): each thread waits for the evaluator (nxlua's runs
    /// each evaluation in a worker process, see EvaluationWorkers).
    let evalPool: NIOThreadPool
    /// Catalog queries: milliseconds each, at normal priority, never behind an evaluation.
    let queryPool: NIOThreadPool
    /// Appends of POST /nxlua/events: never queued behind evaluations (which can take
    /// minutes on a large stack).
    let journalPool: NIOThreadPool
    /// bcrypt checks run here: ~0.2 s each, off the event loops and the evaluations
    let authPool: NIOThreadPool
    let logger: Logger
    let startTime: Int
    /// JSON value reads are this many elements at most (binary ones: max_request_size).
    static let maxJSONElementCount = 4_000_000
    /// Blocks of this many bytes at most are read per gate call while streaming a value.
    let streamBlockBytes = 8 << 20

    public init(options: ServeOptions, evaluator: RemoteEvaluator?) throws {
        self.options = options
        do {
            resolver = try DomainResolver(root: options.folder)
        } catch let e as DomainError {
            throw ServeError(e.status, "cannot serve \(options.folder): \(e.message)")
        }
        var logger = Logger(label: "nxlua.serve")
        logger.logLevel = options.logLevel
        self.logger = logger
        guard options.usersFile != nil || options.allowAnonymous else {
            throw ServeError(400, "no --users FILE given: nxlua serve requires authentication (make a users file with 'nxlua serve adduser FILE NAME', or pass --allow-anonymous to serve without it)")
        }
        if let path = options.usersFile { _ = try UsersFile.load(path) }  // fail at start, not at the first request
        auth = Authenticator(usersFile: options.usersFile, allowAnonymous: options.allowAnonymous, logger: logger)
        if options.allowAnonymous, let file = options.usersFile, (try? UsersFile.load(file))?.limitsFolders == true {
            throw ServeError(400, "--allow-anonymous: \(file) limits users to folders, and an anonymous request would read everything; serve the public folder from a server of its own")
        }
        store = Store(resolver: resolver, owner: "nxlua")
        self.evaluator = options.allowEval ? evaluator : nil
        if options.allowEval && evaluator == nil { throw ServeError(400, "--allow-eval: this build has no evaluator") }
        do { journal = try options.journalPath.map { try Journals.open($0) } } catch {
            throw ServeError(400, "--journal: \(error)")
        }
        do { catalog = try options.catalogLocation.map { try Catalog(location: $0) } } catch {
            throw ServeError(400, "--catalog: \(error)")
        }
        evalPool = NIOThreadPool(numberOfThreads: 2)
        evalPool.start()
        queryPool = NIOThreadPool(numberOfThreads: 1)
        queryPool.start()
        journalPool = NIOThreadPool(numberOfThreads: 1)
        journalPool.start()
        authPool = NIOThreadPool(numberOfThreads: 2)
        authPool.start()
        startTime = Int(time(nil))
    }

    /// Serves until SIGTERM or SIGINT; `onListening` gets the bound port.
    public func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let responder = Responder(server: self)
        let server: HTTPServerBuilder
        if let cert = options.tlsCertificate, let key = options.tlsKey {
            let chain = try NIOSSLCertificate.fromPEMFile(cert).map { NIOSSLCertificateSource.certificate($0) }
            let config = TLSConfiguration.makeServerConfiguration(certificateChain: chain,
                                                                  privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            server = try .tls(.http1(), tlsConfiguration: config)
        } else if options.tlsCertificate != nil || options.tlsKey != nil {
            throw ServeError(400, "TLS needs both --tls-cert and --tls-key")
        } else {
            server = .http1()
        }
        let scheme = options.tlsCertificate != nil ? "https" : "http"
        let logger = self.logger
        let folder = resolver.root
        // TCP_NODELAY (without it small responses waited ~40 ms for delayed ACKs): NIO's
        // ServerBootstrap sets it on the listening socket, and accepted sockets inherit it.
        let app = Application(
            responder: responder, server: server,
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "nxlua/\(RemoteServer.version)"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("listening", metadata: ["url": "\(scheme)://\(channel.localAddress?.ipAddress ?? "?"):\(port)", "folder": "\(folder)"])
                onListening(port)
            },
            logger: logger)
        // Idle files are closed, so a writer can reopen them (Store.idleClose).
        let idleCloser = Task { [gate, store] in
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: 500_000_000)
                _ = try? await gate.run { store.closeIdle() }
            }
        }
        defer { idleCloser.cancel() }
        try await app.runService()  // graceful shutdown on SIGTERM and SIGINT
        try? await gate.run { [store] in store.closeAll() }
        await gate.shutdown()
        // before the pool's threads end: a worker process is killed with the thread that started it
        try? await evalPool.runIfActive { [evaluator] in evaluator?.shutdown() }
        try? await evalPool.shutdownGracefully()
        try? await queryPool.shutdownGracefully()
        try? await journalPool.shutdownGracefully()
        try? await authPool.shutdownGracefully()
        logger.info("stopped")
    }

    var limitsJSON: JSON {
        .obj(["min_chunk_size": .int(1 << 20), "max_chunk_size": .int(4 << 20), "max_request_size": .int(options.maxRequestSize)])
    }
}

// MARK: - requests

/// A parsed request: path segments, query parameters (decoded), headers we use.
struct Call: Sendable {
    let method: HTTPRequest.Method
    let segments: [String]
    let query: [String: String]
    let acceptsBinary: Bool
    let acceptsGzip: Bool
    /// The authenticated user; nil for an anonymous request (--allow-anonymous).
    var user: String? = nil
    /// What the user may read (the users file's folders).
    var access = FolderAccess.nothing
    /// Sent by the web viewer's scripts (X-NXLua-Viewer): its 401s ask for no Basic
    /// credentials (the browser would pop up its own password dialog).
    var fromViewer = false

    func flag(_ name: String) -> Bool {
        guard let v = query[name]?.lowercased() else { return false }
        return v == "1" || v.hasPrefix("t") || v == "yes"
    }

    var domain: String? { query["domain"] ?? query["host"] }
}

/// Decodes `application/x-www-form-urlencoded` query text ('+' is a space).
func parseQuery(_ text: String?) throws -> [String: String] {
    var out: [String: String] = [:]
    guard let text, !text.isEmpty else { return out }
    for pair in text.split(separator: "&") {
        let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        let key = try percentDecode(String(kv[0]))
        let value = kv.count > 1 ? try percentDecode(String(kv[1])) : ""
        if out[key] == nil { out[key] = value }  // the first wins, as HSDS does
    }
    return out
}

func percentDecode(_ s: String) throws -> String {
    var bytes: [UInt8] = []
    var it = Array(s.utf8)[...]
    while let b = it.popFirst() {
        if b == UInt8(ascii: "+") { bytes.append(0x20); continue }
        guard b == UInt8(ascii: "%") else { bytes.append(b); continue }
        guard it.count >= 2, let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) else {
            throw ServeError(400, "malformed percent-encoding in the query")
        }
        it = it.dropFirst(2)
        bytes.append(v)
    }
    guard let text = String(validating: bytes, as: UTF8.self) else { throw ServeError(400, "the query is not valid UTF-8") }
    return text
}

struct Responder: HTTPResponder {
    typealias Context = BasicRequestContext
    let server: RemoteServer

    func respond(to request: Request, context: BasicRequestContext) async throws -> Response {
        let started = DispatchTimeLike.now()
        var request = request
        var call: Call? = nil
        let response: Response
        do {
            let path = request.uri.path
            let segments = path.split(separator: "/").map(String.init)
            let accept = request.headers[.accept] ?? ""
            let encodings = request.headers[.acceptEncoding] ?? ""
            var c = Call(method: request.method, segments: segments, query: try parseQuery(request.uri.query),
                         acceptsBinary: accept.contains("application/octet-stream"),
                         acceptsGzip: encodings.lowercased().contains("gzip"))
            c.fromViewer = request.headers[Responder.viewerHeader] == "1"
            call = c
            if segments == ["about"] && c.method == .get {
                response = try await about(c, request)
            } else if let viewer = try await viewerPublicRoute(c, &request) {
                response = viewer  // the web viewer's page, scripts and login (Viewer.swift)
            } else {
                c.user = try await authenticate(request, c)
                c.access = try server.auth.access(for: c.user)
                call = c
                if let domain = c.domain {
                    do { try server.resolver.check(domain, c.access, user: c.user) } catch let e as DomainError { throw ServeError(e.status, e.message) }
                }
                response = try await route(c, &request)
            }
        } catch let e as ServeError {
            response = errorResponse(e.status, e.message, call)
        } catch let e as SelectionError {
            response = errorResponse(400, e.message, call)
        } catch let e as DomainError {
            response = errorResponse(e.status, e.message, call)
        } catch let e as NeXusError {
            response = errorResponse(500, e.message, call)
        } catch let e as HTTPError {
            response = errorResponse(Int(e.status.code), e.body ?? "\(e.status)", call)
        } catch {
            response = errorResponse(500, "\(error)", call)
        }
        server.logger.info("request", metadata: [
            "method": "\(request.method)", "path": "\(request.uri.path)", "domain": "\(call?.domain ?? "-")",
            "user": "\(call?.user ?? "-")", "status": "\(response.status.code)", "ms": "\(started.millisecondsSince())",
        ])
        return response
    }

    func errorResponse(_ status: Int, _ message: String, _ call: Call?) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        if status == 401, call?.fromViewer != true { headers[.wwwAuthenticate] = "Basic realm=\"nxlua\"" }
        if status == 405 { headers[.allow] = "GET, HEAD, POST" }
        let body = JSON.obj(["error": .string(message), "status": .int(status)]).bytes
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    func json(_ value: JSON, _ call: Call, status: Int = 200) -> Response {
        var bytes = value.bytes
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        if call.acceptsGzip, bytes.count >= 1024, let z = gzip(bytes) {
            bytes = z
            headers[.contentEncoding] = "gzip"
        }
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    func gzip(_ bytes: [UInt8]) -> [UInt8]? {
        var input = ByteBuffer(bytes: bytes)
        guard let out = try? input.compress(with: .gzip(configuration: .init(compressionLevel: 1))) else { return nil }
        return Array(out.readableBytesView)
    }

    // MARK: routes

    func about(_ c: Call, _ request: Request) async throws -> Response {
        json(.obj(["start_time": .int(server.startTime), "state": .string("READY"), "hsds_version": .string("1.0.2"),
                   "name": .string("nxlua serve"), "about": .string("nxlua \(RemoteServer.version): the read-only HDF REST API over NeXus/HDF5 files"),
                   "greeting": .string("Welcome to nxlua serve"), "node_count": .int(1),
                   "limits": server.limitsJSON, "eval": .bool(server.evaluator != nil)]), c)
    }

    func route(_ c: Call, _ request: inout Request) async throws -> Response {
        let s = c.segments
        switch c.method {
        case .get, .head: break
        case .post:
            if s.count == 3, s[0] == "datasets", s[2] == "value" { return try await postValue(c, &request) }
            if s == ["nxlua", "eval"] { return try await eval(c, &request) }
            if s == ["nxlua", "events"] { return try await postEvents(c, &request) }
            throw ServeError(405, "\(c.method) \(request.uri.path): nxlua serve is read-only (POST only reads values: /datasets/{id}/value)")
        default:
            throw ServeError(405, "\(c.method) \(request.uri.path): nxlua serve is read-only")
        }
        if s.isEmpty { return try await domainRoute(c) }
        if s == ["domains"] { return try await folderRoute(c) }
        if s == ["nxlua", "catalog"] { return try await catalogRoute(c) }
        if s == ["nxlua", "wait"] { return try await waitRoute(c) }
        if let viewer = try await viewerDataRoute(c) { return viewer }
        if s.first == "nxlua" { throw ServeError(404, "\(request.uri.path): unknown nxlua route") }
        guard let domain = c.domain else { throw ServeError(400, "\(request.uri.path): the domain parameter is missing (?domain=/folder/file.nxs)") }
        let store = server.store
        switch s.count {
        case 2 where s[0] == "groups":
            let id = s[1]
            let includeLinks = c.flag("include_links"), includeAttrs = c.flag("include_attrs")
            return json(try await server.gate.run {
                let d = try store.domain(domain)
                return try store.groupJSON(try store.node(id, in: d, expecting: .group) as! NXGroup, d,
                                           includeLinks: includeLinks, includeAttributes: includeAttrs)
            }, c)
        case 2 where s[0] == "datasets":
            let id = s[1]
            let includeAttrs = c.flag("include_attrs")
            return json(try await server.gate.run {
                let d = try store.domain(domain)
                return try store.datasetJSON(try store.node(id, in: d, expecting: .dataset) as! NXField, d, includeAttributes: includeAttrs)
            }, c)
        case 3 where s[0] == "groups" && s[2] == "links":
            let id = s[1]
            return json(try await server.gate.run {
                let d = try store.domain(domain)
                return try store.linksJSON(try store.node(id, in: d, expecting: .group) as! NXGroup, d)
            }, c)
        case 4 where s[0] == "groups" && s[2] == "links":
            let id = s[1], name = try percentDecode(s[3])
            return json(try await server.gate.run {
                let d = try store.domain(domain)
                return try store.linkJSON(named: name, in: try store.node(id, in: d, expecting: .group) as! NXGroup, d)
            }, c)
        case 3 where (s[0] == "groups" || s[0] == "datasets") && s[2] == "attributes":
            let id = s[1], kind: ObjectID.Kind = s[0] == "groups" ? .group : .dataset
            return json(try await server.gate.run {
                let d = try store.domain(domain)
                return try store.attributeListJSON(try store.node(id, in: d, expecting: kind), d)
            }, c)
        case 4 where (s[0] == "groups" || s[0] == "datasets") && s[2] == "attributes":
            let id = s[1], kind: ObjectID.Kind = s[0] == "groups" ? .group : .dataset, name = try percentDecode(s[3])
            return json(try await server.gate.run {
                let d = try store.domain(domain)
                return try store.attributeJSON(named: name, of: try store.node(id, in: d, expecting: kind), d)
            }, c)
        case 3 where s[0] == "datasets" && s[2] == "value":
            return try await value(c, id: s[1], domain: domain, select: c.query["select"], points: nil)
        case 2 where s[0] == "datatypes":
            throw ServeError(404, "domain '\(domain)': no committed datatype \(s[1]) (nxlua serve does not serve named datatypes)")
        default:
            throw ServeError(404, "\(request.uri.path): no such route (nxlua serve answers the read-only HDF REST API)")
        }
    }

    func domainRoute(_ c: Call) async throws -> Response {
        let domain = c.domain ?? "/"
        let resolver = server.resolver
        let r: DomainResolver.Resolved
        do { r = try resolver.resolve(domain) } catch let e as DomainError { throw ServeError(e.status, e.message) }
        if r.isFolder {
            let st = Store.stamp(r.path)
            return json(.obj(["owner": .string("nxlua"), "class": .string("folder"),
                              "created": .double(st?.mtime ?? 0), "lastModified": .double(st?.mtime ?? 0),
                              "domain": .string(r.domain)]), c)
        }
        let store = server.store, getobjs = c.flag("getobjs"), limits = server.limitsJSON
        return json(try await server.gate.run {
            try store.domainJSON(try store.domain(domain), getobjs: getobjs, limits: limits, version: "1.0.2")
        }, c)
    }

    func folderRoute(_ c: Call) async throws -> Response {
        let r: DomainResolver.Resolved
        do { r = try server.resolver.resolve(c.domain ?? "/") } catch let e as DomainError { throw ServeError(e.status, e.message) }
        guard r.isFolder else { throw ServeError(400, "domain '\(r.domain)' is a file; /domains lists folders") }
        let limit = c.query["Limit"].flatMap { Int($0) }, marker = c.query["Marker"]
        let store = server.store
        let access = c.access
        return json(try await server.gate.run { store.folderListing(r, limit: limit, marker: marker, access: access) }, c)
    }

    // MARK: values

    func postValue(_ c: Call, _ request: inout Request) async throws -> Response {
        guard let domain = c.domain else { throw ServeError(400, "the domain parameter is missing (?domain=/folder/file.nxs)") }
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: 64 << 20)
        } catch {
            throw ServeError(413, "domain '\(domain)': a POST body is 64 MiB at most")
        }
        let bytes = Array(body.readableBytesView)
        let type = request.headers[.contentType] ?? ""
        if type.hasPrefix("application/octet-stream") {
            return try await value(c, id: c.segments[1], domain: domain, select: nil, points: bytes)
        }
        let parsed: JSON
        do { parsed = try JSON.parse(bytes) } catch { throw ServeError(400, "domain '\(domain)': the POST body is neither JSON ({\"select\": \"[...]\"} or {\"points\": [...]}) nor binary points: \(error)") }
        if let select = parsed["select"]?.stringValue { return try await value(c, id: c.segments[1], domain: domain, select: select, points: nil) }
        if case .array(let pts)? = parsed["points"] {
            // JSON points: [[i, j], ...] (or [i, ...] for one axis), as HSDS takes them
            var raw: [UInt8] = []
            for p in pts {
                let coords: [JSON]
                if case .array(let a) = p { coords = a } else { coords = [p] }
                for x in coords {
                    guard let v = x.intValue, v >= 0 else { throw ServeError(400, "domain '\(domain)': points must be non-negative integers") }
                    withUnsafeBytes(of: UInt64(v).littleEndian) { raw += $0 }
                }
            }
            return try await value(c, id: c.segments[1], domain: domain, select: nil, points: raw)
        }
        throw ServeError(400, "domain '\(domain)': the POST body needs \"select\" or \"points\"")
    }

    /// A value read: the selection is checked and sized on the gate, then read in blocks
    /// and streamed (binary), or read whole and sent as JSON.
    func value(_ c: Call, id: String, domain: String, select: String?, points: [UInt8]?) async throws -> Response {
        if c.query["query"] != nil { throw ServeError(400, "domain '\(domain)': queries (query=) are not supported by nxlua serve") }
        if c.query["fields"] != nil { throw ServeError(400, "domain '\(domain)': field subsets (fields=) are not supported by nxlua serve; read the whole records") }
        let store = server.store, maxBytes = server.options.maxRequestSize, blockBytes = server.streamBlockBytes
        let maxJSONElements = RemoteServer.maxJSONElementCount
        // nxlua's client asks for whole chunks as stored (chunks=stored) when it can decode
        // their filter; h5pyd and HSDS never do, and any other selection is read as usual
        let wantsStored = c.acceptsBinary && points == nil && c.query["chunks"] == "stored"
        struct Plan: @unchecked Sendable {
            let domain: Store.OpenDomain
            let field: NXField
            let type: NXStorageType
            let shape: [Int]
            let blocks: [[[NXRun]]?]
            let points: [[Int]]?
            let first: NXRawValues?
            /// The selection's whole chunks as stored, for a client that decodes them.
            var stored: NXStoredChunks? = nil
        }
        let plan = try await server.gate.run { () throws -> Plan in
            let d = try store.domain(domain)
            let f = try store.node(id, in: d, expecting: .dataset) as! NXField
            let type = try f.storageType()
            if let why = type.unsupportedReason { throw ServeError(400, "domain '\(domain)': \(f.path): cannot read \(why)") }
            let space = try f.dataspace()
            if let points {
                let pts = try ValueSelection.points(points, dims: space.dims)
                guard pts.count * max(type.rawSize, 1) <= maxBytes else {
                    throw ServeError(413, "domain '\(domain)': \(f.path): \(pts.count) points make more than the limit of \(maxBytes) bytes")
                }
                return Plan(domain: d, field: f, type: type, shape: [pts.count], blocks: [], points: pts, first: nil)
            }
            if space.kind != .simple {
                if let select, select != "[]" { throw ServeError(400, "domain '\(domain)': \(f.path) is scalar (or empty) and takes no select") }
                return Plan(domain: d, field: f, type: type, shape: [], blocks: [nil], points: nil, first: try f.readRaw(nil))
            }
            let sel = try select.map { try ValueSelection.parse($0, dims: space.dims) } ?? ValueSelection.all(space.dims)
            let bytes = sel.count.multipliedReportingOverflow(by: max(type.rawSize, 1))
            guard !bytes.overflow, bytes.partialValue <= maxBytes else {
                throw ServeError(413, "domain '\(domain)': \(f.path): the selection is \(sel.shape) elements of \(type.rawSize) bytes, more than max_request_size (\(maxBytes) bytes); split the request")
            }
            if wantsStored, let rows = ValueSelection.wholeRows(sel, dims: space.dims), let stored = try f.storedChunks(rows: rows) {
                return Plan(domain: d, field: f, type: type, shape: sel.shape, blocks: [], points: nil, first: nil, stored: stored)
            }
            let blocks = type.hasVariableLength ? [sel.runs]
                : split(sel, bytesPerElement: type.rawSize, blockBytes: blockBytes, chunk: (try? f.storageLayout())?.chunks)
            let first = try f.readRaw(blocks.first ?? sel.runs)
            if blocks.count > 1 { d.readsUnderWay += 1 }  // kept open until the last block (see closeIdle)
            return Plan(domain: d, field: f, type: type, shape: sel.shape, blocks: blocks, points: nil, first: first)
        }
        let gate = server.gate
        let field = GateBox(value: plan.field)
        // a read of several blocks keeps its file open until done (Store.closeIdle)
        let openDomain = GateBox(value: plan.domain), severalBlocks = plan.blocks.count > 1
        @Sendable func done() async {
            guard severalBlocks else { return }
            _ = try? await gate.run { openDomain.value.readsUnderWay -= 1; openDomain.value.lastUseTime = Store.now() }
        }
        // points: one read per point (order kept), bounded by max_request_size above
        func readPoints() async throws -> [NXRawValues] {
            guard let pts = plan.points else { return [] }
            return try await gate.run {
                try pts.map { p in try field.value.readRaw(p.map { [NXRun(start: $0, step: 1, count: 1)] }) }
            }
        }
        if !c.acceptsBinary {
            // JSON: everything read, converted here (off the gate); bounded, as a JSON
            // value costs some 40 bytes of memory per element
            let elements = plan.shape.reduce(1, *)
            guard elements <= maxJSONElements else {
                await done()
                throw ServeError(413, "domain '\(domain)': \(plan.field.path): \(elements) elements are too many for a JSON value (\(maxJSONElements) at most); ask for Accept: application/octet-stream")
            }
            var parts: [NXRawValues] = []
            if plan.points != nil { parts = try await readPoints() } else {
                if let first = plan.first { parts.append(first) }
                do {
                    for block in plan.blocks.dropFirst() {
                        parts.append(try await gate.run { try field.value.readRaw(block) })
                    }
                } catch {
                    await done()
                    throw error
                }
                await done()
            }
            let merged = merge(parts, plan.type)
            return json(.obj(["value": HDFJSON.values(merged, shape: plan.shape)]), c)
        }
        var headers = HTTPFields()
        if let stored = plan.stored {
            headers[.contentType] = StoredChunksWire.contentType
            headers[StoredChunksWire.filterHeader] = StoredChunksWire.filterText(stored.filters)
            return binary(StoredChunksWire.body(stored), headers, c, compressible: false)
        }
        headers[.contentType] = "application/octet-stream"
        if plan.points != nil || plan.type.hasVariableLength {
            let parts = plan.points != nil ? try await readPoints() : [plan.first].compactMap { $0 }
            var bytes: [UInt8] = []
            for p in parts { bytes += HDFJSON.wire(p) }
            guard bytes.count <= maxBytes else {
                throw ServeError(413, "domain '\(domain)': \(plan.field.path): \(bytes.count) bytes of strings, more than max_request_size (\(maxBytes))")
            }
            return binary(bytes, headers, c)
        }
        let total = plan.shape.reduce(1, *) * plan.type.rawSize
        if plan.blocks.count <= 1 { return binary(plan.first?.bytes ?? [], headers, c) }
        let gzipBlocks = c.acceptsGzip && server.options.gzipBinary
        if gzipBlocks { headers[.contentEncoding] = "gzip" }
        let first = plan.first?.bytes ?? []
        let rest = plan.blocks.dropFirst().map { GateBox(value: $0) }
        let body = ResponseBody(contentLength: gzipBlocks ? nil : total) { writer in
            // each block a gzip member of its own when compressing (clients read them in a row)
            do {
                try await Responder.write(gzipBlocks ? (gzip(first) ?? first) : first, to: &writer)
                for block in rest {
                    let raw = try await gate.run {
                        openDomain.value.lastUseTime = Store.now()
                        return try field.value.readRaw(block.value)
                    }
                    try await Responder.write(gzipBlocks ? (gzip(raw.bytes) ?? raw.bytes) : raw.bytes, to: &writer)
                }
            } catch {
                await done()
                throw error
            }
            await done()
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    func binary(_ bytes: [UInt8], _ headers: HTTPFields, _ c: Call, compressible: Bool = true) -> Response {
        var headers = headers, bytes = bytes
        if compressible, c.acceptsGzip, server.options.gzipBinary, bytes.count >= 1024, let z = gzip(bytes) {
            bytes = z
            headers[.contentEncoding] = "gzip"
        }
        if bytes.count <= Responder.bodyPiece {
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        // Written a piece at a time: one ByteBuffer of a whole Pilatus frame (10 MB) was
        // fresh memory at every request (malloc hands blocks that large back to the
        // kernel when freed), and its page faults were 30% of the server's CPU for a
        // client polling frames. Pieces this size are reused by malloc.
        let all = bytes
        return Response(status: .ok, headers: headers, body: ResponseBody(contentLength: all.count) { writer in
            try await Responder.write(all, to: &writer)
            try await writer.finish(nil)
        })
    }

    /// The largest piece of a binary body written as one buffer.
    static let bodyPiece = 256 << 10

    /// Writes `bytes` into a response body, bodyPiece bytes at a time (see binary).
    static func write(_ bytes: [UInt8], to writer: inout any ResponseBodyWriter) async throws {
        var start = 0
        while start < bytes.count {
            let end = min(start + bodyPiece, bytes.count)
            try await writer.write(bytes.withUnsafeBufferPointer { ByteBuffer(bytes: UnsafeBufferPointer(rebasing: $0[start..<end])) })
            start = end
        }
    }

    func merge(_ parts: [NXRawValues], _ type: NXStorageType) -> NXRawValues {
        if parts.count == 1 { return parts[0] }
        var bytes: [UInt8] = [], strings: [String] = [], count = 0
        for p in parts {
            if type.hasVariableLength {
                // re-index the string slots past the strings already merged
                var b = p.bytes
                reindex(&b, type, count: p.count, shift: Int64(strings.count))
                bytes += b
            } else {
                bytes += p.bytes
            }
            strings += p.strings
            count += p.count
        }
        return NXRawValues(type: type, count: count, bytes: bytes, strings: strings)
    }

    func reindex(_ b: inout [UInt8], _ type: NXStorageType, count: Int, shift: Int64) {
        func slots(_ t: NXStorageType, _ at: Int) -> [Int] {
            switch t {
            case .string(nil, _, _): return [at]
            case .compound(let ms): return ms.flatMap { slots($0.type, at + $0.offset) }
            default: return []
            }
        }
        let offsets = slots(type, 0)
        for e in 0..<count {
            for o in offsets {
                let at = e * type.rawSize + o
                var v: Int64 = 0
                for k in 0..<8 { v |= Int64(b[at + k]) << (8 * Int64(k)) }
                v += shift
                for k in 0..<8 { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * Int64(k))) }
            }
        }
    }

    // MARK: eval

    func eval(_ c: Call, _ request: inout Request) async throws -> Response {
        guard let evaluator = server.evaluator else {
            throw ServeError(403, "remote evaluation is disabled on this server (start it with --allow-eval)")
        }
        guard let user = c.user else { throw ServeError(403, "remote evaluation needs an authenticated user") }
        let body: ByteBuffer
        do { body = try await request.collectBody(upTo: 1 << 20) } catch { throw ServeError(413, "an evaluation request is 1 MiB at most") }
        let parsed: JSON
        do { parsed = try JSON.parse(Array(body.readableBytesView)) } catch {
            throw ServeError(400, "eval: the body must be JSON {\"code\": \"...\", \"args\": {...}}: \(error)")
        }
        guard let code = parsed["code"]?.stringValue else { throw ServeError(400, "eval: \"code\" (a string of Lua source) is missing") }
        let resolver = server.resolver
        let o = server.options
        let access = c.access
        let req = EvaluationRequest(code: code, arguments: parsed["args"] ?? .null, user: user, access: access,
                                    timeLimit: o.evalTimeLimit, instructionLimit: o.evalInstructionLimit, memoryLimit: o.evalMemoryLimit,
                                    resolveFile: EvaluationRequest.fileResolver(resolver, access, user: user))
        let result: EvaluationResult
        do {
            result = try await server.evalPool.runIfActive { try evaluator.evaluate(req) }
        } catch let e as EvaluationError {
            // messages name files by their real paths: show them as domains
            throw ServeError(400, "eval: " + replacing(resolver.root + "/", with: "/", in: e.message))
        }
        switch result {
        case .json(let v): return json(.obj(["result": v]), c)
        case .array(let dtype, let shape, let bytes):
            var headers = HTTPFields()
            headers[.contentType] = "application/octet-stream"
            headers[HTTPField.Name("X-NXLua-DType")!] = dtype
            headers[HTTPField.Name("X-NXLua-Shape")!] = shape.map(String.init).joined(separator: ",")
            return binary(bytes, headers, c)
        }
    }
}

/// `text` with every `target` replaced (no Foundation here).
func replacing(_ target: String, with replacement: String, in text: String) -> String {
    guard !target.isEmpty else { return text }
    let t = Array(target.utf8), src = Array(text.utf8)
    var out: [UInt8] = []
    out.reserveCapacity(src.count)
    var i = 0
    while i < src.count {
        if i + t.count <= src.count, src[i] == t[0], Array(src[i..<(i + t.count)]) == t {
            out += replacement.utf8
            i += t.count
        } else {
            out.append(src[i])
            i += 1
        }
    }
    return String(decoding: out, as: UTF8.self)
}

/// Splits a selection into blocks of about `blockBytes`, along the first axis that has
/// more than one element (the axes before it have one each), keeping C order.
/// A block is never smaller than one of the field's chunks (`chunk`, when chunked): a
/// block that cuts a chunk makes HDF5 decode the whole chunk again for every block, with
/// the filter plugin and under its lock (a Pilatus 2M frame, one 10 MB chunk, was decoded
/// twice per read), while a block of whole chunks is decoded natively outside the lock
/// (NXChunkDecoder).
func split(_ sel: ValueSelection, bytesPerElement: Int, blockBytes: Int, chunk: [Int]? = nil) -> [[[NXRun]]] {
    let shape = sel.shape
    guard let axis = shape.firstIndex(where: { $0 > 1 }) else { return [sel.runs] }
    let per = shape[(axis + 1)...].reduce(1, *) * max(1, bytesPerElement)
    let chunkBytes = (chunk?.reduce(1, *) ?? 0) * max(1, bytesPerElement)
    let rowsPerBlock = max(1, max(blockBytes, chunkBytes) / max(1, per))
    if rowsPerBlock >= shape[axis] { return [sel.runs] }
    var blocks: [[[NXRun]]] = []
    var current: [NXRun] = [], inBlock = 0
    for run in sel.runs[axis] {
        var start = run.start, left = run.count
        while left > 0 {
            let take = min(left, rowsPerBlock - inBlock)
            current.append(NXRun(start: start, step: run.step, count: take))
            inBlock += take
            left -= take
            start += take * run.step
            if inBlock == rowsPerBlock {
                var r = sel.runs
                r[axis] = current
                blocks.append(r)
                current = []
                inBlock = 0
            }
        }
    }
    if !current.isEmpty {
        var r = sel.runs
        r[axis] = current
        blocks.append(r)
    }
    return blocks
}

/// Wall-clock milliseconds for the request log.
struct DispatchTimeLike {
    let ns: UInt64
    static func now() -> DispatchTimeLike {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return DispatchTimeLike(ns: UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec))
    }
    func millisecondsSince() -> String {
        let d = Double(DispatchTimeLike.now().ns - ns) / 1e6
        return String(Double(Int(d * 10)) / 10)
    }
}
