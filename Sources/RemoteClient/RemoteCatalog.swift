import RemoteServer

/// A server's catalog (nxlua serve --catalog): GET /nxlua/catalog with the connection's
/// credentials. Entries come back named by their domain, loadable with load(domain).
extension RemoteConnection {
    /// One page: the entries as the server sent them and the next page's cursor.
    public func catalogSearch(_ query: String, order: String?, limit: Int, cursor: String?) throws -> (entries: [JSON], next: String?) {
        var items = [("q", query), ("limit", String(limit))]
        if let order { items.append(("order", order)) }
        if let cursor { items.append(("cursor", cursor)) }
        let j = try session.getJSON("/nxlua/catalog" + HTTPSession.query(items), what: "\(session.baseURL): catalog")
        guard case .array(let entries)? = j["entries"] else { throw RemoteError("\(session.baseURL): catalog: the answer has no entries") }
        return (entries, j["next"]?.stringValue)
    }

    public func catalogCount(_ query: String) throws -> Int {
        let j = try session.getJSON("/nxlua/catalog" + HTTPSession.query([("q", query), ("count", "1")]), what: "\(session.baseURL): catalog")
        return j["count"]?.intValue ?? 0
    }

    public func catalogFacets(_ field: String, query: String, limit: Int) throws -> [(value: JSON, count: Int)] {
        let j = try session.getJSON("/nxlua/catalog" + HTTPSession.query([("q", query), ("facets", field), ("limit", String(limit))]),
                                    what: "\(session.baseURL): catalog")
        guard case .array(let list)? = j["facets"] else { throw RemoteError("\(session.baseURL): catalog: the answer has no facets") }
        return list.map { ($0["value"] ?? .null, $0["count"]?.intValue ?? 0) }
    }
}
