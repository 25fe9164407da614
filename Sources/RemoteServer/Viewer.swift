import FolderListing
import HTTPTypes
import Hummingbird
import NDArray
import NeXus
import NIOCore
import Plot
import ViewerAssets
#if canImport(Glibc)
import Glibc
#endif

/// The web viewer of `nxlua serve` (docs/viewer.md): the page at `/` for browsers, its
/// login, and the extension routes under /nxlua/ it reads pictures and statistics from.
/// Everything else it shows comes from the HDF REST routes. Pictures are made by the Plot
/// core (same colormaps, norms, masks and max-preserving reduction as figures).
extension Responder {
    /// Content-Security-Policy of every viewer response: scripts, styles and connections
    /// from this server only, no inline script, no frames, no plugins. Style attributes
    /// are allowed (style-src-attr): dygraphs writes its legend and labels with them; they
    /// can change how the page looks, never run code.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' blob: data:; connect-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    /// Debian's libjs-dygraphs (scripts/setup installs it), served from its installed path.
    static let javascriptRoot = "/usr/share/javascript"
    static let debianScripts: [String: (file: String, type: String)] = [
        "dygraph.min.js": ("dygraphs/dygraph.min.js", "text/javascript; charset=utf-8"),
        "dygraph.min.css": ("dygraphs/dygraph.min.css", "text/css; charset=utf-8"),
    ]
    /// A header a cross-site form cannot send (no CORS is answered): cookie-authenticated
    /// POSTs must carry it.
    static let viewerHeader = HTTPField.Name("X-NXLua-Viewer")!

    static func securityHeaders(_ headers: inout HTTPFields) {
        headers[HTTPField.Name("Content-Security-Policy")!] = contentSecurityPolicy
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
    }

    /// The routes a browser reaches before logging in: the page, its scripts, login,
    /// logout and the session check. nil: not a viewer route.
    func viewerPublicRoute(_ c: Call, _ request: inout Request) async throws -> Response? {
        let s = c.segments
        // `/` without a domain, asked for by a browser: the page. HDF REST clients always
        // name a domain (or ask for JSON), and keep getting the folder as before.
        if s.isEmpty, c.method == .get || c.method == .head, c.domain == nil,
           (request.headers[.accept] ?? "").contains("text/html") {
            return asset("index.html")
        }
        guard s.first == "nxlua", s.count >= 2 else { return nil }
        switch (c.method, s[1]) {
        case (.get, "static") where s.count == 3, (.head, "static") where s.count == 3:
            guard let r = asset(s[2]) else { throw ServeError(404, "/nxlua/static/\(s[2]): no such file of the viewer") }
            return r
        case (.get, "lib") where s.count == 3, (.head, "lib") where s.count == 3:
            return try debianScript(s[2])
        case (.post, "login"):
            return try await login(c, &request)
        case (.post, "logout"):
            try requireViewerHeader(request)
            var headers = viewerHeaders("application/json; charset=utf-8")
            if let token = ViewerSessions.cookie(ViewerSessions.cookieName, in: request.headers[.cookie]) {
                server.sessions.close(token)
            }
            headers[.setCookie] = sessionCookie("", maxAge: 0)
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: JSON.obj(["user": .null]).bytes)))
        case (.get, "session"):
            // who the viewer acts as: a session, Basic credentials, or anonymous when
            // allowed; "authenticated": false (200, not 401: the page asks this first and
            // a browser logs every 401 as an error) when the login form is needed
            var headers = viewerHeaders("application/json; charset=utf-8")
            headers[.cacheControl] = "no-store"
            let user: String?
            do { user = try await authenticate(request, c) } catch let e as ServeError where e.status == 401 {
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: JSON.obj([
                    "authenticated": .bool(false), "user": .null, "reason": .string(e.message)]).bytes)))
            }
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: JSON.obj([
                "authenticated": .bool(true), "user": user.map { .string($0) } ?? .null, "anonymous": .bool(user == nil),
                "colormaps": .array(Colormap.names.map { .string($0) }),
                "max_request_size": .int(server.options.maxRequestSize),
                "catalog": .bool(server.catalog != nil),
            ]).bytes)))
        default:
            return nil
        }
    }

    /// The user of a request: its Authorization header (HTTP Basic), else a viewer
    /// session cookie, else anonymous (when allowed) or 401.
    func authenticate(_ request: Request, _ c: Call) async throws -> String? {
        let header = request.headers[.authorization]
        if header == nil || header == "", let token = ViewerSessions.cookie(ViewerSessions.cookieName, in: request.headers[.cookie]),
           let session = server.sessions.lookup(token) {
            // Cookies come with cross-site requests' bodies too (not with SameSite=Strict,
            // but older browsers): anything but a read needs the viewer's own header, and
            // the routes that change state (events) or run code (eval) take Basic only.
            if c.method != .get && c.method != .head {
                if c.segments.first == "nxlua" {
                    throw ServeError(403, "\(c.segments.joined(separator: "/")): this route takes HTTP Basic credentials, not a viewer session")
                }
                try requireViewerHeader(request)
            }
            if let user = session.user {
                guard try server.auth.knows(user) else {
                    server.sessions.close(token)
                    throw ServeError(401, "the session's user '\(user)' is no longer in the users file: log in again")
                }
                return user
            }
            if server.options.allowAnonymous { return nil }
        }
        return try await server.auth.authenticate(header, pool: server.authPool)
    }

    func requireViewerHeader(_ request: Request) throws {
        guard request.headers[Responder.viewerHeader] == "1" else {
            throw ServeError(403, "a viewer request without its X-NXLua-Viewer header (cross-site requests are refused)")
        }
    }

    func viewerHeaders(_ type: String) -> HTTPFields {
        var headers = HTTPFields()
        headers[.contentType] = type
        Responder.securityHeaders(&headers)
        return headers
    }

    func sessionCookie(_ token: String, maxAge: Int) -> String {
        "\(ViewerSessions.cookieName)=\(token); Path=/; Max-Age=\(maxAge); HttpOnly; SameSite=Strict"
            + (server.options.tlsCertificate != nil ? "; Secure" : "")
    }

    /// A file of the viewer, embedded in the binary (Sources/ViewerAssets).
    func asset(_ name: String) -> Response? {
        guard let a = ViewerAssets.file(name) else { return nil }
        var headers = viewerHeaders(a.contentType)
        headers[.cacheControl] = name == "index.html" ? "no-store" : "no-cache"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: a.bytes)))
    }

    /// A script of a Debian package, read from its installed path (never copied here).
    func debianScript(_ name: String) throws -> Response {
        guard let entry = Responder.debianScripts[name] else { throw ServeError(404, "/nxlua/lib/\(name): not a library the viewer uses") }
        let path = Responder.javascriptRoot + "/" + entry.file
        guard let text = FolderListing.readText(path) else {
            throw ServeError(404, "\(path) is missing: install Debian's libjs-dygraphs (scripts/setup does)")
        }
        var headers = viewerHeaders(entry.type)
        headers[.cacheControl] = "max-age=3600"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: Array(text.utf8))))
    }

    /// POST /nxlua/login with `user` and `password` (form or JSON): a session cookie.
    func login(_ c: Call, _ request: inout Request) async throws -> Response {
        try requireViewerHeader(request)
        guard server.sessions.allowAttempt() else { throw ServeError(429, "too many failed logins: wait a minute") }
        let body: ByteBuffer
        do { body = try await request.collectBody(upTo: 8192) } catch { throw ServeError(413, "a login request is 8 KiB at most") }
        let bytes = Array(body.readableBytesView)
        var name: String? = nil, password: String? = nil
        if (request.headers[.contentType] ?? "").hasPrefix("application/json") {
            let j: JSON
            do { j = try JSON.parse(bytes) } catch { throw ServeError(400, "login: the body is not JSON: \(error)") }
            name = j["user"]?.stringValue
            password = j["password"]?.stringValue
        } else {
            let form = try parseQuery(String(decoding: bytes, as: UTF8.self))
            name = form["user"]
            password = form["password"]
        }
        var user: String? = nil
        if let name, !name.isEmpty {
            guard let password, server.options.usersFile != nil,
                  try await server.auth.verify(name: name, password: password, pool: server.authPool) else {
                server.sessions.recordFailure()
                throw ServeError(401, "bad user name or password")
            }
            user = name
        } else if !server.options.allowAnonymous {
            throw ServeError(401, "a user name and password are needed (this server allows no anonymous access)")
        }
        let token = server.sessions.open(user: user)
        var headers = viewerHeaders("application/json; charset=utf-8")
        headers[.setCookie] = sessionCookie(token, maxAge: ViewerSessions.lifetime)
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: JSON.obj([
            "user": user.map { .string($0) } ?? .null, "anonymous": .bool(user == nil)]).bytes)))
    }

    // MARK: routes that read (authenticated as the API)

    /// GET /nxlua/plot, /nxlua/image, /nxlua/stats, /nxlua/watch, /nxlua/summary,
    /// /nxlua/colorbar, /nxlua/colormap; nil for another route.
    func viewerDataRoute(_ c: Call) async throws -> Response? {
        let s = c.segments
        guard s.count == 2, s[0] == "nxlua", c.method == .get || c.method == .head else { return nil }
        switch s[1] {
        case "plot": return try await plotRoute(c)
        case "image": return try await imageRoute(c)
        case "stats": return try await statsRoute(c)
        case "watch": return try watchRoute(c)
        case "summary": return try await summaryRoute(c)
        case "colorbar": return try colorbarRoute(c)
        case "colormap": return try colormapRoute(c)
        default: return nil
        }
    }

    func requiredDomain(_ c: Call) throws -> String {
        guard let d = c.domain, !d.isEmpty else { throw ServeError(400, "/\(c.segments.joined(separator: "/")): the domain parameter is missing (?domain=/folder/file.nxs)") }
        return d
    }

    func requiredPath(_ c: Call, _ domain: String) throws -> String {
        guard let p = c.query["path"], p.hasPrefix("/"), !p.utf8.contains(0), p.utf8.count <= 4096 else {
            throw ServeError(400, "domain '\(domain)': the path parameter is missing or not absolute (?path=/entry/data)")
        }
        return p
    }

    /// The object at `path`, walked one link at a time: soft links are followed inside
    /// the file, external links never (they may lead to any file on the server's disks;
    /// the HDF REST routes do not follow them either).
    static func node(_ d: Store.OpenDomain, _ path: String, depth: Int = 0) throws -> any NXReadableNode {
        guard depth < 16 else { throw ServeError(400, "domain '\(d.domain)': \(path): too many soft links in a row") }
        var node: any NXReadableNode = d.file.root as any NXReadableGroup
        do {
            for part in path.split(separator: "/").map(String.init) where part != "." {
                if part == ".." { node = node.parentGroup; continue }
                guard let g = node as? any NXReadableGroup else {
                    throw ServeError(404, "domain '\(d.domain)': \(path): \(node.path) is a field, not a group")
                }
                guard let e = try g.entries().first(where: { $0.name == part }) else {
                    throw ServeError(404, "domain '\(d.domain)': no object at \(path)")
                }
                switch e.link {
                case .external(let file, let target):
                    throw ServeError(403, "domain '\(d.domain)': \(path): '\(part)' is an external link (to \(file):\(target)); nxlua serve does not follow external links")
                case .soft(let target):
                    let absolute = target.hasPrefix("/") ? target : (g.path == "/" ? "" : g.path) + "/" + target
                    node = try Responder.node(d, absolute, depth: depth + 1)
                case .hard:
                    guard let next = try g.childNode(part) else { throw ServeError(404, "domain '\(d.domain)': no object at \(path)") }
                    node = next
                }
            }
        } catch let e as NeXusError {
            throw ServeError(404, "domain '\(d.domain)': \(path): \(e.message)")
        }
        return node
    }

    /// `n` when its path is reached without an external link (the NXdata rules look
    /// children up themselves), nil otherwise.
    static func inside(_ d: Store.OpenDomain, _ n: (any NXReadableField)?) -> (any NXReadableField)? {
        guard let n, (try? node(d, n.path)) != nil else { return nil }
        return n
    }

    static func describe(_ f: any NXReadableField) -> JSON {
        let units = f.stringAttribute("units")
        let longName = f.stringAttribute("long_name")
        let label = longName ?? (units.map { "\(f.name) (\($0))" } ?? f.name)
        var dtype = "?"
        if let t = try? f.elementType { if case .numeric(let d) = t { dtype = d.rawValue } else { dtype = "\(t)" } }
        return .obj(["path": .string(f.path), "shape": .array(((try? f.shape) ?? []).map { .int($0) }),
                     "dtype": .string(dtype), "label": .string(label), "units": units.map { .string($0) } ?? .null])
    }

    /// GET /nxlua/plot?domain=D&path=P: what the default plot of P is, by NeXus's rules
    /// (the @default chain, @signal, @axes, errors, a pixel_mask of the image's shape).
    func plotRoute(_ c: Call) async throws -> Response {
        let domain = try requiredDomain(c)
        let path = c.query["path"] ?? "/"
        let store = server.store
        return json(try await server.gate.run {
            let d = try store.domain(domain)
            let node = try Responder.node(d, path.isEmpty ? "/" : path)
            var group: (any NXReadableGroup)? = nil
            var signal: (any NXReadableField)? = nil
            if let g = node as? any NXReadableGroup {
                var target = g
                if g.nxclass != "NXdata" || (try? g.signalField()) == nil, let dd = try g.defaultDataGroup() {
                    guard (try? Responder.node(d, dd.path)) != nil else {
                        throw ServeError(403, "domain '\(domain)': \(path): the default data \(dd.path) is behind an external link; nxlua serve does not follow external links")
                    }
                    target = dd
                }
                // nothing to plot is an answer, not an error (the viewer asks for every group clicked)
                guard let s = Responder.inside(d, try target.signalField()) else {
                    return .obj(["domain": .string(d.domain), "group": .null, "signal": .null,
                                 "reason": .string("\(path): no NXdata with a valid signal to plot")])
                }
                group = target
                signal = s
            } else if let f = node as? any NXReadableField {
                let parent = f.parentGroup
                if parent.nxclass == "NXdata", let s = try? parent.signalField(), s.path == f.path { group = parent }
                signal = f
            }
            guard let signal else { throw ServeError(404, "domain '\(domain)': \(path): nothing to plot") }
            let shape = try signal.shape
            var axes: [JSON] = Array(repeating: .null, count: shape.count)
            var errors: JSON = .null, mask: JSON = .null, title: JSON = .null
            if let g = group {
                for (k, a) in try g.axisFields().enumerated() where k < axes.count {
                    if let a = Responder.inside(d, a) { axes[k] = Responder.describe(a) }
                }
                if let e = Responder.inside(d, try g.errorsField()) { errors = .string(e.path) }
                let image = shape.filter { $0 != 1 }.suffix(2)
                if image.count == 2, let m = g.pixelMaskField(imageShape: Array(image))?.path, (try? Responder.node(d, m)) != nil {
                    mask = .string(m)
                }
                if let t = try? g.parentGroup.childNode("title") as? any NXReadableField, (try? t.shape)?.reduce(1, *) == 1,
                   case .strings(let v, _)? = try? t.read(nil), let first = v.first { title = .string(first) }
            }
            return .obj(["domain": .string(d.domain), "group": group.map { .string($0.path) } ?? .null,
                         "signal": Responder.describe(signal), "axes": .array(axes), "errors": errors, "mask": mask,
                         "title": title, "counts": .bool(signal.stringAttribute("units")?.lowercased() == "counts")])
        }, c)
    }

    /// The 2-D image a request names: `path` (a field), `frame` (indices of the leading
    /// axes, "3" or "0,3"; 0 when absent) or `sum=a:b` (the frames a..b-1 of a 3-D
    /// field added up), and the `mask` field if given.
    struct ImageRequest: Sendable {
        let domain: String
        let path: String
        let frame: [Int]
        let sum: Range<Int>?
        let mask: String?
    }

    func imageRequest(_ c: Call) throws -> ImageRequest {
        let domain = try requiredDomain(c)
        let path = try requiredPath(c, domain)
        var frame: [Int] = []
        if let f = c.query["frame"], !f.isEmpty {
            for part in f.split(separator: ",") {
                guard let i = Int(part.trimmingSpaces), i >= 0 else { throw ServeError(400, "domain '\(domain)': \(path): frame '\(f)': non-negative integers expected (\"3\" or \"0,3\")") }
                frame.append(i)
            }
        }
        var sum: Range<Int>? = nil
        if let r = c.query["sum"], !r.isEmpty {
            let p = r.split(separator: ":", omittingEmptySubsequences: false)
            guard p.count == 2, let a = Int(p[0]), let b = Int(p[1]), a >= 0, b > a else {
                throw ServeError(400, "domain '\(domain)': \(path): sum '\(r)': a frame range a:b with 0 <= a < b expected")
            }
            sum = a..<b
        }
        let mask = c.query["mask"].flatMap { $0.isEmpty ? nil : $0 }
        if let m = mask, !m.hasPrefix("/") { throw ServeError(400, "domain '\(domain)': mask '\(m)': an absolute path expected") }
        return ImageRequest(domain: domain, path: path, frame: frame, sum: sum, mask: mask)
    }

    /// Reads the image (on the HDF5 gate) and applies the plots' mask rules.
    func readImage(_ r: ImageRequest) async throws -> (ImageData, frames: Int) {
        let store = server.store, maxBytes = server.options.maxRequestSize
        let read = try await server.gate.run { () -> GateBox<(NDArray, NDArray?, Int)> in
            let d = try store.domain(r.domain)
            guard let f = try Responder.node(d, r.path) as? any NXReadableField else {
                throw ServeError(400, "domain '\(r.domain)': \(r.path) is a group, not a field: no image to show")
            }
            let shape = try f.shape
            let lead = max(0, shape.count - 2)
            guard shape.count >= 2 else { throw ServeError(400, "domain '\(r.domain)': \(r.path) has shape \(NDArray.describe(shape)): an image needs 2 or more dimensions") }
            var items: [Selection.Item] = []
            var sumAxis = false
            if let s = r.sum {
                guard lead == 1 else { throw ServeError(400, "domain '\(r.domain)': \(r.path): sum= needs a 3-D field, not shape \(NDArray.describe(shape))") }
                guard s.upperBound <= shape[0] else { throw ServeError(400, "domain '\(r.domain)': \(r.path): sum \(s.lowerBound):\(s.upperBound) is beyond its \(shape[0]) frames") }
                items = [.range(.int(s.lowerBound), .int(s.upperBound), nil)]
                sumAxis = true
            } else {
                guard r.frame.count <= lead else { throw ServeError(400, "domain '\(r.domain)': \(r.path): frame has \(r.frame.count) indices for \(lead) leading axes of shape \(NDArray.describe(shape))") }
                let idx = r.frame + Array(repeating: 0, count: lead - r.frame.count)
                for (k, i) in idx.enumerated() {
                    guard i < shape[k] else { throw ServeError(400, "domain '\(r.domain)': \(r.path): frame \(i) is out of range (axis \(k) has \(shape[k]))") }
                    items.append(.index(.int(i)))
                }
            }
            let elementBytes: Int = { if case .numeric(let dt)? = try? f.elementType { return dt.itemSize }; return 8 }()
            let frameBytes = shape.suffix(2).reduce(1, *) * elementBytes * (r.sum?.count ?? 1)
            guard frameBytes <= maxBytes else {
                throw ServeError(413, "domain '\(r.domain)': \(r.path): \(frameBytes) bytes to read, more than max_request_size (\(maxBytes))")
            }
            guard case .array(var a) = try f.read(items.isEmpty ? nil : Selection(items + [.ellipsis])) else {
                throw ServeError(400, "domain '\(r.domain)': \(r.path) holds no numbers: no image to show")
            }
            if sumAxis { a = try a.sum(axes: [0]) }
            var mask: NDArray? = nil
            if let m = r.mask {
                guard let mf = try Responder.node(d, m) as? any NXReadableField, case .array(let ma) = try mf.read(nil) else {
                    throw ServeError(400, "domain '\(r.domain)': mask \(m) is not a numeric field")
                }
                mask = ma
            }
            return GateBox(value: (a, mask, lead == 1 ? shape[0] : 1))
        }
        var (a, maskArray, frames) = read.value
        let keep = a.shape.indices.filter { a.shape[$0] != 1 }
        if a.ndim > 2 && keep.count <= 2 { a = try a.squeezed(a.shape.indices.filter { a.shape[$0] == 1 }.prefix(a.ndim - 2).map { $0 }) }
        guard a.ndim == 2 else { throw ServeError(400, "domain '\(r.domain)': \(r.path): the selection has shape \(NDArray.describe(a.shape)), not an image") }
        var rules = MaskRules()
        if let m = maskArray {
            guard m.count == a.count else {
                throw ServeError(400, "domain '\(r.domain)': mask \(r.mask ?? "") has shape \(NDArray.describe(m.shape)), the image \(NDArray.describe(a.shape))")
            }
            let c = try m.contiguous(as: .float64)
            let p = c.base(Double.self)
            rules.pixelMask = (0..<c.count).map { p[$0] != 0 ? 1 : 0 }
            maskArray = nil
        }
        do { return (try ImageData(a, mask: rules), frames) } catch let e as PlotError {
            throw ServeError(400, "domain '\(r.domain)': \(r.path): \(e.message)")
        }
    }

    func number(_ c: Call, _ name: String) throws -> Double? {
        guard let t = c.query[name], !t.isEmpty else { return nil }
        guard let v = Double(t), v.isFinite else { throw ServeError(400, "\(name)='\(t)': a finite number expected") }
        return v
    }

    /// GET /nxlua/image: the image (or a window x0..x1, y0..y1 of it, in pixel
    /// coordinates) as a PNG of at most width x height pixels, reduced on the server by
    /// the maximum of the pixels each output pixel covers. Headers give the colour limits
    /// used and the image's shape. `format=indices`: the same pixels as colormap table
    /// indices, one byte each, then a bit mask of the bad-colour pixels when there are any
    /// (X-NXLua-Size: w,h; X-NXLua-Masked: their count), gzipped for clients that take it.
    func imageRoute(_ c: Call) async throws -> Response {
        let r = try imageRequest(c)
        let format = c.query["format"] ?? "png"
        guard format == "png" || format == "indices" else {
            throw ServeError(400, "format '\(format)': 'png' (the picture) or 'indices' (colormap table indices, one byte a pixel) expected")
        }
        let cmapName = c.query["cmap"] ?? Colormap.defaultName
        guard let cmap = Colormap.named(cmapName) else {
            throw ServeError(400, "unknown colormap '\(cmapName)' (known: \(Colormap.names.joined(separator: ", ")), each also with _r)")
        }
        let linthresh = try number(c, "linthresh") ?? 1
        guard linthresh > 0 else { throw ServeError(400, "linthresh must be positive") }
        guard let scale = Scale.named(c.query["scale"] ?? "linear", linthresh: linthresh) else {
            throw ServeError(400, "unknown scale '\(c.query["scale"] ?? "")' (linear, log, sqrt or symlog)")
        }
        var autoscale: Autoscale? = nil
        if let a = c.query["autoscale"], !a.isEmpty {
            if a == "minmax" { autoscale = .minmax } else {
                let p = a.split(separator: ",").compactMap { Double($0) }
                guard p.count == 2, p[0] >= 0, p[1] <= 100, p[0] < p[1] else {
                    throw ServeError(400, "autoscale '\(a)': 'minmax' or two percentiles 'lo,hi' (0 <= lo < hi <= 100) expected")
                }
                autoscale = .percentiles(p[0], p[1])
            }
        }
        let width = Int(try number(c, "width") ?? 1024), height = Int(try number(c, "height") ?? 1024)
        guard (1...8192).contains(width), (1...8192).contains(height) else { throw ServeError(400, "width and height: 1 to 8192 pixels") }
        let origin: Origin = c.query["origin"] == "upper" ? .upper : .lower
        let (data, frames) = try await readImage(r)
        let x0 = try number(c, "x0") ?? -0.5, x1 = try number(c, "x1") ?? Double(data.cols) - 0.5
        let y0 = try number(c, "y0") ?? -0.5, y1 = try number(c, "y1") ?? Double(data.rows) - 0.5
        guard x1 > x0, y1 > y0 else { throw ServeError(400, "the window x0 < x1, y0 < y1 is empty") }
        // never more pixels than the window holds: the browser scales up, not the server
        let w = min(width, max(1, Int((x1 - x0).rounded(.up)))), h = min(height, max(1, Int((y1 - y0).rounded(.up))))
        let layer: ImageLayer
        var body: [UInt8], headers: HTTPFields
        do {
            layer = try ImageLayer(data, colormap: cmap, scale: scale, autoscale: autoscale,
                                   vmin: try number(c, "vmin"), vmax: try number(c, "vmax"))
            layer.origin = origin
            switch format {
            case "png":
                body = try layer.tilePNG(width: w, height: h, x0: x0, x1: x1, y0: y0, y1: y1)
                headers = viewerHeaders("image/png")
            default:
                // the colormap's table indices (and a bit mask of bad pixels): the viewer
                // colours them with GET /nxlua/colormap; gzip when the client takes it
                let t = try layer.tileIndices(width: w, height: h, x0: x0, x1: x1, y0: y0, y1: y1)
                body = t.indices
                if let m = t.mask { body += m }
                headers = viewerHeaders("application/octet-stream")
                headers[HTTPField.Name("X-NXLua-Size")!] = "\(w),\(h)"
                headers[HTTPField.Name("X-NXLua-Masked")!] = "\(t.masked)"
                if c.acceptsGzip, let z = gzip(body) {
                    body = z
                    headers[.contentEncoding] = "gzip"
                }
            }
        } catch let e as PlotError { throw ServeError(400, "domain '\(r.domain)': \(r.path): \(e.message)") }
        let (lo, hi, note) = layer.limits()
        headers[.cacheControl] = "no-store"
        headers[HTTPField.Name("X-NXLua-Limits")!] = "\(lo),\(hi)"
        headers[HTTPField.Name("X-NXLua-Shape")!] = "\(data.rows),\(data.cols)"
        headers[HTTPField.Name("X-NXLua-Frames")!] = "\(frames)"
        if let note { headers[HTTPField.Name("X-NXLua-Note")!] = String(note.unicodeScalars.filter { $0.isASCII && $0.value >= 32 }) }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// GET /nxlua/colormap?cmap=NAME: the colormap's 256 colours and then the bad colour,
    /// 4 bytes each (r, g, b, a): the table the viewer colours `format=indices` images with.
    func colormapRoute(_ c: Call) throws -> Response {
        let name = c.query["cmap"] ?? Colormap.defaultName
        guard let cmap = Colormap.named(name) else {
            throw ServeError(400, "unknown colormap '\(name)' (known: \(Colormap.names.joined(separator: ", ")), each also with _r)")
        }
        let b = cmap.bad
        var headers = viewerHeaders("application/octet-stream")
        headers[.cacheControl] = "max-age=3600"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: cmap.rgba8 + [b.0, b.1, b.2, b.3])))
    }

    /// GET /nxlua/stats: count, masked count, sum, mean, min and max of a box
    /// (rows=a:b, cols=c:d, end excluded; the whole image by default) at full resolution,
    /// masked pixels left out by the plots' rules.
    func statsRoute(_ c: Call) async throws -> Response {
        let r = try imageRequest(c)
        let (data, _) = try await readImage(r)
        func range(_ name: String, _ n: Int) throws -> Range<Int> {
            guard let t = c.query[name], !t.isEmpty else { return 0..<n }
            let p = t.split(separator: ":", omittingEmptySubsequences: false)
            guard p.count == 2, let a = Int(p[0]), let b = Int(p[1]) else { throw ServeError(400, "\(name)='\(t)': a:b expected") }
            let lo = max(0, min(a, n)), hi = max(lo, min(b, n))
            return lo..<hi
        }
        let rows = try range("rows", data.rows), cols = try range("cols", data.cols)
        var count = 0, masked = 0, sum = 0.0, lo = Double.infinity, hi = -Double.infinity
        let v = data.values
        for i in rows {
            let base = i * data.cols
            for j in cols {
                let x = v[base + j]
                if x.isNaN { masked += 1; continue }
                count += 1
                sum += x
                if x < lo { lo = x }
                if x > hi { hi = x }
            }
        }
        func num(_ x: Double) -> JSON { x.isFinite ? .double(x) : .null }
        return json(.obj(["rows": .array([.int(rows.lowerBound), .int(rows.upperBound)]),
                          "cols": .array([.int(cols.lowerBound), .int(cols.upperBound)]),
                          "count": .int(count), "masked": .int(masked), "sum": num(sum),
                          "mean": count > 0 ? num(sum / Double(count)) : .null,
                          "min": count > 0 ? num(lo) : .null, "max": count > 0 ? num(hi) : .null]), c)
    }

    /// GET /nxlua/summary?domain=D&path=P: minimum, maximum, mean and count of a numeric
    /// field, NaN left out, read in blocks of rows (NeXus's streaming reader) in one pass.
    /// Fields above 8 x max_request_size are refused (the HDF5 thread would be busy with
    /// one request for too long).
    func summaryRoute(_ c: Call) async throws -> Response {
        let domain = try requiredDomain(c)
        let path = try requiredPath(c, domain)
        let store = server.store, limit = 8 * server.options.maxRequestSize
        return json(try await server.gate.run {
            let d = try store.domain(domain)
            guard let f = try Responder.node(d, path) as? any NXReadableField else {
                throw ServeError(400, "domain '\(domain)': \(path) is a group: a summary needs a numeric field")
            }
            let dtype: DType
            do { dtype = try f.numericType() } catch let e as NeXusError { throw ServeError(400, "domain '\(domain)': \(e.message)") }
            let shape = try f.shape
            let bytes = shape.reduce(1, *) * dtype.itemSize
            guard bytes <= limit else {
                throw ServeError(413, "domain '\(domain)': \(path): \(bytes) bytes to summarize, more than \(limit) (8 x max_request_size)")
            }
            var lo = Double.infinity, hi = -Double.infinity, sum = 0.0, count = 0
            func take(_ a: NDArray) throws {
                let v = try a.contiguous(as: .float64)
                let p = v.base(Double.self)
                for i in 0..<v.count where !p[i].isNaN {
                    let x = p[i]
                    count += 1
                    sum += x
                    if x < lo { lo = x }
                    if x > hi { hi = x }
                }
            }
            if shape.isEmpty {
                guard case .array(let a) = try f.read(nil) else { throw ServeError(400, "domain '\(domain)': \(path) holds no numbers") }
                try take(a)
            } else {
                try f.forEachBlock(rows: try f.blockRows(targetBytes: 16 << 20)) { _, block in try take(block) }
            }
            func num(_ x: Double) -> JSON { x.isFinite ? .double(x) : .null }
            return .obj(["path": .string(path), "shape": .array(shape.map { .int($0) }), "dtype": .string(dtype.rawValue),
                         "count": .int(count), "min": count > 0 ? num(lo) : .null, "max": count > 0 ? num(hi) : .null,
                         "mean": count > 0 ? num(sum / Double(count)) : .null])
        }, c)
    }

    /// GET /nxlua/colorbar?cmap=NAME: the colormap's 256 colours as a 256 x 1 PNG, made by
    /// the same rasterizer as the images (the viewer draws its colour bar from it).
    func colorbarRoute(_ c: Call) throws -> Response {
        let name = c.query["cmap"] ?? Colormap.defaultName
        guard let cmap = Colormap.named(name) else {
            throw ServeError(400, "unknown colormap '\(name)' (known: \(Colormap.names.joined(separator: ", ")), each also with _r)")
        }
        let ramp = try NDArray(uninitialized: [1, 256], dtype: .float64)
        let p = ramp.base(Double.self)
        for i in 0..<256 { p[i] = Double(i) }
        let png: [UInt8]
        do {
            // value i normalizes to i / 256: table index i (Colormap.index)
            let layer = try ImageLayer(try ImageData(ramp, mask: .none), colormap: cmap, scale: .linear, vmin: 0, vmax: 256)
            png = try layer.tilePNG(width: 256, height: 1, x0: -0.5, x1: 255.5, y0: -0.5, y1: 0.5)
        } catch let e as PlotError { throw ServeError(500, e.message) }
        var headers = viewerHeaders("image/png")
        headers[.cacheControl] = "max-age=3600"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: png)))
    }

    /// GET /nxlua/watch?domain=D: Server-Sent Events, one `change` event with the file's
    /// size and modification time now and whenever they change (checked every 100 ms).
    /// A stream lasts 15 s; the browser's EventSource reconnects by itself (retry 100 ms),
    /// so a stopping server never waits long for it.
    func watchRoute(_ c: Call) throws -> Response {
        let domain = try requiredDomain(c)
        let resolved: DomainResolver.Resolved
        do { resolved = try server.resolver.resolve(domain) } catch let e as DomainError { throw ServeError(e.status, e.message) }
        if resolved.isFolder { throw ServeError(400, "domain '\(resolved.domain)' is a folder, not a file") }
        let path = resolved.path
        var headers = viewerHeaders("text/event-stream")
        headers[.cacheControl] = "no-store"
        let body = ResponseBody { writer in
            var last: Store.Stamp? = nil
            let started = Store.now()
            try await writer.write(ByteBuffer(string: "retry: 100\n\n"))
            while Store.now() - started < 15 {
                let stamp = Store.stamp(path)
                if stamp != last {
                    last = stamp
                    let size = stamp.map { Int($0.size) } ?? -1
                    let text = "event: change\ndata: {\"size\": \(size), \"mtime\": \(stamp?.mtime ?? 0)}\n\n"
                    try await writer.write(ByteBuffer(string: text))
                }
                try await Task.sleep(nanoseconds: 100_000_000)
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }
}
