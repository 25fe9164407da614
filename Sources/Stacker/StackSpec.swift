import NDArray
import SpecFile

/// The SPEC scan that goes with a stack (`--spec FILE:SCAN`, `--log NAME=FILE:SCAN:COLUMN`):
/// what it says about the sample, the motors' positions at its start, and its columns as
/// time-stamped logs (SPEC's Epoch column counts seconds from the file's #E time).
enum StackSpec {
    /// "FILE:SCAN" -> the scan, or an error naming the file and what it holds.
    static func scan(_ spec: String, _ context: String) throws -> SpecScan {
        guard let colon = spec.lastIndex(of: ":"), colon != spec.startIndex else {
            throw StackError("\(context): FILE:SCAN expected (like data.spec:12 or data.spec:12.1)")
        }
        let path = String(spec[..<colon]), name = String(spec[spec.index(after: colon)...])
        let file: SpecFile
        do { file = try SpecFile(path: path) } catch { throw StackError("\(context): \(error)") }
        guard let scan = try? file.scan(name) else {
            let some = file.scanNames.prefix(12).joined(separator: ", ")
            throw StackError("\(context): \(path) has no scan \(name) (its scans: \(some)\(file.scanCount > 12 ? ", ..." : ""))")
        }
        return scan
    }

    /// Temperature units SPEC users write in comments.
    static func isTemperatureUnit(_ u: String) -> Bool {
        ["K", "mK", "C", "degC", "°C", "celsius", "Celsius", "F", "degF", "°F", "kelvin", "Kelvin"].contains(u)
    }

    /// A NeXus name for a SPEC motor ("Two Theta" -> "Two_Theta").
    static func nexusName(_ motor: String) -> String {
        var s = String(motor.unicodeScalars.map { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)) ? Character($0) : "_" })
        if let f = s.unicodeScalars.first, ("0"..."9").contains(f) { s = "_" + s }
        return s.isEmpty ? "_" : s
    }

    /// A column of the scan as a log: times from the Epoch column and the header's #E.
    static func log(_ source: String, path: [String], _ context: String) throws -> StackLog {
        guard let colon = source.lastIndex(of: ":"), colon != source.startIndex else {
            throw StackError("\(context): FILE:SCAN:COLUMN expected for a SPEC log")
        }
        let column = String(source[source.index(after: colon)...])
        let scan = try scan(String(source[..<colon]), context)
        guard let values = scan.column(column) else {
            throw StackError("\(context): scan \(scan.name) has no column '\(column)' (its columns: \(scan.labels.joined(separator: ", ")))")
        }
        guard let epoch = scan.column("Epoch") else {
            throw StackError("\(context): scan \(scan.name) has no Epoch column, so its rows have no times (its columns: \(scan.labels.joined(separator: ", ")))")
        }
        guard let start = Double(scan.header.epoch.trimmingBlanks) else {
            throw StackError("\(context): the file header of scan \(scan.name) has no #E time (seconds since 1970), so Epoch cannot be placed in time")
        }
        let times = epoch.doubles().map { $0 + start }, vs = values.doubles()
        guard !times.isEmpty else { throw StackError("\(context): scan \(scan.name) has no data rows") }
        for i in 1..<max(times.count, 1) where times[i] < times[i - 1] {
            throw StackError("\(context): scan \(scan.name): Epoch goes back at row \(i + 1)")
        }
        return StackLog(path: path, times: times, values: vs, units: nil, source: "\(source) (SPEC scan \(scan.name))")
    }
}

extension StackMetadata {
    /// The SPEC scan of the run (`--spec FILE:SCAN`): the sample's name and temperature by
    /// the rules the catalog uses (comments, a temperature column or motor), the scan's
    /// title as the entry's, every motor's position at the scan's start as
    /// instrument/positioners/MOTOR. Values already given (--meta, --meta-file) win.
    public mutating func add(specScan spec: String) throws {
        let scan = try StackSpec.scan(spec, "--spec \(spec)")
        func put(_ path: [String], _ value: Value, _ units: String? = nil) {
            guard !items.contains(where: { $0.path == path }) else { return }
            set(Item(path: path, value: value, units: units))
        }
        if let name = scan.sampleName { put(["sample", "name"], .text(name)) }
        if let t = scan.sampleTemperature(isTemperatureUnit: StackSpec.isTemperatureUnit) {
            put(["sample", "temperature"], .number(t.value), t.units)
        }
        if !scan.title.isEmpty { put(["entry", "title"], .text(scan.title)) }
        for (motor, value) in scan.positions where value.isFinite {
            put(["instrument", "positioners", StackSpec.nexusName(motor)], .number(value))
        }
    }
}
