#if canImport(Glibc)
import Glibc
#endif
import CHDF5
import CHDF5Shims
import NDArray

/// One child as its group lists it.
public struct NXEntry: Sendable {
    public enum Kind: Sendable { case group, field, missing }
    public let name: String
    public let link: NXLinkKind
    /// What the link leads to (`missing` for a dangling soft or external link).
    public let kind: Kind

    public init(name: String, link: NXLinkKind, kind: Kind) {
        self.name = name
        self.link = link
        self.kind = kind
    }
}

/// A group: children in natural order (as nexusformat and NeXpy list them: digit runs
/// compare as numbers), attributes, and the writing operations.
public final class NXGroup: NXNode, @unchecked Sendable {
    private var entryCache: [NXEntry]?
    /// The names in entryCache, for existence checks before a creation.
    private var entryNames: Set<String> = []
    /// Children reached so far (the file's node table is weak; groups keep theirs).
    private var childNodes: [String: NXNode] = [:]
    private var classCache: String?
    /// Above this many children a listing closes the ids it opened (see entries()).
    static let maxOpenChildren = 4096

    override func openObject() throws -> H5Handle {
        try openHandle("group", .group) { H5.api.pointee.H5Gopen2($0, $1, 0) }
    }

    override func forgetHandle() {
        super.forgetHandle()
        forgetChildren()
    }

    public override var readableGroup: (any NXReadableGroup)? { self }

    public override var nxclass: String {
        if path == "/" { return "NXroot" }
        if let classCache { return classCache }
        let c = stringAttribute("NX_class") ?? "NXgroup"
        classCache = c
        return c
    }

    /// Forgets the cached child list (after a change, or to see another writer's).
    public func forgetChildren() {
        entryCache = nil
        entryNames = []
        childNodes.removeAll()
        classCache = nil
    }

    // MARK: children

    /// The children in natural order. Listing opens each child (relative to this group)
    /// and makes its node, so reaching it next costs no second lookup: for a 10,000-object
    /// tree print this replaced H5Oget_info_by_name plus an open by absolute path.
    public func entries() throws -> [NXEntry] {
        if let entryCache, file.isOpen { return entryCache }
        let gid = try objectID()
        let h = H5.api
        final class Collected { var list: [(String, H5L_type_t)] = [] }
        let collected = Collected()
        var idx: hsize_t = 0
        let status = withExtendedLifetime(collected) {
            h.pointee.H5Literate(gid, H5_INDEX_NAME, H5_ITER_INC, &idx, { _, name, info, data in
                let c = Unmanaged<Collected>.fromOpaque(data!).takeUnretainedValue()
                c.list.append((String(cString: name!), info!.pointee.type))
                return 0
            }, Unmanaged.passUnretained(collected).toOpaque())
        }
        try H5.check(status, fail("cannot list the group").message)
        let sorted = collected.list.map { (key: NXText.NaturalKey($0.0), entry: $0) }.sorted { $0.key < $1.key }
        collected.list = sorted.map(\.entry)
        var out: [NXEntry] = []
        out.reserveCapacity(collected.list.count)
        childNodes.removeAll(keepingCapacity: true)
        // A huge flat group (per-frame datasets) keeps no ids open: each costs HDF5 a few KB
        let keepOpen = collected.list.count <= NXGroup.maxOpenChildren
        for (name, type) in collected.list {
            let link: NXLinkKind
            switch type {
            case H5L_TYPE_SOFT: link = .soft(target: linkValue(gid, name).0)
            case H5L_TYPE_EXTERNAL:
                let (file, target) = linkValue(gid, name, external: true)
                link = .external(file: file, target: target)
            default: link = .hard
            }
            out.append(NXEntry(name: name, link: link, kind: openChild(gid, name, link: link, keepOpen: keepOpen)))
        }
        entryCache = out
        entryNames = Set(out.map(\.name))
        return out
    }

    /// Opens child `name` and makes its node (in childNodes); its kind, `missing` for a
    /// dangling soft or external link.
    private func openChild(_ gid: hid_t, _ name: String, link: NXLinkKind, keepOpen: Bool) -> NXEntry.Kind {
        let h = H5.api
        if case .external(let target, _) = link, !externalLinkAllowed(target) { return .missing }
        let oid = h.pointee.H5Oopen(gid, name, 0)
        if oid < 0 {
            _ = H5.takeError()
            return .missing
        }
        let childPath = childPath(name)
        switch h.pointee.H5Iget_type(oid) {
        case H5I_GROUP:
            let n = file.node(childPath) { NXGroup(file: file, path: childPath, link: link) }
            if keepOpen { n.adopt(H5Handle(oid, .group)) } else { _ = h.pointee.H5Oclose(oid) }
            childNodes[name] = n
            return .group
        case H5I_DATASET:
            let n = file.node(childPath) { NXField(file: file, path: childPath, link: link) }
            if keepOpen { n.adopt(H5Handle(oid, .dataset)) } else { _ = h.pointee.H5Oclose(oid) }
            childNodes[name] = n
            return .field
        default:
            _ = h.pointee.H5Oclose(oid)  // a named datatype: neither group nor field
            return .missing
        }
    }

    /// The node of `name`, just created here (group, field, copy, link). A cached listing
    /// gains the one entry in its natural place: listing again would open every child,
    /// and n creations in one group would cost n^2 opens (3000 fields took 67 s).
    @discardableResult
    private func created(_ name: String, gid: hid_t, link: NXLinkKind = .hard) throws -> NXNode? {
        guard var list = entryCache else { return try child(name) }
        let kind = openChild(gid, name, link: link, keepOpen: list.count < NXGroup.maxOpenChildren)
        let key = NXText.NaturalKey(name)
        var low = 0, high = list.count  // the first entry ordered after name
        while low < high {
            let mid = (low + high) / 2
            if key < NXText.NaturalKey(list[mid].name) { high = mid } else { low = mid + 1 }
        }
        list.insert(NXEntry(name: name, link: link, kind: kind), at: low)
        entryCache = list
        entryNames.insert(name)
        return childNodes[name]
    }

    private func linkValue(_ gid: hid_t, _ name: String, external: Bool = false) -> (String, String) {
        let h = H5.api
        var info = H5L_info_t()
        guard h.pointee.H5Lget_info(gid, name, &info, 0) >= 0 else { _ = H5.takeError(); return ("?", "?") }
        var buf = [CChar](repeating: 0, count: Int(info.u.val_size) + 1)
        guard h.pointee.H5Lget_val(gid, name, &buf, buf.count, 0) >= 0 else { _ = H5.takeError(); return ("?", "?") }
        if !external { return (String(nulTerminated: buf), "") }
        var flags: UInt32 = 0
        var file: UnsafePointer<CChar>? = nil, obj: UnsafePointer<CChar>? = nil
        guard h.pointee.H5Lunpack_elink_val(&buf, buf.count, &flags, &file, &obj) >= 0, let file, let obj else {
            _ = H5.takeError()
            return ("?", "?")
        }
        return (String(cString: file), String(cString: obj))
    }

    public func names() throws -> [String] { try entries().map(\.name) }

    /// The child named `name`, nil if there is none.
    public func child(_ name: String) throws -> NXNode? {
        let list = try entries()
        if let n = childNodes[name] { return n }
        // not opened while listing: absent, or a link that leads nowhere
        guard let e = list.first(where: { $0.name == name }) else { return nil }
        switch e.link {
        case .soft(let t): throw fail("'\(name)' is a soft link to \(t), which does not exist")
        case .external(let f, let t):
            if !externalLinkAllowed(f), let folder = file.options.externalLinksWithin {
                throw fail("'\(name)' is an external link to \(f):\(t), outside \(folder): not followed")
            }
            throw fail("'\(name)' is an external link to \(f):\(t), which cannot be opened (missing file or object)")
        case .hard: throw fail("'\(name)' is neither a group nor a field")
        }
    }

    /// Whether an external link to `target` (a file name as the link stores it; relative
    /// ones are found next to this file, as HDF5 finds them) may be followed.
    func externalLinkAllowed(_ target: String) -> Bool {
        guard let folder = file.options.externalLinksWithin else { return true }
        let own = file.path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let candidate = target.hasPrefix("/") ? target : (own.isEmpty ? target : own + "/" + target)
        guard let p = realpath(candidate, nil) else { return false }
        defer { free(p) }
        let real = String(cString: p)
        return real.hasPrefix(folder.hasSuffix("/") ? folder : folder + "/")
    }

    /// An object by path: absolute ("/entry/data") or relative ("data/counts", "..").
    public func resolve(_ relative: String) throws -> NXNode? {
        var node: NXNode = relative.hasPrefix("/") ? file.root : self
        for part in relative.split(separator: "/") where part != "." {
            if part == ".." { node = node.parent; continue }
            guard let g = node as? NXGroup else { throw fail("'\(relative)': \(node.path) is a field, not a group") }
            guard let next = try g.child(String(part)) else { return nil }
            node = next
        }
        return node
    }

    /// Direct children of an NX class ("NXdata").
    public func children(ofClass nxclass: String) throws -> [NXNode] {
        try entries().filter { $0.kind != .missing }.compactMap { try child($0.name) }.filter { $0.nxclass == nxclass }
    }

    /// All descendants of an NX class, depth first in natural order (links not followed twice).
    public func find(_ nxclass: String) throws -> [NXNode] {
        var out: [NXNode] = []
        var seen: Set<String> = []
        func walk(_ g: NXGroup) throws {
            for e in try g.entries() where e.kind != .missing {
                guard let c = try g.child(e.name) else { continue }
                if c.nxclass == nxclass { out.append(c) }
                if let cg = c as? NXGroup, e.link == .hard, seen.insert(cg.path).inserted { try walk(cg) }
            }
        }
        try walk(self)
        return out
    }

    // MARK: writing

    static func checkName(_ name: String, in node: NXNode) throws {
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
            throw node.fail("bad name '\(name)' (a non-empty name without '/')")
        }
    }

    private func prepareNew(_ name: String) throws -> hid_t {
        try file.check(path, write: true)
        try NXGroup.checkName(name, in: self)
        let gid = try objectID()
        _ = try entries()
        if entryNames.contains(name) {
            throw fail("'\(name)' exists already (delete it first: g.\(name) = nil)")
        }
        return gid
    }

    private func childPath(_ name: String) -> String { path == "/" ? "/" + name : path + "/" + name }

    /// Creates a subgroup with an NX class (as nexusformat, NX_class is a string attribute).
    @discardableResult
    public func makeGroup(_ name: String, nxclass: String) throws -> NXGroup {
        let gid = try prepareNew(name)
        let h = H5.api
        let gcpl = try H5Handle(checking: h.pointee.H5Pcreate(h.pointee.P_GROUP_CREATE), .plist, fail("cannot create '\(name)'").message)
        _ = h.pointee.H5Pset_link_creation_order(gcpl.id, 0x1 | 0x2)
        let id = try H5Handle(checking: h.pointee.H5Gcreate2(gid, name, 0, gcpl.id, 0), .group,
                              fail("cannot create group '\(name)'").message)
        id.close()
        guard let g = try created(name, gid: gid) as? NXGroup else { throw fail("group '\(name)' vanished after creation") }
        do {
            try g.setAttribute("NX_class", .string(nxclass))
        } catch {
            try? delete(name)
            throw error
        }
        return g
    }

    /// Creates a field holding `value` (or an empty/filled one of `options.shape`).
    @discardableResult
    public func makeField(_ name: String, value: NXValue?, options: NXFieldOptions = NXFieldOptions()) throws -> NXField {
        let gid = try prepareNew(name)
        try NXField.create(in: gid, name: name, value: value, options: options, context: fail("cannot create field '\(name)'").message)
        guard let f = try created(name, gid: gid) as? NXField else { throw fail("field '\(name)' vanished after creation") }
        return f
    }

    /// A hard link to `target` (same file); the target gets NeXus's @target attribute.
    public func link(_ name: String, to target: NXNode) throws {
        guard target.file === file else {
            throw fail("cannot hard-link '\(name)' to an object of another file (\(target.file.path)); use an external link")
        }
        let gid = try prepareNew(name)
        try H5.check(H5.api.pointee.H5Lcreate_hard(file.handle.id, target.path, gid, name, 0, 0),
                     fail("cannot link '\(name)' to \(target.path)").message)
        try created(name, gid: gid)
        if try !target.hasAttribute("target") { try target.setAttribute("target", .string(target.path)) }
    }

    public func softLink(_ name: String, to targetPath: String) throws {
        let gid = try prepareNew(name)
        try H5.check(H5.api.pointee.H5Lcreate_soft(targetPath, gid, name, 0, 0),
                     fail("cannot make soft link '\(name)' to \(targetPath)").message)
        try created(name, gid: gid, link: .soft(target: targetPath))
    }

    /// A link to `targetPath` in another file (`fileName` relative to this file's folder).
    public func externalLink(_ name: String, file fileName: String, path targetPath: String) throws {
        let gid = try prepareNew(name)
        try H5.check(H5.api.pointee.H5Lcreate_external(fileName, targetPath, gid, name, 0, 0),
                     fail("cannot make external link '\(name)' to \(fileName):\(targetPath)").message)
        try created(name, gid: gid, link: .external(file: fileName, target: targetPath))
    }

    /// Copies a group or field (of any open file) here, without reading its data into memory.
    @discardableResult
    public func copy(_ source: NXNode, as name: String) throws -> NXNode {
        try source.file.check(source.path)
        let gid = try prepareNew(name)
        try H5.check(H5.api.pointee.H5Ocopy(source.file.handle.id, source.path, gid, name, 0, 0),
                     fail("cannot copy \(source.file.path):\(source.path) to '\(name)'").message)
        guard let c = try created(name, gid: gid) else { throw fail("copy '\(name)' vanished") }
        return c
    }

    /// Removes a child link (the data goes when no other link refers to it).
    public func delete(_ name: String) throws {
        try file.check(path, write: true)
        let gid = try objectID()
        _ = try entries()
        guard entryNames.contains(name) else { throw fail("no child '\(name)' to delete") }
        file.forget(under: childPath(name))
        try H5.check(H5.api.pointee.H5Ldelete(gid, name, 0), fail("cannot delete '\(name)'").message)
        // the cached listing loses the one entry (relisting would open every child)
        entryCache?.removeAll { $0.name == name }
        entryNames.remove(name)
        childNodes[name] = nil
    }
}
