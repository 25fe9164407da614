import NeXus
import NDArray
import SpecFile
#if canImport(Glibc)
import Glibc
#endif

/// SPEC data files in the catalog: one entry per scan, named as spec2nexus names its
/// NXentry ("S12", "S12.1" for a repeated number), so an entry found here is the same
/// entry in the converted file. The sample and its temperature come from comments, columns
/// and motors by SpecFile's rules (SpecSample.swift), which the stacker's --spec shares.
extension Harvester {
    static func isTemperatureUnit(_ unit: String) -> Bool {
        (try? Units.toSI(1, unit: unit, dimension: .temperature)) != nil
    }

    /// True when the file begins like a SPEC data file (its first non-blank byte is '#').
    public static func looksLikeSpec(_ path: String) -> Bool {
        guard let f = fopen(path, "r") else { return false }
        defer { fclose(f) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = fread(&buffer, 1, buffer.count, f)
        return buffer[..<n].first(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0A && $0 != 0x0D }) == UInt8(ascii: "#")
    }

    /// The scans of a SPEC file as entries; nil when the file is not a SPEC file.
    func harvestSpec(_ path: String, base: [String: FieldValue]) -> [CatalogEntry]? {
        let spec: SpecFile
        do { spec = try SpecFile(path: path) } catch { return nil }
        var out: [CatalogEntry] = []
        for name in spec.scanNames {
            var e = CatalogEntry(path: path, entry: "S" + name, fields: base)
            do {
                guard let scan = try spec.scan(name) else { continue }
                fill(&e, from: scan, file: spec)
            } catch {
                e["kind"] = .text("raw")
                e["status"] = .text("bad")
                e["error"] = .text("\(path): scan \(name): \(error)")
            }
            out.append(e)
        }
        if out.isEmpty {
            var e = CatalogEntry(path: path, entry: "", fields: base)
            e["kind"] = .text("raw")
            e["status"] = .text("bad")
            e["error"] = .text("\(path): a SPEC file without scans")
            out.append(e)
        }
        return out
    }

    func fill(_ e: inout CatalogEntry, from scan: SpecScan, file: SpecFile) {
        e["title"] = .text(scan.title.isEmpty ? scan.command : scan.title)
        e["scan_command"] = .text(scan.command)
        let date = SpecToNeXus.iso8601(scan.date.isEmpty ? scan.header.date : scan.date)
        if let t = NXTime.seconds(date) { e["start_time"] = .time(date, seconds: t) }
        let comments = scan.allComments
        if let s = scan.sampleName { e["sample"] = .text(s) }
        if let t = scan.sampleTemperature(isTemperatureUnit: Harvester.isTemperatureUnit) {
            e["temperature"] = .number(t.value, units: t.units, si: (try? Units.toSI(t.value, unit: t.units, dimension: .temperature)) ?? t.value)
        }
        e["frames"] = .integer(Int64(scan.rowCount))
        e["signal_shape"] = .text(String(scan.rowCount))
        e["signal_dtype"] = .text("float64")
        e["kind"] = .text("raw")
        e["status"] = .text("ok")
        // undeclared metadata: columns, positions, comments, the file's name in SPEC
        var budget = metadataLimit
        func put(_ key: String, _ value: String) {
            guard budget > 0, !value.isEmpty else { return }
            e.metadata[key] = value
            budget -= 1
        }
        put("spec/file", file.specFileName ?? "")
        put("spec/columns", scan.labels.joined(separator: " "))
        put("spec/comments", comments.joined(separator: "\n"))
        if let t = scan.countTime { put("spec/count_time", String(t)) }
        if let m = scan.monitor { put("spec/monitor", String(m)) }
        for (motor, value) in scan.positions { put("positioners/" + motor, String(value)) }
    }
}
