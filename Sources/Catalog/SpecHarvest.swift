import NeXus
import NDArray
import SpecFile
#if canImport(Glibc)
import Glibc
#endif

/// SPEC data files in the catalog: one entry per scan, named as spec2nexus names its
/// NXentry ("S12", "S12.1" for a repeated number), so an entry found here is the same
/// entry in the converted file. SPEC has no sample or temperature fields: CHESS and APS
/// users put them in comments and counters, so they are read from there (see
/// `sampleInComments` and `temperatureNames`).
extension Harvester {
    /// Column or motor names that hold the sample temperature (compared lower-cased).
    static let temperatureNames: Set<String> = ["temperature", "temp", "tsample", "t_sample", "sample_temp", "sampletemp",
                                                "sample_t", "tsam", "t_sam"]

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
        let comments = scan.comments + scan.header.comments
        if let s = Harvester.sampleInComments(comments) { e["sample"] = .text(s) }
        if let t = temperature(scan, comments) {
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

    /// "sample: LaB6", "Sample = LaB6 powder", "#C sample LaB6" in comments: the value
    /// after the word (up to a comma or semicolon).
    static func sampleInComments(_ comments: [String]) -> String? {
        for c in comments {
            let words = c.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let i = words.firstIndex(where: { $0.lowercased().trimmed(":=") == "sample" }) else { continue }
            var rest = words[(i + 1)...].joined(separator: " ")
            while let f = rest.first, f == ":" || f == "=" || f == " " { rest.removeFirst() }
            if let cut = rest.firstIndex(where: { $0 == "," || $0 == ";" }) { rest = String(rest[..<cut]) }
            rest = rest.trimmed(" ")
            if !rest.isEmpty { return rest }
        }
        return nil
    }

    /// The sample temperature: the mean of a temperature column, else a temperature motor's
    /// position, else "temperature = 300 K" in a comment. Columns and motors are in kelvin
    /// (SPEC keeps no units); a comment's units are its own (K without any).
    func temperature(_ scan: SpecScan, _ comments: [String]) -> (value: Double, units: String)? {
        for (label, column) in zip(scan.labels, scan.columns) where Harvester.temperatureNames.contains(label.lowercased()) {
            let xs = column.doubles().filter { $0.isFinite }
            if !xs.isEmpty { return (xs.reduce(0, +) / Double(xs.count), "K") }
        }
        for (motor, value) in scan.positions where Harvester.temperatureNames.contains(motor.lowercased()) && value.isFinite {
            return (value, "K")
        }
        for c in comments {
            let words = c.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let i = words.firstIndex(where: { Harvester.temperatureNames.contains($0.lowercased().trimmed(":=")) }) else { continue }
            var rest = Array(words[(i + 1)...])
            while let f = rest.first, f == "=" || f == ":" { rest.removeFirst() }
            guard let first = rest.first else { continue }
            // "300", "300K", "300 K", "25 degC"
            let digits = first.prefix(while: { $0.isNumber || $0 == "." || $0 == "-" || $0 == "+" || $0 == "e" || $0 == "E" })
            guard let v = Double(digits), v.isFinite else { continue }
            var units = String(first.dropFirst(digits.count))
            if units.isEmpty, rest.count > 1, (try? Units.toSI(1, unit: rest[1], dimension: .temperature)) != nil { units = rest[1] }
            if units.isEmpty || (try? Units.toSI(1, unit: units, dimension: .temperature)) == nil { units = "K" }
            return (v, units)
        }
        return nil
    }
}
