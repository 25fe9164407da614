import FolderListing
import Catalog
import NXLuaRuntime
import TerminalProgress
#if canImport(Glibc)
import Glibc
#endif

/// The catalog the commands use: --catalog, else $NXLUA_CATALOG, else ./nxlua-catalog.sqlite.
func catalogLocation(_ a: SubcommandOptions) -> String { a.string("catalog") ?? Catalog.defaultLocation() }

let catalogSpec = SubcommandOptions.Spec(name: "catalog", valueName: "DB",
                                         help: "the catalog: a SQLite file or a postgres:// URL (default $NXLUA_CATALOG, else ./nxlua-catalog.sqlite)")

/// A query error shown under the query, with a caret at the position.
func describeQueryError(_ e: QueryError, query: String) -> String {
    guard e.position > 0 else { return e.message }
    return "\(e.description)\n  \(query)\n  \(String(repeating: " ", count: e.position - 1))^"
}

/// `nxlua catalog add|search|facets|fields`.
enum CatalogCommand {
    static let addSpecs: [SubcommandOptions.Spec] = [
        catalogSpec,
        .init(name: "mapping", valueName: "FILE", help: "a beamline's mapping file (TOML: [field.NAME] tables with type, dimension, paths); recorded in the catalog"),
        .init(name: "force", valueName: nil, help: "harvest again files that have not changed"),
        .init(name: "checksum", valueName: nil, help: "also record each file's SHA-256 (field sha256; reads every byte; with --force for files already registered)"),
        .init(name: "help", valueName: nil, help: "show this help"),
    ]
    static let searchSpecs: [SubcommandOptions.Spec] = [
        catalogSpec,
        .init(name: "order", valueName: "FIELD", help: "sort by a field, '-' first for descending (default: latest registered first)"),
        .init(name: "limit", valueName: "N", help: "entries per page (default 50)"),
        .init(name: "cursor", valueName: "C", help: "continue after a previous page (its 'next' cursor)"),
        .init(name: "json", valueName: nil, help: "one JSON object per entry (fields as harvested, SI values, metadata)"),
        .init(name: "count", valueName: nil, help: "print only the number of matching entries"),
        .init(name: "facets", valueName: "FIELD", help: "print the entries per value of FIELD among the matches"),
        .init(name: "help", valueName: nil, help: "show this help"),
    ]

    static var usage: String {
        """
        usage: nxlua catalog add PATH... [--catalog DB] [--mapping FILE] [--force] [--checksum]
               nxlua catalog search 'QUERY' [--catalog DB] [--order FIELD] [--limit N] [--json] [--count] [--facets FIELD]
               nxlua catalog fields [--catalog DB]
        Registers NeXus/HDF5 files (folders are walked; unchanged files skipped) and finds
        them by their metadata. Queries: field:value, field:[low TO high] with units
        (temperature:[250 K TO 30 degC]), field:>=value, exists:field or field:*, "free text",
        AND, OR, NOT and parentheses; meta.PATH:value for undeclared metadata.
        add options:
        \(SubcommandOptions.helpLines(addSpecs))
        search options:
        \(SubcommandOptions.helpLines(searchSpecs))
        See docs/catalog.md.
        """
    }

    static func run(_ arguments: [String]) -> Int32 {
        guard let verb = arguments.first, !verb.hasPrefix("-") else {
            if arguments.contains("--help") || arguments.contains("-h") { print(usage); return 0 }
            FileHandleOutput.error("nxlua catalog: give add, search or fields\n\(usage)\n")
            return 1
        }
        let rest = Array(arguments.dropFirst())
        switch verb {
        case "add": return add(rest)
        case "search": return search(rest)
        case "fields": return fields(rest)
        default:
            FileHandleOutput.error("nxlua catalog: unknown command '\(verb)' (add, search or fields)\n\(usage)\n")
            return 1
        }
    }

    static func add(_ arguments: [String]) -> Int32 {
        SubcommandOptions.run("catalog add", specs: addSpecs, usage: usage, arguments: arguments) { a in
            guard !a.positional.isEmpty else { throw SubcommandOptions.UsageError(message: "give the files or folders to register") }
            var mapping: Mapping? = nil
            if let m = a.string("mapping") {
                guard let text = FolderListing.readText(m) else { throw CatalogError("\(m): cannot read the mapping file") }
                mapping = try Mapping.parse(text, source: m)
            }
            let catalog = try Catalog(location: catalogLocation(a), mapping: mapping)
            defer { catalog.close() }
            var bar: ProgressBar? = nil
            let summary = try catalog.register(a.positional, force: a.flag("force"), checksum: a.flag("checksum")) { done, total in
                if bar == nil { bar = ProgressBar(label: "registering", total: total, unit: "files") }
                bar?.update(done)
            }
            bar?.finish()
            var line = "\(catalog.engine.location): \(summary.registered) files registered (\(summary.entries) entries)"
            line += ", \(summary.unchanged) unchanged"
            if summary.bad > 0 { line += ", \(summary.bad) bad (recorded with the reason: nxlua catalog search status:bad)" }
            print(line)
            return 0
        }
    }

    static func search(_ arguments: [String]) -> Int32 {
        SubcommandOptions.run("catalog search", specs: searchSpecs, usage: usage, arguments: arguments) { a in
            let text = a.positional.joined(separator: " ")
            let catalog = try Catalog(location: catalogLocation(a))
            defer { catalog.close() }
            let query: CatalogQuery
            do {
                query = try CatalogQuery.parse(text)
                if a.flag("count") { print(try catalog.count(query)); return 0 }
                if let f = a.string("facets") {
                    for (v, n) in try catalog.facets(f, query: query) { print("\(n)\t\(plain(v))") }
                    return 0
                }
                let page = try catalog.search(query, order: a.string("order"), limit: try a.int("limit", atLeast: 1) ?? 50,
                                              cursor: a.string("cursor"))
                for e in page.entries { print(a.flag("json") ? json(e, catalog.mapping).text : line(e)) }
                if let next = page.next { FileHandleOutput.error("more: --cursor \(next)\n") }
            } catch let e as QueryError {
                throw CatalogError(describeQueryError(e, query: text))
            }
            return 0
        }
    }

    static func fields(_ arguments: [String]) -> Int32 {
        SubcommandOptions.run("catalog fields", specs: [catalogSpec, .init(name: "help", valueName: nil, help: "show this help")],
                              usage: usage, arguments: arguments) { a in
            let catalog = try Catalog(location: catalogLocation(a))
            defer { catalog.close() }
            for f in catalog.mapping.fields {
                let kind = f.type.rawValue + (f.dimension == .none ? "" : " (\(f.dimension.rawValue), SI \(f.dimension.siUnit))")
                print("\(f.name)\t\(kind)\t\(f.summary)" + (f.paths.isEmpty ? "" : "\t" + f.paths.joined(separator: ", ")))
            }
            return 0
        }
    }

    static func plain(_ v: CatalogJSON) -> String { v.stringValue ?? v.text }

    static func show(_ v: FieldValue) -> String {
        switch v {
        case .text(let s): return s.contains(" ") ? "\"\(s)\"" : s
        case .number(let x, let u, _): return u.map { "\(x) \($0)" } ?? "\(x)"
        case .integer(let i): return "\(i)"
        case .time(let s, _): return s
        }
    }

    /// path:/entry  sample=LaB6 temperature=300 K ...
    static func line(_ e: CatalogEntry) -> String {
        var out = e.entry.isEmpty ? e.path : "\(e.path):/\(e.entry)"
        let skip: Set<String> = ["path", "entry", "size", "mtime"]
        for (k, v) in e.fields.sorted(by: { $0.key < $1.key }) where !skip.contains(k) { out += "  \(k)=\(show(v))" }
        return out
    }

    static func json(_ e: CatalogEntry, _ m: Mapping) -> CatalogJSON {
        var fields: [String: CatalogJSON] = [:], si: [String: CatalogJSON] = [:]
        for (k, v) in e.fields {
            fields[k] = v.harvested
            si[k] = v.normalised
        }
        return .object(["path": .string(e.path), "entry": .string(e.entry), "fields": .object(fields), "si": .object(si),
                        "metadata": .object(e.metadata.mapValues { .string($0) })])
    }
}

/// `nxlua macros --catalog DB`: files macro.write_process writes are registered as derived
/// data of the file the event was about (a failure is logged; the macro goes on).
func registerDerivedData(in location: String, log: @escaping @Sendable (String) -> Void) throws {
    let catalog = try Catalog(location: location)
    MacroSetup.processWritten = { file, source in
        var fields: [String: FieldValue] = [:]
        let abs = Catalog.absolute(file)
        if let s = source.map(Catalog.absolute), s != abs {
            fields["source"] = .text(s)
            fields["kind"] = .text("derived")
        }
        do { try catalog.record(abs, fields: fields) } catch { log("macros: catalog: \(abs): \(error)") }
    }
}
