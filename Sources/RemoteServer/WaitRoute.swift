import HTTPTypes
import Hummingbird
import NeXus
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
/// `&refresh=ID,ID,...` (datasets of the domain, at most 64): a changed answer also
/// carries "datasets": {ID: the dataset as GET /datasets/ID?include_attrs=1 gives it},
/// described in that order from one state of the file, whose version the answer gives.
/// A follower then learns of a commit and reads the new shapes and frame status in one
/// round trip instead of three: on a machine the stacker keeps busy, each request's
/// thread hand-offs wait for a CPU (a poll of three requests took 8 ms on an idle
/// machine, 30 ms beside two busy processes, 81 ms beside four).
extension Responder {
    static let waitDefault = 10.0, waitLongest = 60.0, waitStep: UInt64 = 5_000_000, waitersMost = 256
    static let refreshMost = 64

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
        let refresh = (c.query["refresh"] ?? "").split(separator: ",").map(String.init)
        guard refresh.count <= Responder.refreshMost else {
            throw ServeError(400, "/nxlua/wait: at most \(Responder.refreshMost) datasets to refresh, not \(refresh.count)")
        }
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
        var version = Responder.version(stamp)
        var datasets: JSON?
        if !refresh.isEmpty, version != since, stamp != nil {
            let store = server.store
            let described = try await server.gate.run { () throws -> (Store.Stamp, JSON) in
                let d = try store.domain(domain)
                var out: [JSON.Member] = []
                for id in refresh {
                    let field = try store.node(id, in: d, expecting: .dataset) as! NXField
                    out.append(.init(id, try store.datasetJSON(field, d, includeAttributes: true)))
                }
                return (d.stamp, .object(out))
            }
            stamp = described.0
            version = Responder.version(stamp)
            datasets = described.1
        }
        var answer: [JSON.Member] = [.init("version", .string(version)), .init("changed", .bool(version != since)),
                                     .init("size", .int(stamp.map { $0.size } ?? -1)), .init("mtime", .double(stamp?.mtime ?? 0))]
        if let datasets { answer.append(.init("datasets", datasets)) }
        return json(.object(answer), c)
    }
}
