import CHDF5
import CHDF5Shims
import NDArray

/// How a parent group refers to a child.
public enum NXLinkKind: Equatable, Sendable {
    case hard
    case soft(target: String)
    case external(file: String, target: String)
}

/// A group or a field of an open file, reached by its absolute path.
public class NXNode: @unchecked Sendable {
    public let file: NXFile
    /// Absolute path in the file ("/entry/data/counts").
    public let path: String
    /// How the parent links to this object (nil for the root).
    public let link: NXLinkKind?

    init(file: NXFile, path: String, link: NXLinkKind?) {
        self.file = file
        self.path = path
        self.link = link
    }

    public var name: String { path == "/" ? "" : String(path.split(separator: "/").last ?? "") }

    /// The parent group (the root is its own parent).
    public var parent: NXGroup {
        let parts = path.split(separator: "/")
        let up = parts.count <= 1 ? "/" : "/" + parts.dropLast().joined(separator: "/")
        return file.node(up) { NXGroup(file: file, path: up, link: nil) }
    }

    /// "NXentry", "NXdata", ... for groups, "NXfield" for fields, "NXroot" for the file.
    public var nxclass: String { "" }

    /// This node as a group or a field of the read protocols (NXReadable): a virtual
    /// call, cheaper than a dynamic cast to a protocol for each node of a tree print.
    public var readableGroup: (any NXReadableGroup)? { nil }
    public var readableField: (any NXReadableField)? { nil }

    /// The open group or dataset, once opened (registered with the file).
    var handle: H5Handle?

    /// The open object (group or dataset) behind this node.
    func objectID() throws -> hid_t {
        try file.check(path)
        if let handle, handle.isOpen { return handle.id }
        let h = try openObject()
        handle = h
        return h.id
    }

    /// Opens the object by its absolute path (H5Gopen2 or H5Dopen2, so a path that leads
    /// to the other kind fails).
    func openObject() throws -> H5Handle { fatalError("subclass") }

    /// Takes an id its parent opened while listing (one relative lookup instead of a
    /// second walk from the root); closes it when this node has one open already.
    func adopt(_ h: H5Handle) {
        if let handle, handle.isOpen { h.close(); return }
        file.register(h)
        handle = h
    }

    /// Opens this object's HDF5 id with `open` (H5Gopen2 or H5Dopen2 by absolute path)
    /// and registers it with the file, which closes it before itself.
    func openHandle(_ what: String, _ kind: H5Handle.Kind,
                    _ open: (_ file: hid_t, _ path: String) -> hid_t) throws -> H5Handle {
        try file.check(path)
        let id = open(file.handle.id, path)
        guard id >= 0 else {
            let why = H5.takeError()
            throw fail("cannot open the \(what) (\(why.isEmpty ? "unknown HDF5 error" : why))")
        }
        let h = H5Handle(id, kind)
        file.register(h)
        return h
    }

    /// Closes the cached handle (the object was deleted, renamed or must be reopened).
    func forgetHandle() {
        handle?.close()
        handle = nil
    }

    func fail(_ problem: String) -> NeXusError { NeXusError("\(file.path): \(path): \(problem)") }

    // MARK: attributes

    /// Names of the attributes, in creation order when tracked, else by name.
    public func attributeNames() throws -> [String] {
        let id = try objectID()
        final class Names { var list: [String] = [] }
        let names = Names()
        var idx: hsize_t = 0
        let status = withExtendedLifetime(names) {
            H5.api.pointee.H5Aiterate2(id, H5_INDEX_NAME, H5_ITER_INC, &idx, { _, name, _, data in
                let n = Unmanaged<Names>.fromOpaque(data!).takeUnretainedValue()
                n.list.append(String(cString: name!))
                return 0
            }, Unmanaged.passUnretained(names).toOpaque())
        }
        try H5.check(status, fail("cannot list attributes").message)
        return names.list
    }

    public func hasAttribute(_ name: String) throws -> Bool {
        let r = H5.api.pointee.H5Aexists(try objectID(), name)
        return try H5.check(r, fail("cannot look up attribute '\(name)'").message) > 0
    }

    /// An attribute's value, nil when there is none.
    public func attribute(_ name: String) throws -> NXValue? {
        guard try hasAttribute(name) else { return nil }
        return try readAttribute(name)
    }

    /// Reads an attribute known to exist.
    func readAttribute(_ name: String) throws -> NXValue {
        let h = H5.api
        let id = try objectID()
        let attr = try H5Handle(checking: h.pointee.H5Aopen(id, name, 0), .attribute, fail("cannot open attribute '\(name)'").message)
        let type = try H5Handle(checking: h.pointee.H5Aget_type(attr.id), .datatype, fail("attribute '\(name)'").message)
        let space = try H5Handle(checking: h.pointee.H5Aget_space(attr.id), .dataspace, fail("attribute '\(name)'").message)
        let d = H5Space.dims(space.id)
        let target = H5Values.ReadTarget(fileType: type.id, shape: d.isNull ? [0] : d.dims, memSpace: space.id) { mt, buf in
            h.pointee.H5Aread(attr.id, mt, buf)
        }
        return try H5Values.read(target, fail("cannot read attribute '\(name)'").message)
    }

    /// A string attribute (first element of a string array), nil otherwise.
    public func stringAttribute(_ name: String) -> String? {
        guard case .strings(let s, _)? = try? attribute(name), let first = s.first else { return nil }
        return first
    }

    /// Creates or replaces an attribute.
    public func setAttribute(_ name: String, _ value: NXValue) throws {
        try file.check(path, write: true)
        let h = H5.api
        let id = try objectID()
        let src = try H5Values.source(value)
        if try hasAttribute(name) { try H5.check(h.pointee.H5Adelete(id, name), fail("cannot replace attribute '\(name)'").message) }
        let fileType = src.elementType == .numeric(.bool) ? H5Types.boolType.id : src.memType
        let space = try H5Space.simple(src.shape)
        let attr = try H5Handle(checking: h.pointee.H5Acreate2(id, name, fileType, space.id, 0, 0), .attribute,
                                fail("cannot create attribute '\(name)'").message)
        _ = try withExtendedLifetime(src.owner) {
            try H5.check(h.pointee.H5Awrite(attr.id, src.memType, src.buffer), fail("cannot write attribute '\(name)'").message)
        }
    }

    public func deleteAttribute(_ name: String) throws {
        try file.check(path, write: true)
        guard try hasAttribute(name) else { throw fail("no attribute '\(name)'") }
        try H5.check(H5.api.pointee.H5Adelete(try objectID(), name), fail("cannot delete attribute '\(name)'").message)
    }

    /// All attributes, in name order.
    public func attributes() throws -> [(name: String, value: NXValue)] {
        try attributeNames().compactMap { n in
            // An attribute nxlua cannot read is shown as its type, not an error.
            do { return (n, try readAttribute(n)) } catch { return (n, .string("<\(error)>")) }
        }
    }

    /// Renames the object within its group.
    public func rename(to newName: String) throws {
        try file.check(path, write: true)
        guard path != "/" else { throw fail("the root cannot be renamed") }
        try NXGroup.checkName(newName, in: self)
        let parentGroup = parent
        let gid = try parentGroup.objectID()
        guard H5.api.pointee.H5Lexists(gid, newName, 0) <= 0 else { throw fail("cannot rename to '\(newName)': \(parentGroup.path) already has a child of that name") }
        _ = H5.takeError()
        file.forget(under: path)
        try H5.check(H5.api.pointee.H5Lmove(gid, name, gid, newName, 0, 0), fail("cannot rename to '\(newName)'").message)
        parentGroup.forgetChildren()
    }
}
