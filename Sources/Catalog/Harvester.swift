import Crypto
import NDArray
import NeXus
#if canImport(Glibc)
import Glibc
#endif

/// Reads a NeXus/HDF5 file into catalog entries, one per NXentry, through the mapping.
/// A file that cannot be read becomes one entry with status "bad" and the reason.
public struct Harvester: Sendable {
    public let mapping: Mapping
    /// Undeclared values gathered per entry at most (a file with thousands of small
    /// fields still registers in milliseconds).
    public var metadataLimit = 400
    /// Also the SHA-256 of the file's bytes (field sha256): reads the whole file, so only
    /// on request (catalog add --checksum).
    public var checksum = false

    public init(mapping: Mapping = .standard) { self.mapping = mapping }

    /// The SHA-256 of a file, hex, read in 8 MiB blocks; nil when it cannot be read.
    public static func sha256(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        var hasher = SHA256()
        let size = 8 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
        defer { buffer.deallocate() }
        while true {
            let n = read(fd, buffer.baseAddress, size)
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        return hasher.finalize().map { byte in
            let digits = Array("0123456789abcdef")
            return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
        }.joined()
    }

    /// The file's size and modification time (what decides whether it changed).
    public static func fileStamp(_ path: String) -> (size: Int64, mtime: Double)? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return (Int64(st.st_size), Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) * 1e-9)
    }

    static func realFolder(of path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        let real = String(cString: p)
        return String(real[..<(real.lastIndex(of: "/") ?? real.endIndex)])
    }

    public func harvest(_ path: String) -> [CatalogEntry] {
        var base: [String: FieldValue] = [:]
        if let s = Harvester.fileStamp(path) {
            base["size"] = .integer(s.size)
            base["mtime"] = .time(NXTime.iso(s.mtime), seconds: s.mtime)
        }
        if checksum, let sum = Harvester.sha256(path) { base["sha256"] = .text(sum) }
        // a SPEC data file (text starting with '#'): one entry per scan
        if Harvester.looksLikeSpec(path), let entries = harvestSpec(path, base: base) { return entries }
        do {
            var o = NXFile.Options()
            o.eagerLimit = 64
            // external links only to files next to this one or below (an Eiger master's
            // data files): never metadata of files elsewhere, which a server's catalog
            // would show to users of the served folder
            o.externalLinksWithin = Harvester.realFolder(of: path)
            let file: NXFile
            do { file = try NXFile(path: path, mode: .read, options: o) } catch {
                // a file a stacker is writing (SWMR) opens as a SWMR reader
                var s = o
                s.swmr = true
                guard let f = try? NXFile(path: path, mode: .read, options: s) else { throw error }
                file = f
            }
            defer { try? file.close() }
            var out: [CatalogEntry] = []
            for node in try file.root.children(ofClass: "NXentry") {
                guard let g = node as? NXGroup else { continue }
                var e = CatalogEntry(path: path, entry: g.name, fields: base)
                try harvestEntry(g, into: &e)
                out.append(e)
            }
            if out.isEmpty {
                var e = CatalogEntry(path: path, entry: "", fields: base)
                e["kind"] = .text("raw")
                e["status"] = .text("bad")
                e["error"] = .text("\(path): no NXentry group (not a NeXus file)")
                out.append(e)
            }
            return out
        } catch {
            var e = CatalogEntry(path: path, entry: "", fields: base)
            e["kind"] = .text("raw")
            e["status"] = .text("bad")
            e["error"] = .text("\(error)")
            return [e]
        }
    }

    func harvestEntry(_ entry: NXGroup, into e: inout CatalogEntry) throws {
        for f in mapping.fields where !f.paths.isEmpty {
            for p in f.paths {
                guard let node = try? resolve(p, in: entry), let field = node as? NXField else { continue }
                if let v = try? value(of: field, as: f) {
                    e[f.name] = v
                    break
                }
            }
        }
        // the default NXdata's signal: shape, type, frames
        if let data = try? entry.defaultData(), let signal = try? data.signal(), let shape = try? signal.shape {
            e["signal_shape"] = .text(shape.map(String.init).joined(separator: "x"))
            e["signal_dtype"] = .text((try? signal.elementType.name) ?? "?")
            e["frames"] = .integer(Int64(shape.count >= 3 ? shape[0] : shape.count == 2 ? 1 : shape.first ?? 0))
        }
        var kind = "raw"
        // the stacker's provenance
        if let stacking = try? entry.child("stacking") as? NXGroup {
            kind = "stack"
            if let src = stacking.stringAttribute("source") { e["stack_source"] = .text(src) }
            if let status = try? stacking.child("frame_status") as? NXField, let v = try? status.read(nil), case .array(let a) = v {
                let codes = numbers(a)
                e["bad_frames"] = .integer(Int64(codes.filter { $0 == 2 }.count))
                e["frames"] = .integer(Int64(codes.filter { $0 == 1 || $0 == 2 }.count))
            }
        }
        // NXprocess groups: derived data
        var programs: [String] = [], hashes: [String] = []
        for p in (try? entry.children(ofClass: "NXprocess")) ?? [] {
            guard let g = p as? NXGroup else { continue }
            kind = kind == "stack" ? kind : "derived"
            if let t = try? text(g.child("program")) { programs.append(t) }
            if let t = try? text(g.child("macro_hash")) { hashes.append(t) }
            if e["source"] == nil, let t = try? text(g.child("source")) { e["source"] = .text(t) }
        }
        if !programs.isEmpty { e["program"] = .text(programs.joined(separator: ", ")) }
        if !hashes.isEmpty { e["macro_hash"] = .text(hashes.joined(separator: ", ")) }
        if kind == "raw", (try? entry.children(ofClass: "NXprocess").isEmpty) == false { kind = "derived" }
        e["kind"] = .text(kind)
        if e["status"] == nil { e["status"] = .text("ok") }
        var budget = metadataLimit
        collectMetadata(entry, prefix: "", into: &e.metadata, budget: &budget, depth: 0)
    }

    /// A mapping path inside `entry` (see Mapping).
    func resolve(_ path: String, in entry: NXGroup) throws -> NXNode? {
        var node: NXNode = path.hasPrefix("/") ? entry.file.root : entry
        for part in path.split(separator: "/") {
            guard let g = node as? NXGroup else { return nil }
            let name = String(part)
            if name.count > 2, name.hasPrefix("NX"), let c = name.unicodeScalars.dropFirst(2).first, ("a"..."z").contains(c) {
                guard let child = try g.children(ofClass: name).first else { return nil }
                node = child
            } else {
                guard let child = try g.child(name) else { return nil }
                node = child
            }
        }
        return node
    }

    func text(_ node: NXNode?) throws -> String? {
        guard let f = node as? NXField, let v = try f.smallValue() else { return nil }
        return describe(v)
    }

    func value(of field: NXField, as declared: FieldDeclaration) throws -> FieldValue? {
        guard let v = try field.smallValue() ?? (try? field.count <= 100_000 ? field.read(nil) : nil) else { return nil }
        switch declared.type {
        case .text:
            // per-frame text (areaDetector's NDAttributes): each distinct value once
            if case .strings(let list, let shape) = v, shape.count == 1, list.count > 1 {
                var seen: [String] = []
                for t in list.map({ $0.trimmed(" \t\r\n\0") }) where !t.isEmpty && !seen.contains(t) { seen.append(t) }
                return seen.isEmpty ? nil : .text(seen.joined(separator: ", "))
            }
            guard let s = describe(v), !s.isEmpty else { return nil }
            return .text(s)
        case .integer:
            guard case .array(let a) = v, let x = numbers(a).first else { return nil }
            return .integer(Int64(x))
        case .number:
            let xs: [Double]
            switch v {
            case .array(let a): xs = numbers(a).filter { $0.isFinite }
            case .strings(let s, _): xs = s.compactMap { Double($0.trimmed(" ")) }
            default: return nil
            }
            guard !xs.isEmpty else { return nil }
            let mean = xs.reduce(0, +) / Double(xs.count)
            let units = field.stringAttribute("units")
            // a unit of the wrong dimension is not this field: the next path may be
            let si = try Units.toSI(mean, unit: units, dimension: declared.dimension)
            return .number(mean, units: units, si: si)
        case .time:
            guard let s = describe(v), let t = NXTime.seconds(s) else { return nil }
            return .time(s, seconds: t)
        }
    }

    func numbers(_ a: NDArray) -> [Double] {
        guard let flat = try? a.reshapedView([a.count]) else { return [] }
        return (0..<a.count).compactMap { try? flat.value(at: [$0]) }
    }

    /// A small value as text: strings joined, numbers as written.
    func describe(_ v: NXValue) -> String? {
        switch v {
        case .strings(let s, _): return s.joined(separator: " ").trimmed(" \t\r\n\0")
        case .array(let a):
            guard a.count <= 16 else { return nil }
            return numbers(a).map { $0 == $0.rounded() && abs($0) < 1e15 ? String(Int64($0)) : "\($0)" }.joined(separator: " ")
        case .records: return nil
        }
    }

    /// Small undeclared values of the entry, by relative path; big fields and NXdata's
    /// arrays are never read.
    func collectMetadata(_ g: NXGroup, prefix: String, into out: inout [String: String], budget: inout Int, depth: Int) {
        guard depth < 6, let entries = try? g.entries() else { return }
        for entry in entries where budget > 0 {
            let key = prefix.isEmpty ? entry.name : prefix + "/" + entry.name
            switch entry.kind {
            case .group:
                guard let child = try? g.child(entry.name) as? NXGroup else { continue }
                collectMetadata(child, prefix: key, into: &out, budget: &budget, depth: depth + 1)
            case .field:
                guard let f = try? g.child(entry.name) as? NXField, let n = try? f.count, n <= 16,
                      let v = try? f.smallValue(), let s = describe(v), !s.isEmpty else { continue }
                out[key] = s.count > 1024 ? String(s.prefix(1024)) : s
                budget -= 1
            case .missing: continue
            }
        }
    }
}

