import NDArray
import NeXus
import RemoteServer

/// One domain (a file) of a server, opened read-only: the objects' JSON by id, fetched in
/// one round trip when the server lists them in `domain_objs` (nxlua serve, HSDS), else
/// one object at a time. Ids are opaque strings.
public final class RemoteFile: @unchecked Sendable {  // used by one Lua state's thread
    public let session: HTTPSession
    public let domain: String
    public let rootID: String
    /// Largest value read in one request (the server's limits.max_request_size).
    public let maxRequestSize: Int
    /// Fields up to this many elements show their values in the tree (nx.config maxsize).
    public let eagerLimit: Int
    /// Pieces of a big read: at most this many bytes, so that two can be in flight.
    let pieceBytes: Int
    private var objects: [String: JSON] = [:]
    /// Nodes by path, held weakly: nodes hold their file, so a strong table would be a
    /// cycle (as NXFile's node table, and for the same reason).
    private var nodes: [String: WeakNode] = [:]

    private final class WeakNode {
        weak var node: RemoteNode?
        init(_ node: RemoteNode) { self.node = node }
    }

    /// The root group (made again if nothing holds it any more).
    public var root: RemoteGroup {
        if let r = nodes["/"]?.node as? RemoteGroup { return r }
        let r = RemoteGroup(file: self, path: "/", link: nil, id: rootID)
        nodes["/"] = WeakNode(r)
        return r
    }

    public var location: String { session.baseURL + domain }

    init(session: HTTPSession, domain: String, eagerLimit: Int) throws {
        self.session = session
        self.domain = domain.hasPrefix("/") ? domain : "/" + domain
        self.eagerLimit = eagerLimit
        let what = "\(session.baseURL): domain '\(self.domain)'"
        let d = try session.getJSON("/" + HTTPSession.query([("domain", self.domain), ("getobjs", "1")]), what: what)
        guard let root = d["root"]?.stringValue else {
            if d["class"]?.stringValue == "folder" { throw RemoteError("\(what) is a folder; list it with r:ls") }
            throw RemoteError("\(what): the server's answer has no root group")
        }
        rootID = root
        let limit = d["limits"]?["max_request_size"]?.intValue ?? (100 << 20)
        maxRequestSize = max(1 << 16, limit)
        pieceBytes = min(maxRequestSize, 32 << 20)
        if case .object(let objs)? = d["domain_objs"] {
            for m in objs { objects[m.key] = m.value }
        }
    }

    var query: String { HTTPSession.query([("domain", domain)]) }

    /// Takes an object's JSON as the server just gave it (r:wait's refreshed fields).
    func adopt(_ json: JSON, for id: String) { objects[id] = json }

    /// An object's JSON: links and attributes with values for groups; type, shape,
    /// layout and attributes for datasets. HSDS's `domain_objs` may lack some of it.
    /// What an id names. Ids are opaque: the answer comes from the link's `collection`
    /// (0.x link items), else from the object as `domain_objs` listed it, and only then
    /// from the "g-"/"d-"/"t-" prefix the HDF REST API gives ids of each kind.
    enum Kind { case group, dataset, datatype }

    func kind(of id: String, link: JSON? = nil) -> Kind { RemoteFile.kind(of: id, link: link, listed: objects[id]) }

    static func kind(of id: String, link: JSON?, listed: JSON?) -> Kind {
        switch link?["collection"]?.stringValue {
        case "groups"?: return .group
        case "datasets"?: return .dataset
        case "datatypes"?: return .datatype
        default: break
        }
        if let o = listed {
            if o["links"] != nil { return .group }
            if o["shape"] != nil { return .dataset }
            if o["type"] != nil { return .datatype }
        }
        return id.hasPrefix("g-") ? .group : id.hasPrefix("d-") ? .dataset : .datatype
    }

    /// Drops what was fetched about an object (its next use asks the server again).
    func forget(_ id: String) { objects[id] = nil }

    func object(_ id: String, path: String) throws -> JSON {
        if let o = objects[id], complete(o, id) { return o }
        let isGroup = kind(of: id) == .group
        let collection = isGroup ? "groups" : "datasets"  // (datatypes are never fetched)
        let what = "\(location): \(path)"
        var o = try session.getJSON("/\(collection)/\(id)" + HTTPSession.query([("domain", domain), ("include_links", "1"), ("include_attrs", "1")]), what: what)
        var members: [JSON.Member] = []
        if case .object(let m) = o { members = m }
        if isGroup, !hasDict(o["links"]) {
            let l = try session.getJSON("/groups/\(id)/links" + query, what: what)
            var links: [JSON.Member] = []
            if case .array(let items)? = l["links"] {
                for item in items {
                    guard let title = item["title"]?.stringValue else { continue }
                    links.append(.init(title, item))
                }
            }
            members.removeAll { $0.key == "links" }
            members.append(.init("links", .object(links)))
        }
        if !attributesComplete(o["attributes"]) {
            let a = try session.getJSON("/\(collection)/\(id)/attributes" + HTTPSession.query([("domain", domain), ("IncludeData", "1")]), what: what)
            var attrs: [JSON.Member] = []
            if case .array(let items)? = a["attributes"] {
                for item in items {
                    guard let name = item["name"]?.stringValue else { continue }
                    var value = item
                    if item["value"] == nil {  // an old server: one more request for the value
                        value = (try? session.getJSON("/\(collection)/\(id)/attributes/\(HTTPSession.percentEncoded(name))" + query, what: what)) ?? item
                    }
                    attrs.append(.init(name, value))
                }
            }
            members.removeAll { $0.key == "attributes" }
            members.append(.init("attributes", .object(attrs)))
        }
        o = .object(members)
        objects[id] = o
        return o
    }

    private func hasDict(_ j: JSON?) -> Bool { if case .object? = j { return true }; return false }

    private func attributesComplete(_ a: JSON?) -> Bool {
        guard case .object(let m)? = a else { return false }
        return m.allSatisfy { $0.value["value"] != nil }
    }

    private func complete(_ o: JSON, _ id: String) -> Bool {
        guard attributesComplete(o["attributes"]) else { return false }
        if kind(of: id) == .group { return hasDict(o["links"]) }
        return o["type"] != nil && o["shape"] != nil
    }

    /// The node at `path` reached through `link` (one node per path, as local files).
    func node(path: String, link: NXLinkKind?, id: String, kind: Kind) -> RemoteNode? {
        if let n = nodes[path]?.node, n.id == id { return n }
        let n: RemoteNode
        switch kind {
        case .group: n = RemoteGroup(file: self, path: path, link: link, id: id)
        case .dataset: n = RemoteField(file: self, path: path, link: link, id: id)
        case .datatype: return nil  // a committed datatype: neither group nor field
        }
        nodes[path] = WeakNode(n)
        return n
    }

    /// Forgets what is cached of the nodes at and below `path` (their JSON, child lists,
    /// shapes, attributes): the next reads ask the server again.
    func refresh(under path: String) {
        let prefix = path == "/" ? "/" : path + "/"
        for (key, w) in nodes where key == path || key.hasPrefix(prefix) { w.node?.forgetCached() }
    }

    func error(_ path: String, _ problem: String) -> RemoteError { RemoteError("\(location): \(path): \(problem)") }
}

/// A group or field of a remote file.
public class RemoteNode: NXReadableNode, @unchecked Sendable {
    public let file: RemoteFile
    public let path: String
    public let link: NXLinkKind?
    /// The server's id of the object (opaque).
    public let id: String

    init(file: RemoteFile, path: String, link: NXLinkKind?, id: String) {
        self.file = file
        self.path = path
        self.link = link
        self.id = id
    }

    public var nxclass: String { "" }
    public var location: String { file.location }
    public var readableGroup: (any NXReadableGroup)? { nil }
    public var readableField: (any NXReadableField)? { nil }

    public var parentGroup: any NXReadableGroup { parent }

    public var parent: RemoteGroup {
        let parts = path.split(separator: "/")
        guard parts.count > 1 else { return file.root }
        let up = "/" + parts.dropLast().joined(separator: "/")
        return ((try? file.root.resolveNode(up)) as? RemoteGroup) ?? file.root
    }

    func json() throws -> JSON { try file.object(id, path: path) }

    private var attributeCache: [(name: String, value: NXValue)]?

    /// Drops this node's cached JSON and attributes (subclasses drop theirs too).
    func forgetCached() {
        file.forget(id)
        attributeCache = nil
    }

    public func attributes() throws -> [(name: String, value: NXValue)] {
        if let attributeCache { return attributeCache }
        var out: [(name: String, value: NXValue)] = []
        if case .object(let members)? = try json()["attributes"] {
            for m in members.sorted(by: { $0.key < $1.key }) {
                let t = RemoteType(json: m.value["type"] ?? .null)
                let s = RemoteShape(json: m.value["shape"] ?? .null)
                do {
                    out.append((m.key, try RemoteValues.decode(m.value["value"] ?? .null, type: t, shape: s.isNull ? [0] : s.dims,
                                                              what: "\(location): \(path): attribute '\(m.key)'")))
                } catch {
                    // as local files: an attribute that cannot be read shows as its problem
                    out.append((m.key, .string("<\(error)>")))
                }
            }
        }
        attributeCache = out
        return out
    }

    public func attributeNames() throws -> [String] { try attributes().map(\.name) }

    public func attribute(_ name: String) throws -> NXValue? { try attributes().first { $0.name == name }?.value }

    public func stringAttribute(_ name: String) -> String? {
        guard case .strings(let s, _)? = try? attribute(name), let first = s.first else { return nil }
        return first
    }
}

public final class RemoteGroup: RemoteNode, NXReadableGroup, @unchecked Sendable {
    private var entryCache: [NXEntry]?
    private var targets: [String: (id: String, kind: RemoteFile.Kind)] = [:]  // child name -> object

    public override var nxclass: String {
        path == "/" ? "NXroot" : (stringAttribute("NX_class") ?? "NXgroup")
    }
    public override var readableGroup: (any NXReadableGroup)? { self }

    public func entries() throws -> [NXEntry] {
        if let entryCache { return entryCache }
        var byName: [String: NXEntry] = [:]
        var soft: [(name: String, target: String)] = []
        if case .object(let links)? = try json()["links"] {
            for m in links {
                let l = m.value
                let kind: NXEntry.Kind
                let link: NXLinkKind
                switch l["class"]?.stringValue ?? "H5L_TYPE_HARD" {
                case "H5L_TYPE_SOFT":
                    let target = l["h5path"]?.stringValue ?? "?"
                    link = .soft(target: target)
                    soft.append((m.key, target))
                    kind = .missing  // until resolved below
                case "H5L_TYPE_EXTERNAL":
                    link = .external(file: l["h5domain"]?.stringValue ?? l["file"]?.stringValue ?? "?", target: l["h5path"]?.stringValue ?? "?")
                    kind = .missing  // another domain: not opened while listing
                default:
                    link = .hard
                    let id = l["id"]?.stringValue ?? ""
                    let k = file.kind(of: id, link: l)
                    targets[m.key] = (id, k)
                    kind = k == .group ? .group : k == .dataset ? .field : .missing
                }
                byName[m.key] = NXEntry(name: m.key, link: link, kind: kind)
            }
        }
        var list = NXText.naturalSorted(Array(byName.keys)).map { byName[$0]! }
        entryCache = list  // soft links resolving through this group see the hard links
        // Soft links are followed here, where the server does not (h5pyd cannot inside
        // paths); one that leads nowhere (or round in a loop) stays missing.
        for (name, target) in soft {
            guard let n = try? resolveNode(target) as? RemoteNode else { continue }
            targets[name] = (n.id, n is RemoteGroup ? .group : .dataset)
            if let i = list.firstIndex(where: { $0.name == name }) {
                list[i] = NXEntry(name: name, link: .soft(target: target), kind: n is RemoteGroup ? .group : .field)
            }
        }
        entryCache = list
        return list
    }

    public func childNode(_ name: String) throws -> (any NXReadableNode)? { try child(name) }

    /// The child named `name`, nil if there is none.
    public func child(_ name: String) throws -> RemoteNode? {
        guard let e = try entries().first(where: { $0.name == name }) else { return nil }
        let childPath = path == "/" ? "/" + name : path + "/" + name
        if let t = targets[name], let n = file.node(path: childPath, link: e.link, id: t.id, kind: t.kind) { return n }
        switch e.link {
        case .soft(let t): throw file.error(path, "'\(name)' is a soft link to \(t), which does not exist")
        case .external(let f, let t):
            // another domain of the same server (a relative name is next to this file)
            var folder = file.domain
            while let last = folder.last, last != "/" { folder.removeLast() }
            let domain = f.hasPrefix("/") ? f : folder + f
            let found: RemoteNode?
            do {
                found = try RemoteFile(session: file.session, domain: domain, eagerLimit: file.eagerLimit).root.resolveNode(t) as? RemoteNode
            } catch let e as RemoteError {
                throw file.error(path, "'\(name)' is an external link to \(f):\(t), which cannot be opened: \(e.message)")
            }
            guard let n = found else { throw file.error(path, "'\(name)' is an external link to \(f):\(t), which does not exist") }
            return n
        case .hard: throw file.error(path, "'\(name)' is neither a group nor a field")
        }
    }

    public func find(_ nxclass: String) throws -> [RemoteNode] { try findNodes(nxclass).compactMap { $0 as? RemoteNode } }

    /// Asks the server again for this group and what is below it (child lists, shapes,
    /// attributes), as a local group's refresh.
    public func refresh() { file.refresh(under: path) }

    override func forgetCached() {
        super.forgetCached()
        entryCache = nil
        targets = [:]
    }
}

public final class RemoteField: RemoteNode, NXReadableField, @unchecked Sendable {
    private var type_: RemoteType?
    private var shape_: RemoteShape?
    private var eager: NXValue?

    public override var nxclass: String { "NXfield" }
    public override var readableField: (any NXReadableField)? { self }

    private func metadata() throws -> (RemoteType, RemoteShape) {
        if let type_, let shape_ { return (type_, shape_) }
        let j = try json()
        let t = RemoteType(json: j["type"] ?? .null), s = RemoteShape(json: j["shape"] ?? .null)
        type_ = t
        shape_ = s
        return (t, s)
    }

    public var shape: [Int] { get throws { try metadata().1.dims } }
    public var maxshape: [Int?] { get throws { try metadata().1.maxdims } }

    /// Asks the server again for the shape and small value (a file another process grows;
    /// nxlua serve answers each request with the writer's last flush).
    public func refresh() { forgetCached() }

    /// Takes the description a wait brought (shape, small value, attributes) as the
    /// field's own, as refresh() and the next request would have.
    func adopt(_ json: JSON) {
        forgetCached()
        file.adopt(json, for: id)
    }

    override func forgetCached() {
        super.forgetCached()
        type_ = nil
        shape_ = nil
        eager = nil
    }
    public var elementType: ElementType { get throws { try metadata().0.element } }
    public var isScalar: Bool { get throws { try metadata().1.isScalar } }

    public var chunks: [Int]? {
        get throws {
            guard let layout = try json()["creationProperties"]?["layout"], layout["class"]?.stringValue == "H5D_CHUNKED",
                  case .array(let dims)? = layout["dims"] else { return nil }
            return dims.map { $0.intValue ?? 0 }
        }
    }

    /// The storage layout the server lists (creationProperties.layout), in h5py's words.
    public var layout: String {
        get throws {
            switch try json()["creationProperties"]?["layout"]?["class"]?.stringValue {
            case "H5D_CHUNKED": return "chunked"
            case "H5D_COMPACT": return "compact"
            case "H5D_VIRTUAL": return "virtual"
            default: return "contiguous"
            }
        }
    }

    /// Filter names as HSDS and nxlua serve list them ("deflate", "shuffle", ...), when given.
    public var filters: [String] {
        get throws {
            guard case .array(let f)? = try json()["creationProperties"]?["filters"] else { return [] }
            return f.compactMap { $0["name"]?.stringValue ?? $0["class"]?.stringValue }
        }
    }

    /// HSDS's filter names, in nx.field's words.
    public var compression: String? {
        get throws {
            guard let first = try filters.first(where: { $0 != "shuffle" && $0 != "H5Z_FILTER_SHUFFLE" }) else { return nil }
            switch first {
            case "deflate", "H5Z_FILTER_DEFLATE": return "gzip"
            case "bitshuffle", "H5Z_FILTER_BITSHUFFLE": return "bitshuffle+lz4"
            case "blosclz", "H5Z_FILTER_BLOSC": return "blosc"
            default: return first
            }
        }
    }

    public func smallValue() throws -> NXValue? {
        if let eager { return eager }
        let (t, s) = try metadata()
        guard s.dims.reduce(1, *) <= file.eagerLimit else { return nil }
        if case .unsupported = t.element { return nil }
        let v: NXValue
        if let inline = try json()["value"] {  // datasets of a few KB arrive with the domain
            v = try RemoteValues.decode(inline, type: t, shape: s.dims, what: "\(location): \(path)")
        } else {
            v = try read(nil)
        }
        eager = v
        return v
    }

    private func fail(_ problem: String) -> RemoteError { file.error(path, problem) }

    private var valuePath: String { "/datasets/\(id)/value" }

    /// Rows of axis 0 per chunk when pieces of whole chunks may travel as the file stores
    /// them (StoredChunksWire: a compressed frame is a fraction of its bytes, and the
    /// server does not decode it): chunks spanning every other axis, numbers in the
    /// machine's byte order, a filter this process decodes, and the option on. nil: the
    /// values travel decoded.
    private func storedChunkRows(_ type: RemoteType, _ shape: RemoteShape) -> Int? {
        guard file.session.options.storedChunks, !type.bigEndian, case .numeric = type.element,
              let j = try? json(), let props = j["creationProperties"],
              props["layout"]?["class"]?.stringValue == "H5D_CHUNKED",
              case .array(let dims)? = props["layout"]?["dims"] else { return nil }
        let chunk = dims.compactMap(\.intValue)
        guard chunk.count == shape.dims.count, chunk.count > 0, chunk[0] > 0,
              zip(chunk.dropFirst(), shape.dims.dropFirst()).allSatisfy({ $0 == $1 }) else { return nil }
        var ids: [Int32] = []
        if case .array(let filters)? = props["filters"] {
            for f in filters {
                guard let id = f["id"]?.intValue, let i = Int32(exactly: id) else { return nil }
                ids.append(i)
            }
        }
        return NXChunkCodec.canDecode(filterIDs: ids) ? chunk[0] : nil
    }

    /// The value route's query for a forward piece; it asks for stored chunks when the
    /// piece is whole chunks of `rows` rows (the server answers decoded bytes otherwise).
    static func valueQuery(domain: String, piece: [Selection.Axis], dims: [Int], chunkRows rows: Int?) -> String {
        var items = [("domain", domain), ("select", RemoteSelection.text(piece))]
        if let rows, let first = piece.first, first.count > 0, first.step == 1 || first.count == 1,
           first.start % rows == 0, first.count % rows == 0, first.start + first.count <= dims[0],
           zip(piece.dropFirst(), dims.dropFirst()).allSatisfy({ $0.start == 0 && $0.count == $1 && ($0.step == 1 || $1 == 1) }) {
            items.append(("chunks", "stored"))
        }
        return HTTPSession.query(items)
    }

    public func read(_ selection: Selection?) throws -> NXValue {
        let (t, s) = try metadata()
        // the whole of a small field: the values that came with the shape (nxlua serve
        // sends a few KB with each dataset), the same state of the file, no second request
        if selection == nil, let inline = try json()["value"] {
            if case .unsupported = t.element {} else {
                return try RemoteValues.decode(inline, type: t, shape: s.dims, what: "\(location): \(path)")
            }
        }
        if s.isScalar, let sel = selection, sel.items.contains(where: { $0 != .ellipsis }) { throw fail("a scalar field takes no index") }
        if s.isNull { throw fail("the field has no data (null dataspace)") }
        let axes: [Selection.Axis]
        do { axes = try (selection ?? Selection([])).resolve(shape: s.dims) } catch let e as ArrayError {
            throw fail("\(e.message) (shape \(NDArray.describe(s.dims)))")
        }
        // read forward; negative steps are reversed in memory afterwards (as local files)
        let forward = axes.map { a -> Selection.Axis in
            var f = a
            if a.step < 0 && a.count > 0 { f.start = a.start + (a.count - 1) * a.step }
            f.step = abs(a.step)
            return f
        }
        let counts = axes.map(\.count)
        let kept = axes.filter(\.keepsAxis).map(\.count)
        let reversed = axes.filter(\.keepsAxis).map { $0.step < 0 }
        let value: NXValue
        switch t.element {
        case .numeric(let d):
            let out = try arrayWork { try NDArray(uninitialized: counts, dtype: d) }
            if !counts.contains(0) {
                try readBinary(forward, into: out, type: t, scalar: s.isScalar)
            }
            var r = try arrayWork { try out.reshapedView(kept) }
            if reversed.contains(true) { r = try arrayWork { try r.view(reversed.map { $0 ? "::-1" : ":" }.joined(separator: ",")).copy() } }
            value = .array(r)
        case .string, .compound:
            if reversed.contains(true) { throw fail("negative steps are not supported on \(t.element.name) fields") }
            if counts.contains(0) {
                if case .compound = t.element { value = .records([], shape: kept) } else { value = .strings([], shape: kept) }
            } else {
                let q = s.isScalar ? file.query : HTTPSession.query([("domain", file.domain), ("select", RemoteSelection.text(forward))])
                let j = try file.session.getJSON(valuePath + q, what: "\(location): \(path)")
                guard let v = j["value"] else { throw fail("the server's answer has no value") }
                let raw = try RemoteValues.decode(v, type: t, shape: s.isScalar ? [] : counts, what: "\(location): \(path)")
                switch raw {
                case .strings(let x, _): value = .strings(x, shape: kept)
                case .records(let x, _): value = .records(x, shape: kept)
                case .array(let a): value = .array(try arrayWork { try a.reshapedView(kept) })
                }
            }
        case .unsupported(let what):
            throw fail("cannot read values of type \(what)")
        }
        return value
    }

    /// Binary read of forward axes into `out` (contiguous, shape = the counts): pieces of
    /// whole rows within max_request_size, two requests in flight.
    private func readBinary(_ axes: [Selection.Axis], into out: NDArray, type: RemoteType, scalar: Bool) throws {
        let itemSize = out.dtype.itemSize
        let base = out.storage.bytes + out.offset * itemSize
        let session = file.session, domain = file.domain
        var parts: [(pathAndQuery: String, destination: UnsafeMutableRawBufferPointer)] = []
        if scalar {
            parts = [(valuePath + file.query, UnsafeMutableRawBufferPointer(start: base, count: itemSize))]
        } else {
            let pieces: [[Selection.Axis]]
            do { pieces = try RemoteSelection.split(axes, itemSize: itemSize, maxBytes: file.pieceBytes) } catch let e as RemoteError {
                throw fail(e.message)
            }
            let dims = try metadata().1.dims, rows = storedChunkRows(type, try metadata().1)
            var offset = 0
            for p in pieces {
                let bytes = p.reduce(itemSize) { $0 * $1.count }
                parts.append((valuePath + RemoteField.valueQuery(domain: domain, piece: p, dims: dims, chunkRows: rows),
                              UnsafeMutableRawBufferPointer(start: base + offset, count: bytes)))
                offset += bytes
            }
        }
        try withExtendedLifetime(out) {
            try session.getBinary(parts, elementSize: itemSize, what: "\(location): \(path)")
        }
        if type.bigEndian { RemoteValues.byteSwap(UnsafeMutableRawBufferPointer(start: base, count: out.count * itemSize), itemSize: itemSize) }
    }

    /// Rows of the first axis over HTTP, for the streaming reductions (runs on NXBlocks'
    /// reader thread: only the session, which is thread-safe, and plain values are used).
    public func rowReader() throws -> NXRowReader {
        let (t, s) = try metadata()
        guard case .numeric(let d) = t.element else { throw fail("a numeric field is needed here, this one holds \(t.element.name)") }
        let session = file.session, domain = file.domain, dims = s.dims, valuePath = self.valuePath
        let maxBytes = file.pieceBytes, what = "\(location): \(path)", bigEndian = t.bigEndian
        let rows = storedChunkRows(t, s)
        return { range, buffer in
            let axes = try Selection([.range(.int(range.lowerBound), .int(range.upperBound), 1)]).resolve(shape: dims)
            let pieces = try RemoteSelection.split(axes, itemSize: d.itemSize, maxBytes: maxBytes)
            var offset = 0
            var parts: [(pathAndQuery: String, destination: UnsafeMutableRawBufferPointer)] = []
            for p in pieces {
                let bytes = p.reduce(d.itemSize) { $0 * $1.count }
                parts.append((valuePath + RemoteField.valueQuery(domain: domain, piece: p, dims: dims, chunkRows: rows),
                              UnsafeMutableRawBufferPointer(start: buffer.storage.bytes + offset, count: bytes)))
                offset += bytes
            }
            try session.getBinary(parts, elementSize: d.itemSize, what: what)
            if bigEndian { RemoteValues.byteSwap(UnsafeMutableRawBufferPointer(start: buffer.storage.bytes, count: offset), itemSize: d.itemSize) }
        }
    }
}
