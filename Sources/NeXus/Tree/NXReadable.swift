import NDArray

/// The read side of a tree node, whatever holds the data: a local HDF5 file (NXGroup,
/// NXField) or a remote one (RemoteClient's nodes). The tree text (NXTree), the NXdata
/// rules (NXData) and the streaming reductions (NXStream) are written once against these
/// protocols, so a remote file prints and reduces exactly as a local one.
public protocol NXReadableNode: AnyObject {
    /// Absolute path in the file ("/entry/data/counts").
    var path: String { get }
    /// How the parent links to this object (nil for the root).
    var link: NXLinkKind? { get }
    /// "NXentry", "NXdata", ... for groups, "NXfield" for fields, "NXroot" for the root.
    var nxclass: String { get }
    /// Where the node lives, for errors: the file's path or the server and domain.
    var location: String { get }
    /// The parent group (the root is its own parent).
    var parentGroup: any NXReadableGroup { get }
    /// This node as a group (nil for a field) and as a field (nil for a group).
    var readableGroup: (any NXReadableGroup)? { get }
    var readableField: (any NXReadableField)? { get }
    func attributeNames() throws -> [String]
    /// An attribute's value, nil when there is none.
    func attribute(_ name: String) throws -> NXValue?
    /// All attributes, in name order (an unreadable one shown as text).
    func attributes() throws -> [(name: String, value: NXValue)]
    /// A string attribute (first element of a string array), nil otherwise.
    func stringAttribute(_ name: String) -> String?
}

/// A group: children in natural order.
public protocol NXReadableGroup: NXReadableNode {
    func entries() throws -> [NXEntry]
    /// The child named `name`, nil if there is none; an error for a link leading nowhere.
    func childNode(_ name: String) throws -> (any NXReadableNode)?
    /// Forgets what is cached below this group (child lists, shapes, attributes), so that
    /// the next reads see what another writer added.
    func refresh() throws
}

/// Reads rows `range` of the first axis into the leading rows of a contiguous buffer of
/// the field's dtype and row shape. Runs on a reader thread: it must not touch the tree.
public typealias NXRowReader = @Sendable (_ range: Range<Int>, _ buffer: NDArray) throws -> Void

/// A field: shape, type, storage, and reads of any selection.
public protocol NXReadableField: NXReadableNode {
    var shape: [Int] { get throws }
    var maxshape: [Int?] { get throws }
    var elementType: ElementType { get throws }
    /// Chunk shape, nil for contiguous storage.
    var chunks: [Int]? { get throws }
    /// The compression, named as nx.field takes it ("gzip", "bitshuffle+lz4", "lz4",
    /// "blosc", "lzf"), nil when there is none.
    var compression: String? { get throws }
    /// "contiguous", "chunked", "compact" or "virtual" (h5py's layouts), as the storage
    /// reports it (a server may name a virtual dataset contiguous).
    var layout: String { get throws }
    /// The value when the field is small (the tree text shows it), nil for big fields.
    func smallValue() throws -> NXValue?
    /// Exactly the selection (nil: everything); integer indices drop their axis.
    func read(_ selection: Selection?) throws -> NXValue
    /// A reader of rows for the streaming reductions (NXBlocks).
    func rowReader() throws -> NXRowReader
    /// Reads the shape again (a file another process grows: new frames).
    func refresh() throws
}

extension NXReadableNode {
    public var name: String { path == "/" ? "" : String(path.split(separator: "/").last ?? "") }

    /// An error naming this node ("file: /entry/data: problem").
    public func nodeError(_ problem: String) -> NeXusError { NeXusError("\(location): \(path): \(problem)") }

    /// Runs array work, naming this node in its errors.
    public func arrayWork<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ArrayError { throw nodeError(e.message) }
    }

    /// The root group.
    public var rootGroup: any NXReadableGroup {
        var g = parentGroup
        while g.path != "/" { g = g.parentGroup }
        return g
    }
}

extension NXReadableGroup {
    public func childNames() throws -> [String] { try entries().map(\.name) }

    /// An object by path: absolute ("/entry/data") or relative ("data/counts", "..").
    public func resolveNode(_ relative: String) throws -> (any NXReadableNode)? {
        var node: any NXReadableNode = relative.hasPrefix("/") ? rootGroup : self
        if relative.hasPrefix("/"), path == "/" { node = self }
        for part in relative.split(separator: "/") where part != "." {
            if part == ".." { node = node.parentGroup; continue }
            guard let g = node as? any NXReadableGroup else { throw nodeError("'\(relative)': \(node.path) is a field, not a group") }
            guard let next = try g.childNode(String(part)) else { return nil }
            node = next
        }
        return node
    }

    /// Direct children of an NX class ("NXdata").
    public func childNodes(ofClass nxclass: String) throws -> [any NXReadableNode] {
        try entries().filter { $0.kind != .missing }.compactMap { try childNode($0.name) }.filter { $0.nxclass == nxclass }
    }

    /// All descendants of an NX class, depth first in natural order (links not followed twice).
    public func findNodes(_ nxclass: String) throws -> [any NXReadableNode] {
        var out: [any NXReadableNode] = []
        var seen: Set<String> = []
        func walk(_ g: any NXReadableGroup) throws {
            for e in try g.entries() where e.kind != .missing {
                guard let c = try g.childNode(e.name) else { continue }
                if c.nxclass == nxclass { out.append(c) }
                if let cg = c as? any NXReadableGroup, e.link == .hard, seen.insert(cg.path).inserted { try walk(cg) }
            }
        }
        try walk(self)
        return out
    }
}

extension NXReadableField {
    public var count: Int { get throws { try shape.reduce(1, *) } }
}

// The local tree: HDF5 files opened by NXFile.
extension NXNode: NXReadableNode {
    public var location: String { file.path }
    public var parentGroup: any NXReadableGroup { parent }
}

extension NXGroup: NXReadableGroup {
    public func childNode(_ name: String) throws -> (any NXReadableNode)? { try child(name) }
    public func refresh() throws { try file.refresh(under: path) }
}

extension NXField: NXReadableField {
    public var compression: String? { get throws { try filters.first { $0 != "shuffle" } } }
}
