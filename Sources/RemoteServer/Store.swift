import FolderListing
import NeXus
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// An HTTP status with a message naming the domain/object and what was expected.
public struct ServeError: Error, CustomStringConvertible, Sendable {
    public let status: Int
    public let message: String
    public init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }
    public var description: String { message }
}

/// The one thread that touches HDF5 and the NeXus objects of the server (HDF5's
/// thread-safe build serialises calls anyway, and NXFile/NXNode are not synchronised).
/// HTTP parsing, JSON encoding and gzip happen on the callers' threads.
public final class HDF5Gate: Sendable {
    private let pool: NIOThreadPool

    public init() {
        pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
    }

    /// Runs `body` on the HDF5 thread.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive {
            // HDF5 prints error stacks on stderr unless each thread turns that off first
            // (loads libhdf5 if needed; a no-op once done on this thread)
            NXThreads.silenceHDF5Errors()
            return try body()
        }
    }

    public func shutdown() async { try? await pool.shutdownGracefully() }
}

/// Holds a NeXus object between gate calls; only ever used on the gate's thread.
struct GateBox<T>: @unchecked Sendable {
    let value: T
}

/// The served files: open ones (reopened when they change on disk), the id index of
/// each, and the JSON the HDF REST API returns. Used only on the HDF5 gate's thread.
final class Store: @unchecked Sendable {
    let resolver: DomainResolver
    let owner: String
    let maxOpenFiles = 32
    /// Objects listed in `domain_objs` at most; above it clients fetch objects one by one.
    let maxDomainObjects = 2000
    /// Datasets at most this big (bytes) carry their values in `domain_objs`, as HSDS does.
    let inlineValueBytes = 4096

    struct Stamp: Equatable {
        let device: UInt64, inode: UInt64, size: Int64, mtimeSeconds: Int, mtimeNanoseconds: Int
        var mtime: Double { Double(mtimeSeconds) + Double(mtimeNanoseconds) / 1e9 }
    }

    final class OpenDomain {
        let domain: String
        let path: String
        let file: NXFile
        var stamp: Stamp
        /// ObjectID.domainHash of the domain, and its root's id.
        let domainHash: UInt64
        let rootID: ObjectID
        /// ObjectID.objectHash -> (path in the file, kind), filled as objects are described.
        var index: [UInt64: (path: String, kind: ObjectID.Kind)] = [:]
        /// When a request last reached it (monotonic seconds; the least recently used file
        /// is closed first), and how many multi-block reads are under way: those keep it
        /// open (see closeIdle).
        var lastUseTime = Store.now()
        var readsUnderWay = 0

        init(domain: String, path: String, file: NXFile, stamp: Stamp) {
            self.domain = domain
            self.path = path
            self.file = file
            self.stamp = stamp
            domainHash = ObjectID.domainHash(domain)
            rootID = ObjectID.root(domain: domain)
        }
    }

    private var openDomains: [String: OpenDomain] = [:]
    /// Files no request reached for this long are closed. HDF5 1.10 lets a SWMR writer
    /// open a file only while no reader holds it: a stacker restarted (to resume) while
    /// the server held its stack failed with "another process has the file open".
    let idleClose: Double = 2

    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    /// Closes the files idle for idleClose seconds with no read under way. A read that
    /// has moved no block for a minute counts as gone (a response body that was never
    /// written leaves its count behind).
    func closeIdle() {
        let now = Store.now()
        for (key, d) in openDomains where now - d.lastUseTime >= (d.readsUnderWay == 0 ? idleClose : 60) {
            try? d.file.close()
            openDomains[key] = nil
        }
        retired.removeAll { d in
            guard d.readsUnderWay == 0 || now - d.lastUseTime >= 60 else { return false }
            try? d.file.close()
            return true
        }
    }

    init(resolver: DomainResolver, owner: String) {
        self.resolver = resolver
        self.owner = owner
    }

    static func stamp(_ path: String) -> Stamp? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Stamp(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size),
                     mtimeSeconds: Int(st.st_mtim.tv_sec), mtimeNanoseconds: Int(st.st_mtim.tv_nsec))
    }

    /// Opens for reading: SWMR first (a file another process is growing), then plain.
    static func openFile(_ path: String, domain: String) throws -> NXFile {
        var swmr = NXFile.Options()
        swmr.swmr = true
        swmr.eagerLimit = 0
        if let f = try? NXFile(path: path, mode: .read, options: swmr) { return f }
        var plain = NXFile.Options()
        plain.eagerLimit = 0
        do {
            return try NXFile(path: path, mode: .read, options: plain)
        } catch let e as NeXusError {
            let why = e.message.hasPrefix(path) ? String(e.message.dropFirst(path.count)).drop { $0 == ":" || $0 == " " } : Substring(e.message)
            throw ServeError(400, "domain '\(domain)': \(why)")
        }
    }

    /// The open file of a domain; reopened when the file changed on disk since it was
    /// opened (a growing SWMR file is then served with its current shape).
    func domain(_ name: String) throws -> OpenDomain {
        let r: DomainResolver.Resolved
        do { r = try resolver.resolve(name) } catch let e as DomainError { throw ServeError(e.status, e.message) }
        if r.isFolder { throw ServeError(400, "domain '\(r.domain)' is a folder, not a file") }
        guard let stamp = Store.stamp(r.path) else { throw ServeError(404, "domain '\(r.domain)' not found") }
        if var d = openDomains[r.path] {
            if d.stamp != stamp {
                // Changed on disk: opened anew. Each SWMR reader has a file of its own in
                // HDF5 (NXFile), so the new one shows the writer's last flush even while an
                // evaluation holds the file. Not refreshed in place (H5Drefresh): so served,
                // issue 24's live scenario read wrong pixels of the newest frame once or
                // twice a run; opened anew, never in the runs since.
                // Reads streaming from the old file finish from it (retired until then).
                let fresh = OpenDomain(domain: r.domain, path: r.path, file: try Store.openFile(r.path, domain: r.domain), stamp: stamp)
                fresh.index = d.index
                retire(d)
                openDomains[r.path] = fresh
                d = fresh
            }
            d.lastUseTime = Store.now()
            return d
        }
        let d = OpenDomain(domain: r.domain, path: r.path, file: try Store.openFile(r.path, domain: r.domain), stamp: stamp)
        if openDomains.count >= maxOpenFiles,
           let oldest = openDomains.filter({ $0.value.readsUnderWay == 0 }).min(by: { $0.value.lastUseTime < $1.value.lastUseTime }) {
            try? oldest.value.file.close()
            openDomains[oldest.key] = nil
        }
        openDomains[r.path] = d
        return d
    }

    func closeAll() {
        for d in openDomains.values { try? d.file.close() }
        openDomains.removeAll()
        for d in retired { try? d.file.close() }
        retired.removeAll()
    }

    /// Files replaced on disk while reads were streaming from them.
    private var retired: [OpenDomain] = []

    private func retire(_ d: OpenDomain) {
        if d.readsUnderWay > 0 { retired.append(d) } else { try? d.file.close() }
    }

    // MARK: ids

    func id(of node: NXNode, in d: OpenDomain) throws -> ObjectID {
        if node.path == "/" { return d.rootID }
        let kind: ObjectID.Kind = node is NXField ? .dataset : .group
        let id = ObjectID.object(kind, domainHash: d.domainHash, address: try node.objectInfo().address)
        if d.index[id.objectHash] == nil { d.index[id.objectHash] = (node.path, kind) }
        return id
    }

    /// The object an id names: from the index, else after walking the whole file (ids
    /// outlive the server, so a client may bring one this process never handed out).
    func node(_ text: String, in d: OpenDomain, expecting kind: ObjectID.Kind) throws -> NXNode {
        guard let id = ObjectID(parsing: text) else {
            throw ServeError(400, "'\(text)' is not an object id (g-, d- or t- and 36 hex digits and dashes expected)")
        }
        guard id.kind == kind else {
            throw ServeError(400, "id \(text) is a \(id.collection) id, used as one of \(ObjectID(kind: kind, domainHash: id.domainHash, objectHash: id.objectHash).collection)")
        }
        guard id.domainHash == d.domainHash else {
            throw ServeError(404, "id \(text) does not belong to domain '\(d.domain)'")
        }
        if id == d.rootID { return d.file.root }
        if let found = try lookup(id, d) { return found }
        _ = try walk(d, limit: 1_000_000)
        if let found = try lookup(id, d) { return found }
        throw ServeError(404, "domain '\(d.domain)': no \(kind == .dataset ? "dataset" : "group") with id \(text)")
    }

    private func lookup(_ id: ObjectID, _ d: OpenDomain) throws -> NXNode? {
        guard let entry = d.index[id.objectHash], entry.kind == id.kind else { return nil }
        // the file may have been rewritten since: the address must still match
        if let n = try? d.file.root.resolve(entry.path), (try? self.id(of: n, in: d)) == id { return n }
        d.index[id.objectHash] = nil
        return nil
    }

    /// Every object reachable by hard links, each once, breadth first.
    func walk(_ d: OpenDomain, limit: Int) throws -> [NXNode] {
        var out: [NXNode] = [d.file.root]
        var seen: Set<UInt64> = [d.rootID.objectHash]
        var i = 0
        while i < out.count, out.count <= limit {
            defer { i += 1 }
            guard let g = out[i] as? NXGroup else { continue }
            for e in try g.entries() where e.link == .hard && e.kind != .missing {
                guard let c = try g.child(e.name) else { continue }
                let cid = try id(of: c, in: d)
                if seen.insert(cid.objectHash).inserted { out.append(c) }
            }
        }
        return out
    }

    // MARK: JSON of objects

    func times(_ node: NXNode, _ d: OpenDomain) -> (created: JSON, modified: JSON) {
        let info = try? node.objectInfo()
        let m = info.map { $0.modified > 0 ? Double($0.modified) : d.stamp.mtime } ?? d.stamp.mtime
        let c = info.map { $0.created > 0 ? Double($0.created) : m } ?? m
        return (.double(c), .double(m))
    }

    func domainJSON(_ d: OpenDomain, getobjs: Bool, limits: JSON, version: String) throws -> JSON {
        var m: [JSON.Member] = [
            .init("root", .string(d.rootID.description)),
            .init("class", .string("domain")),
            .init("owner", .string(owner)),
            .init("created", .double(d.stamp.mtime)),
        ]
        if getobjs {
            let nodes = try walk(d, limit: maxDomainObjects + 1)
            if nodes.count <= maxDomainObjects {
                var objs: [JSON.Member] = []
                for n in nodes {
                    let id = try self.id(of: n, in: d)
                    let body: JSON
                    if let g = n as? NXGroup {
                        body = try groupJSON(g, d, includeLinks: true, includeAttributes: true, summary: true)
                    } else {
                        body = try datasetJSON(n as! NXField, d, includeAttributes: true, summary: true)
                    }
                    objs.append(.init(id.description, body))
                }
                m.append(.init("domain_objs", .object(objs)))
            }
        }
        m += [
            .init("limits", limits),
            .init("compressors", .array([])),
            .init("version", .string(version)),
            .init("lastModified", .double(d.stamp.mtime)),
            .init("domain", .string(d.domain)),
        ]
        return .object(m)
    }

    /// `summary`: the form of an entry of `domain_objs` (id and times last, as h5pyd 0.24 needs them).
    func groupJSON(_ g: NXGroup, _ d: OpenDomain, includeLinks: Bool, includeAttributes: Bool, summary: Bool = false) throws -> JSON {
        let id = try self.id(of: g, in: d)
        let t = times(g, d)
        let entries = try g.entries().filter { !($0.link == .hard && $0.kind == .missing) }
        var m: [JSON.Member] = []
        if !summary {
            m += [.init("id", .string(id.description)), .init("root", .string(d.rootID.description)),
                  .init("created", t.created), .init("lastModified", t.modified),
                  .init("linkCount", .int(entries.count)),
                  .init("attributeCount", .int((try? g.objectInfo().attributeCount) ?? 0))]
        }
        if includeAttributes || summary { m.append(.init("attributes", try attributesJSON(g, d))) }
        if includeLinks || summary {
            var links: [JSON.Member] = []
            for e in entries { links.append(.init(e.name, try linkJSON(g, e, d, t.created))) }
            m.append(.init("links", .object(links)))
        }
        if summary {
            m += [.init("creationProperties", .obj([:])), .init("id", .string(id.description)),
                  .init("created", t.created), .init("lastModified", t.modified)]
        } else {
            m += [.init("domain", .string(d.domain))]
        }
        return .object(m)
    }

    /// A link as `include_links` and `domain_objs` give it.
    func linkJSON(_ g: NXGroup, _ e: NXEntry, _ d: OpenDomain, _ created: JSON) throws -> JSON {
        switch e.link {
        case .hard:
            guard let c = try g.child(e.name) else { throw ServeError(404, "domain '\(d.domain)': \(g.path): no link '\(e.name)'") }
            return .obj(["class": .string("H5L_TYPE_HARD"), "created": created, "id": .string(try id(of: c, in: d).description)])
        case .soft(let target):
            return .obj(["class": .string("H5L_TYPE_SOFT"), "created": created, "h5path": .string(target)])
        case .external(let file, let target):
            return .obj(["class": .string("H5L_TYPE_EXTERNAL"), "created": created, "h5domain": .string(file), "h5path": .string(target)])
        }
    }

    /// A link as `GET /groups/{id}/links[/{name}]` (h5pyd 0.x) gives it.
    func linkItemJSON(_ g: NXGroup, _ e: NXEntry, _ d: OpenDomain) throws -> JSON {
        var m: [JSON.Member] = [.init("title", .string(e.name))]
        switch e.link {
        case .hard:
            guard let c = try g.child(e.name) else { throw ServeError(404, "domain '\(d.domain)': \(g.path): no link '\(e.name)'") }
            let cid = try id(of: c, in: d)
            m += [.init("class", .string("H5L_TYPE_HARD")), .init("id", .string(cid.description)), .init("collection", .string(cid.collection))]
        case .soft(let target):
            m += [.init("class", .string("H5L_TYPE_SOFT")), .init("h5path", .string(target))]
        case .external(let file, let target):
            m += [.init("class", .string("H5L_TYPE_EXTERNAL")), .init("h5domain", .string(file)), .init("h5path", .string(target))]
        }
        return .object(m)
    }

    func linksJSON(_ g: NXGroup, _ d: OpenDomain) throws -> JSON {
        let t = times(g, d)
        var items: [JSON] = []
        for e in try g.entries() where !(e.link == .hard && e.kind == .missing) {
            guard case .object(var m) = try linkItemJSON(g, e, d) else { continue }
            m.insert(.init("created", t.created), at: 0)
            items.append(.object(m))
        }
        return .obj(["links": .array(items)])
    }

    func linkJSON(named name: String, in g: NXGroup, _ d: OpenDomain) throws -> JSON {
        guard let e = try g.entries().first(where: { $0.name == name }), !(e.link == .hard && e.kind == .missing) else {
            throw ServeError(404, "domain '\(d.domain)': \(g.path) has no link '\(name)'")
        }
        let t = times(g, d)
        return .obj(["link": try linkItemJSON(g, e, d), "created": t.created, "lastModified": t.created])
    }

    func datasetJSON(_ f: NXField, _ d: OpenDomain, includeAttributes: Bool, summary: Bool = false) throws -> JSON {
        let id = try self.id(of: f, in: d)
        let t = times(f, d)
        let type = try f.storageType()
        let space = try f.dataspace()
        let layout = try f.storageLayout()
        var layoutJSON: [JSON.Member]
        switch layout.kind {
        case .chunked: layoutJSON = [.init("class", .string("H5D_CHUNKED")), .init("dims", .array((layout.chunks ?? []).map { .int($0) }))]
        case .compact: layoutJSON = [.init("class", .string("H5D_COMPACT"))]
        case .virtual, .contiguous: layoutJSON = [.init("class", .string("H5D_CONTIGUOUS"))]
        }
        var m: [JSON.Member] = []
        if !summary {
            m += [.init("id", .string(id.description)), .init("root", .string(d.rootID.description))]
        }
        m += [.init("type", HDFJSON.type(type)), .init("shape", HDFJSON.shape(space))]
        if summary || includeAttributes { m.append(.init("attributes", try attributesJSON(f, d))) }
        var creation: [JSON.Member] = [.init("layout", .object(layoutJSON))]
        if case .chunked = layout.kind, let filters = try? f.storedFilters, !filters.isEmpty {
            creation.append(.init("filters", .array(filters.map(HDFJSON.filter))))
        }
        m.append(.init("creationProperties", .object(creation)))
        // A few KB of values travel with the description, read in the same state of the
        // file as the shape: a client following a growing file (the frame status) reads
        // the field in one request after refresh() instead of two.
        if type.unsupportedReason == nil, !type.hasVariableLength, space.kind != .null,
           space.count * type.rawSize <= inlineValueBytes {
            let raw = try f.readRaw(nil)
            m.append(.init("value", HDFJSON.values(raw, shape: space.kind == .scalar ? [] : space.dims)))
        }
        if summary {
            m += [.init("id", .string(id.description)), .init("created", t.created), .init("lastModified", t.modified)]
        } else {
            m += [.init("attributeCount", .int((try? f.objectInfo().attributeCount) ?? 0)),
                  .init("created", t.created), .init("lastModified", t.modified), .init("domain", .string(d.domain))]
        }
        return .object(m)
    }

    // MARK: attributes

    /// name -> {type, shape, value, created}, as `include_attrs` and `domain_objs` give them.
    func attributesJSON(_ n: NXNode, _ d: OpenDomain) throws -> JSON {
        var out: [JSON.Member] = []
        let created = times(n, d).created
        for name in try n.attributeNames() {
            out.append(.init(name, attributeJSON(n, name, created, withName: false)))
        }
        return .object(out)
    }

    func attributeJSON(_ n: NXNode, _ name: String, _ created: JSON, withName: Bool) -> JSON {
        var m: [JSON.Member] = withName ? [.init("name", .string(name))] : []
        do {
            let a = try n.rawAttribute(name)
            m += [.init("type", HDFJSON.type(a.type)), .init("shape", HDFJSON.shape(a.space)),
                  .init("value", a.space.kind == .null ? .null : HDFJSON.values(a.values, shape: a.space.kind == .scalar ? [] : a.space.dims))]
        } catch {
            // an attribute of a type nxlua cannot read is listed, without its value
            let shape = try? n.attributeShape(name)
            m += [.init("type", HDFJSON.type(shape?.type ?? .unsupported("unreadable"))),
                  .init("shape", shape.map { HDFJSON.shape($0.space) } ?? .obj(["class": .string("H5S_NULL")])),
                  .init("value", .null)]
        }
        m.append(.init("created", created))
        if withName { m.append(.init("lastModified", created)) }
        return .object(m)
    }

    func attributeListJSON(_ n: NXNode, _ d: OpenDomain) throws -> JSON {
        let created = times(n, d).created
        var items: [JSON] = []
        for name in try n.attributeNames() {
            var m: [JSON.Member] = [.init("created", created)]
            if let s = try? n.attributeShape(name) {
                m += [.init("type", HDFJSON.type(s.type)), .init("shape", HDFJSON.shape(s.space))]
            }
            m.append(.init("name", .string(name)))
            items.append(.object(m))
        }
        return .obj(["attributes": .array(items)])
    }

    func attributeJSON(named name: String, of n: NXNode, _ d: OpenDomain) throws -> JSON {
        guard try n.hasAttribute(name) else {
            throw ServeError(404, "domain '\(d.domain)': \(n.path) has no attribute '\(name)'")
        }
        return attributeJSON(n, name, times(n, d).created, withName: true)
    }

    // MARK: folders

    /// The files (HDF5 signature) and subfolders of a folder, by name.
    func folderListing(_ r: DomainResolver.Resolved, limit: Int?, marker: String?, access: FolderAccess) -> JSON {
        var items: [(String, JSON)] = []
        guard case .success(let names) = FolderListing.names(r.path) else { return .obj(["domains": .array([]), "hrefs": .array([])]) }
        for name in names {
            if name.hasPrefix(".") { continue }
            let domain = (r.domain.hasSuffix("/") ? r.domain : r.domain + "/") + name
            guard let sub = try? resolver.resolve(domain) else { continue }  // a symlink out, or gone
            guard (try? resolver.check(domain, access, user: nil)) != nil else { continue }  // not the user's
            guard let st = Store.stamp(sub.path) else { continue }
            if !sub.isFolder && !Store.isHDF5(sub.path) { continue }
            var item: [JSON.Member] = [.init("name", .string(domain)), .init("class", .string(sub.isFolder ? "folder" : "domain")),
                                       .init("owner", .string(owner)), .init("created", .double(st.mtime)),
                                       .init("lastModified", .double(st.mtime))]
            if !sub.isFolder { item.append(.init("size", .int(Int(st.size)))) }   // bytes on disk (r:ls)
            items.append((domain, .object(item)))
        }
        items.sort { $0.0 < $1.0 }
        if let marker { items = items.filter { $0.0 > marker } }
        if let limit, limit >= 0 { items = Array(items.prefix(limit)) }
        return .obj(["domains": .array(items.map(\.1)), "hrefs": .array([])])
    }

    /// HDF5's signature at offset 0 (files written by h5py, nxlua and HDF5's tools).
    static func isHDF5(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var sig = [UInt8](repeating: 0, count: 8)
        let n = sig.withUnsafeMutableBytes { read(fd, $0.baseAddress, 8) }
        return n == 8 && sig == [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]
    }
}
