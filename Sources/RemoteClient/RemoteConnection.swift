import NDArray
import NeXus
import RemoteServer

/// A server of the HDF REST API (nxlua serve or HSDS): open files, list folders, run
/// code next to the data (nxlua serve --allow-eval).
public final class RemoteConnection: @unchecked Sendable {
    public let session: HTTPSession

    public init(url: String, options: RemoteOptions) throws {
        session = try HTTPSession(url: url, options: options)
    }

    public var url: String { session.baseURL }

    /// Opens a domain ("/data/sample.nxs") read-only; the root group.
    public func load(_ domain: String, eagerLimit: Int = 1000) throws -> RemoteGroup {
        try RemoteFile(session: session, domain: domain, eagerLimit: eagerLimit).root
    }

    /// One entry of a folder listing.
    public struct Listing: Sendable {
        public let name: String
        /// "folder" or "domain".
        public let kind: String
        public let lastModified: Double?
        public let size: Int?
    }

    /// The files and subfolders of a folder ("/", "/run12/").
    public func list(_ folder: String) throws -> [Listing] {
        var f = folder.hasPrefix("/") ? folder : "/" + folder
        if !f.hasSuffix("/") { f += "/" }
        let what = "\(session.baseURL): folder '\(f)'"
        let j = try session.getJSON("/domains" + HTTPSession.query([("domain", f), ("verbose", "1")]), what: what)
        guard case .array(let items)? = j["domains"] else { throw RemoteError("\(what): the answer has no domain list") }
        return items.map { d in
            Listing(name: d["name"]?.stringValue ?? "?", kind: d["class"]?.stringValue ?? "domain",
                    lastModified: d["lastModified"]?.doubleValue,
                    size: (d["size"] ?? d["total_size"] ?? d["allocated_bytes"])?.intValue)
        }
    }

    /// Waits until the file `domain` differs from `version` (nxlua serve's GET /nxlua/wait):
    /// at once when `version` is nil or old, else when the file changes or after `timeout`
    /// seconds (at most 60, and less than the connection's read timeout). Returns the
    /// file's version now and whether it differs. `refreshing`: fields of that file (the
    /// frame status first, then the data) whose shape and small value come with a changed
    /// answer, from the state the version names: one round trip instead of one more per field.
    public func wait(_ domain: String, since version: String?, timeout: Double,
                     refreshing fields: [RemoteField] = []) throws -> (version: String, changed: Bool) {
        let what = "\(session.baseURL): wait for a change of '\(domain)'"
        guard timeout.isFinite, timeout >= 0 else { throw RemoteError("\(what): the timeout must be a number of seconds >= 0") }
        let seconds = min(timeout, 60, max(0, session.options.readTimeout - 1))
        var items = [("domain", domain), ("timeout", "\(seconds)")]
        if let version { items.append(("since", version)) }
        let named = domain.hasPrefix("/") ? domain : "/" + domain
        for f in fields where f.file.domain != named || f.file.session !== session {
            throw RemoteError("\(what): \(f.location): \(f.path) is not a field of this file on this server")
        }
        if !fields.isEmpty { items.append(("refresh", fields.map(\.id).joined(separator: ","))) }
        let j: JSON
        do {
            j = try session.getJSON("/nxlua/wait" + HTTPSession.query(items), what: what)
        } catch let e as RemoteError where e.status == 404 && !e.message.contains("domain '") {  // no such route: HSDS, an older nxlua serve
            throw RemoteError("\(what): this server cannot wait for changes (nxlua serve can; HSDS cannot): poll with refresh()", status: 404)
        }
        guard let now = j["version"]?.stringValue, case .bool(let changed)? = j["changed"] else {
            throw RemoteError("\(what): the answer has no version")
        }
        if changed, !fields.isEmpty {
            guard case .object? = j["datasets"] else {
                throw RemoteError("\(what): the answer has no datasets (a server that cannot refresh fields with a wait: call refresh() on them)")
            }
            for f in fields {
                guard let d = j["datasets"]?[f.id] else { throw RemoteError("\(what): the answer does not describe \(f.path)") }
                f.adopt(d)
            }
        }
        return (now, changed)
    }

    /// What an evaluation returns.
    public enum Result: Sendable {
        case json(JSON)
        case array(NDArray)
    }

    /// Runs Lua `code` on the server with `args` (its `...`); one array comes back binary.
    public func evaluate(_ code: String, args: JSON) throws -> Result {
        let what = "\(session.baseURL): remote eval"
        let reply: HTTPReply
        do {
            reply = try session.postJSON("/nxlua/eval", body: .obj(["code": .string(code), "args": args]),
                                         accept: "application/octet-stream, application/json", what: what)
        } catch let e as RemoteError where e.status == 400 {
            // the chunk's own error: shown as the server gave it
            throw RemoteError(e.message.replacingFirst("400 bad request (server: ", with: "").dropLastParen(), status: 400)
        }
        let type = reply.headers.first(name: "Content-Type") ?? ""
        if type.hasPrefix("application/octet-stream") {
            guard let name = reply.headers.first(name: "X-NXLua-DType"), let dtype = DType(name: name) else {
                throw RemoteError("\(what): a binary answer without a known X-NXLua-DType")
            }
            let shapeText = reply.headers.first(name: "X-NXLua-Shape") ?? ""
            let shape = shapeText.split(separator: ",").compactMap { Int(String($0.filter { $0 != " " })) }
            let a: NDArray
            do { a = try NDArray(uninitialized: shape, dtype: dtype) } catch let e as ArrayError { throw RemoteError("\(what): \(e.message)") }
            guard reply.body.count == a.nbytes else {
                throw RemoteError("\(what): \(reply.body.count) bytes for an array of \(a.nbytes)")
            }
            reply.body.withUnsafeBytes { a.storage.bytes.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            return .array(a)
        }
        do {
            let j = try JSON.parse(reply.body)
            return .json(j["result"] ?? .null)
        } catch {
            throw RemoteError("\(what): the answer is not JSON (\(error))")
        }
    }
}

extension String {
    func replacingFirst(_ a: String, with b: String) -> String {
        guard let r = range(of: a) else { return self }
        return String(self[..<r.lowerBound]) + b + String(self[r.upperBound...])
    }
    func dropLastParen() -> String { hasSuffix(")") ? String(dropLast()) : self }
    private func range(of s: String) -> Range<String.Index>? {
        guard !s.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(s) { return i..<index(i, offsetBy: s.count) }
            i = index(after: i)
        }
        return nil
    }
}

