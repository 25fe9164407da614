import Catalog
import Hummingbird

/// GET /nxlua/catalog?q=QUERY[&order=F][&limit=N][&cursor=C][&facets=FIELD][&count=1]:
/// the catalog given with --catalog, with the server's authentication. Only entries of
/// files inside the served folder exist for a client, in pages, counts and facets alike
/// (the condition is part of the SQL). Paths are answered as domains.
extension Responder {
    func catalogRoute(_ c: Call) async throws -> Response {
        guard let catalog = server.catalog else {
            throw ServeError(404, "this server has no catalog (start it with --catalog DB)")
        }
        let root = server.resolver.root
        let text = c.query["q"] ?? ""
        let limit = Int(c.query["limit"] ?? "") ?? 100
        guard (1...1000).contains(limit) else { throw ServeError(400, "catalog: limit must be 1 to 1000") }
        let order = c.query["order"], cursor = c.query["cursor"], facet = c.query["facets"]
        // only files the user may read are found, counted and faceted
        let visible = c.access.absoluteFolders(root: root)
        let wantsCount = c.flag("count")
        do {
            let answer: JSON = try await server.queryPool.runIfActive {
                let query = try CatalogQuery.parse(text)
                if let facet {
                    let list = try catalog.facets(facet, query: query, limit: limit, visibleUnder: visible)
                    return .obj(["field": .string(facet), "facets": .array(list.map { .obj(["value": Responder.json($0.value), "count": .int(Int64($0.count))]) })])
                }
                if wantsCount { return .obj(["count": .int(Int64(try catalog.count(query, visibleUnder: visible)))]) }
                let page = try catalog.search(query, order: order, limit: limit, cursor: cursor, visibleUnder: visible)
                return .obj([
                    "entries": .array(page.entries.map { Responder.entryJSON($0, root: root) }),
                    "next": page.next.map { .string($0) } ?? .null,
                ])
            }
            return json(answer, c)
        } catch let e as QueryError {
            throw ServeError(400, "catalog query: \(e.description)")
        } catch let e as CatalogError {
            throw ServeError(500, e.message)
        }
    }

    static func sorted(_ d: [String: JSON]) -> JSON {
        .object(d.sorted { $0.key < $1.key }.map { JSON.Member($0.key, $0.value) })
    }

    static func json(_ v: CatalogJSON) -> JSON {
        switch v {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .array(let a): return .array(a.map(json))
        case .object(let o): return sorted(o.mapValues(json))
        }
    }

    /// An entry for a client: its domain (the path inside the served folder, never the
    /// server's own path), fields as harvested, SI values, metadata.
    static func entryJSON(_ e: CatalogEntry, root: String) -> JSON {
        let domain = e.path.hasPrefix(root + "/") ? String(e.path.dropFirst(root.count)) : e.path
        var fields: [String: JSON] = [:], si: [String: JSON] = [:]
        for (k, v) in e.fields where k != "path" && k != "source" {
            fields[k] = json(v.harvested)
            si[k] = json(v.normalised)
        }
        if case .text(let s)? = e.fields["source"], s.hasPrefix(root + "/") { fields["source"] = .string(String(s.dropFirst(root.count))) }
        return .obj(["domain": .string(domain), "entry": .string(e.entry), "fields": sorted(fields), "si": sorted(si),
                     "metadata": sorted(e.metadata.mapValues { .string($0) })])
    }
}
