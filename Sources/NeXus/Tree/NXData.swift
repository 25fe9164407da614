import NDArray

/// NXdata by the NeXus rules: the signal, its axes and errors, the @default chain, and
/// selections by axis value (nexusformat's rule for float slices). Written once for local
/// and remote groups (NXReadable).
extension NXReadableGroup {
    /// The signal field: group @signal, else the legacy field with @signal=1, else the
    /// only field of the group.
    public func signalField() throws -> (any NXReadableField)? {
        if let name = stringAttribute("signal"), let f = try childNode(name) as? any NXReadableField { return f }
        let fields = try entries().filter { $0.kind == .field }
        for e in fields {
            guard let f = try childNode(e.name) as? any NXReadableField else { continue }
            if let v = try? f.attribute("signal"), NXGroup.text(v) == "1" { return f }
        }
        if fields.count == 1, try entries().count == 1 { return try childNode(fields[0].name) as? any NXReadableField }
        return nil
    }

    /// The pixel mask of an image of `imageShape` this NXdata shows: a `pixel_mask` next to
    /// the data, else the entry detector's (Eiger's in detectorSpecific), when its shape
    /// (size-1 axes dropped) is the image's. Plots and the web viewer apply it.
    public func pixelMaskField(imageShape: [Int]) -> (any NXReadableField)? {
        var candidates: [any NXReadableNode] = []
        if let m = try? childNode("pixel_mask") { candidates.append(m) }
        let entry = parentGroup
        for p in ["instrument/detector/pixel_mask", "instrument/detector/detectorSpecific/pixel_mask"] {
            if let m = (try? entry.resolveNode(p)).flatMap({ $0 }) { candidates.append(m) }
        }
        for c in candidates {
            if let f = c as? any NXReadableField, (try? f.shape)?.filter({ $0 != 1 }) == imageShape { return f }
        }
        return nil
    }

    /// Axis fields per signal dimension (nil where the axis is a placeholder "." or
    /// absent): group @axes with AXISNAME_indices, legacy @axes on the signal, legacy
    /// @axis=N (1-based) on the axis fields.
    public func axisFields() throws -> [(any NXReadableField)?] {
        guard let signal = try signalField() else { return [] }
        let rank = try signal.shape.count
        var out = [(any NXReadableField)?](repeating: nil, count: rank)
        let names = try (attribute("axes") ?? signal.attribute("axes")).map(NXGroup.axisNames) ?? []
        if !names.isEmpty {
            for (i, n) in names.enumerated() where n != "." && !n.isEmpty {
                let field = try childNode(n) as? any NXReadableField
                if let idx = try attribute("\(n)_indices"), case .array(let a) = idx, a.count >= 1 {
                    let k = Int((try? a.integer(at: Array(repeating: 0, count: a.ndim))) ?? -1)
                    if k >= 0 && k < rank { out[k] = field }
                } else if i < rank {
                    out[i] = field
                }
            }
            return out
        }
        for e in try entries() where e.kind == .field {
            guard let f = try childNode(e.name) as? any NXReadableField, let v = try? f.attribute("axis"),
                  case .array(let a) = v, let k = try? a.integer(at: Array(repeating: 0, count: a.ndim)) else { continue }
            if k >= 1 && Int(k) <= rank { out[Int(k) - 1] = f }
        }
        return out
    }

    /// `<signal>_errors`, else the signal's @uncertainties, else a field named `errors`
    /// (only when its shape is the signal's).
    public func errorsField() throws -> (any NXReadableField)? {
        guard let s = try signalField() else { return nil }
        var candidates = ["\(s.name)_errors"]
        if let u = s.stringAttribute("uncertainties") { candidates.append(u) }
        candidates.append("errors")
        for n in candidates {
            if let f = try childNode(n) as? any NXReadableField, try f.shape == s.shape { return f }
        }
        return nil
    }

    /// The NXdata that @default points to, following root -> entry -> data; without
    /// @default, the first NXdata of the first entry (nexusformat's plottable data).
    public func defaultDataGroup() throws -> (any NXReadableGroup)? {
        var g: any NXReadableGroup = self
        var seen: Set<String> = []
        while g.nxclass != "NXdata" {
            guard seen.insert(g.path).inserted else { break }
            if let d = g.stringAttribute("default"), let next = try g.childNode(d) as? any NXReadableGroup {
                g = next
                continue
            }
            break
        }
        if g.nxclass == "NXdata" { return g }
        if let d = try g.childNodes(ofClass: "NXdata").first as? any NXReadableGroup { return d }
        for e in try g.childNodes(ofClass: "NXentry") {
            if let d = try (e as? any NXReadableGroup)?.defaultDataGroup() { return d }
        }
        return nil
    }

    /// Turns float bounds into positions with nexusformat's rule: bounds are matched
    /// against bin boundaries (midpoints of the axis values, or the axis itself when it
    /// holds n+1 edges); a single float picks the bin it falls in.
    public func positions(_ selection: Selection) throws -> Selection {
        guard selection.hasFloatBounds else { return selection }
        guard let signal = try signalField() else { throw nodeError("no signal to select from") }
        let shape = try signal.shape
        let axes = try self.axisFields()
        let explicit = selection.items.filter { $0 != .ellipsis }.count
        var items: [Selection.Item] = []
        var axis = 0
        for item in selection.items {
            if item == .ellipsis {
                items.append(item)
                axis += shape.count - explicit
                continue
            }
            defer { axis += 1 }
            guard Selection([item]).hasFloatBounds else { items.append(item); continue }
            guard axis < shape.count, let field = axes[axis] else {
                throw nodeError("float index on axis \(axis), which has no axis values to select by")
            }
            guard case .array(let values) = try field.read(nil), values.ndim == 1 else {
                throw nodeError("axis \(field.name) is not a 1-D numeric field")
            }
            let edges = NXGroup.boundaries(try values.contiguous().doubles(), bins: shape[axis])
            guard edges.count == shape[axis] + 1 else {
                throw nodeError("axis \(field.name) has \(values.count) values for \(shape[axis]) points")
            }
            items.append(NXGroup.position(item, edges: edges))
        }
        return Selection(items)
    }
}

/// The typed forms the local binding uses.
extension NXGroup {
    public func signal() throws -> NXField? { try signalField() as? NXField }
    public func axes() throws -> [NXField?] { try axisFields().map { $0 as? NXField } }
    public func errors() throws -> NXField? { try errorsField() as? NXField }
    public func defaultData() throws -> NXGroup? { try defaultDataGroup() as? NXGroup }

    static func axisNames(_ v: NXValue) -> [String] {
        switch v {
        case .strings(let s, let shape):
            if shape.isEmpty, let t = s.first {
                var text = Substring(t)
                while let f = text.first, "[(".contains(f) { text.removeFirst() }
                while let l = text.last, "])".contains(l) { text.removeLast() }
                return text.replacingOccurrences("][", ":").split(whereSeparator: { ",:; ".contains($0) }).map(String.init)
            }
            return s
        default: return []
        }
    }

    static func text(_ v: NXValue) -> String {
        switch v {
        case .strings(let s, _): return s.first ?? ""
        case .array(let a): return a.count == 1 ? ((try? a.contiguous().doubles().first).flatMap { $0 }.map { $0 == $0.rounded() ? String(Int64($0)) : "\($0)" } ?? "") : ""
        case .records: return ""
        }
    }

    static func boundaries(_ v: [Double], bins n: Int) -> [Double] {
        if v.count == n + 1 || v.count < 2 { return v.count == 1 && n == 1 ? [v[0] - 0.5, v[0] + 0.5] : v }
        var e = [v[0] - (v[1] - v[0]) / 2]
        for i in 0..<(v.count - 1) { e.append((v[i] + v[i + 1]) / 2) }
        e.append(v[v.count - 1] + (v[v.count - 1] - v[v.count - 2]) / 2)
        return e
    }

    static func position(_ item: Selection.Item, edges raw: [Double]) -> Selection.Item {
        // A decreasing axis is handled as the increasing one of negated values.
        let decreasing = raw.count > 1 && raw[raw.count - 1] < raw[0]
        let e = decreasing ? raw.map { -$0 } : raw
        let bins = e.count - 1
        func value(_ b: Selection.Bound) -> Double {
            switch b { case .int(let i): return decreasing ? -Double(i) : Double(i)
                       case .float(let d): return decreasing ? -d : d }
        }
        func lower(_ v: Double) -> Int {  // last edge <= v, or the next within 1% of a step
            var i = (e.lastIndex { $0 <= v }) ?? 0
            if i + 1 < e.count, e[i + 1] - v < 0.01 * (e[i + 1] - e[i]) { i += 1 }
            return min(max(i, 0), bins - 1)
        }
        func upper(_ v: Double) -> Int {  // first edge >= v, or the previous within 1%
            var i = (e.firstIndex { $0 >= v }) ?? (e.count - 1)
            if i > 0, v - e[i - 1] < 0.01 * (e[i] - e[i - 1]) { i -= 1 }
            return min(max(i, 0), bins)
        }
        switch item {
        case .index(let b):
            return .index(.int(lower(value(b))))
        case .range(var a, var b, let step):
            if let x = a, let y = b, value(x) > value(y) { swap(&a, &b) }
            let start = a.map { lower(value($0)) } ?? 0
            let stop = b.map { upper(value($0)) } ?? bins
            if let x = a, let y = b, abs(value(x) - value(y)) <= 1e-9 * max(1, abs(value(x))) { return .index(.int(start)) }
            if stop <= start + 1 { return .index(.int(start)) }  // one bin drops the axis, as in nexusformat
            return .range(.int(start), .int(stop), step)
        case .ellipsis:
            return item
        }
    }
}

extension Substring {
    func replacingOccurrences(_ a: String, _ b: String) -> String {
        var out = ""
        var rest = self
        while let r = rest.firstRange(of: a) {
            out += rest[..<r.lowerBound] + b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
