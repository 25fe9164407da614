/// One harvested file, stored with its entries in one transaction: a registration killed
/// at any moment leaves each file either as it was or fully replaced, and since the size
/// and time stamp travel with the entries, a rerun redoes exactly the unfinished files.
public struct FileRecord: Sendable {
    public var path: String
    public var size: Int64
    public var mtime: Double
    public var entries: [CatalogEntry]
    public init(path: String, size: Int64, mtime: Double, entries: [CatalogEntry]) {
        self.path = path
        self.size = size
        self.mtime = mtime
        self.entries = entries
    }
}

/// What a storage engine provides; the catalog's SQL comes from QueryCompiler and
/// Catalog, written once for both dialects.
public protocol CatalogEngine: AnyObject, Sendable {
    var dialect: SQLDialect { get }
    /// Where the catalog is, for messages (a file, or a URL without its password).
    var location: String { get }
    /// Creates the tables, the declared fields' indexes and records the fields.
    func prepare(fields: [FieldDeclaration]) throws
    /// The fields recorded in the catalog (empty for a new one).
    func storedFields() throws -> [FieldDeclaration]
    /// Size and time stamp of the registered files among `paths`.
    func stamps(_ paths: [String]) throws -> [String: (size: Int64, mtime: Double)]
    /// Replaces the entries of these files, all in one transaction.
    func replace(_ files: [FileRecord]) throws
    /// Rows of a SELECT (each column as JSON-like values).
    func select(_ sql: String, _ arguments: [CatalogJSON]) throws -> [[CatalogJSON]]
    func close()
}

extension FieldDeclaration {
    /// Fields that get an index of their own (others are still queryable, by a scan).
    /// Few: each index slows registration (measured at 1M entries: 28k entries/s with
    /// four, 3k/s with fourteen). Instrument is indexed alone (equal values in id order:
    /// "instrument AND a range" walks it in the page's order and stops at the page, 120 ->
    /// 0.5 ms at 1M entries) and with start_time (the latest scan, Catalog).
    /// Fields a beamline's mapping file adds are indexed: it declared them to search.
    var indexed: Bool {
        ["sample", "formula", "temperature", "start_time", "instrument"].contains(name) || !Mapping.standard.fields.contains(where: { $0.name == name })
    }

    var storedText: String {
        [name, type.rawValue, dimension.rawValue, summary, paths.joined(separator: "\n")].map { $0.replacingAll("\t", " ") }.joined(separator: "\t")
    }

    static func fromStored(_ text: String) -> FieldDeclaration? {
        let p = text.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        guard p.count == 5, let t = FieldType(rawValue: p[1]), let d = Dimension(rawValue: p[2]), validName(p[0]) else { return nil }
        return FieldDeclaration(p[0], t, d, paths: p[4].isEmpty ? [] : p[4].split(separator: "\n").map(String.init), p[3])
    }
}
