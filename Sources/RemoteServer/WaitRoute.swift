import HTTPTypes
import Hummingbird
import NIOCore
import ServiceLifecycle

/// GET /nxlua/wait?domain=D[&since=VERSION][&timeout=S]: a client following a live file
/// (a growing stack) waits here for the file to change instead of polling it. The answer
/// comes as soon as the file's version differs from `since` (at once when `since` is
/// absent or already old), else after `timeout` seconds (default 10, at most 60):
/// {"version": V, "changed": true|false, "size": bytes or -1, "mtime": seconds}.
/// A version is opaque: the file's device, inode, size and modification time ("none" if
/// the file went away; a file that is not there is 404, as on every route). The file is looked
/// at every 5 ms with stat(), which works on NFS as well; at most 256 requests wait at
/// once (503 beyond: each costs 200 stat() calls a second). A stopping server answers
/// every waiting request at once (it would otherwise wait for them to time out).
extension Responder {
    static let waitDefault = 10.0, waitLongest = 60.0, waitStep: UInt64 = 5_000_000, waitersMost = 256

    static func version(_ stamp: Store.Stamp?) -> String {
        guard let s = stamp else { return "none" }
        return "\(s.device)-\(s.inode)-\(s.size)-\(s.mtimeSeconds).\(s.mtimeNanoseconds)"
    }

    func waitRoute(_ c: Call) async throws -> Response {
        guard let domain = c.domain, !domain.isEmpty else {
            throw ServeError(400, "/nxlua/wait: the domain parameter is missing (?domain=/folder/file.nxs)")
        }
        let resolved: DomainResolver.Resolved
        do { resolved = try server.resolver.resolve(domain) } catch let e as DomainError { throw ServeError(e.status, e.message) }
        if resolved.isFolder { throw ServeError(400, "domain '\(resolved.domain)' is a folder, not a file") }
        var timeout = Responder.waitDefault
        if let t = c.query["timeout"] {
            guard let v = Double(t), v.isFinite, v >= 0 else {
                throw ServeError(400, "/nxlua/wait: timeout must be a number of seconds (0 to \(Int(Responder.waitLongest))), not '\(t)'")
            }
            timeout = min(v, Responder.waitLongest)
        }
        let since = c.query["since"]
        let admitted = server.waiters.withLockedValue { n in
            guard n < Responder.waitersMost else { return false }
            n += 1
            return true
        }
        guard admitted else {
            throw ServeError(503, "/nxlua/wait: \(Responder.waitersMost) requests are waiting already; poll instead, or try again")
        }
        defer { server.waiters.withLockedValue { $0 -= 1 } }
        let deadline = Store.now() + timeout
        var stamp = Store.stamp(resolved.path)
        while since != nil, Responder.version(stamp) == since, Store.now() < deadline, !Task.isShuttingDownGracefully {
            try await Task.sleep(nanoseconds: Responder.waitStep)
            stamp = Store.stamp(resolved.path)
        }
        let version = Responder.version(stamp)
        return json(.obj(["version": .string(version), "changed": .bool(version != since),
                          "size": .int(stamp.map { $0.size } ?? -1), "mtime": .double(stamp?.mtime ?? 0)]), c)
    }
}
