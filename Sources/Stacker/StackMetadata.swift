import NDArray
import NeXus

/// What a new stack holds besides frames and their headers, written when the file is made
/// (SWMR writing creates no objects later): an HDF5 source's pixel mask, and the run's
/// metadata from outside the frames (`--meta`, `--meta-file`).
public struct StackAdditions: @unchecked Sendable {
    public var pixelMask: NDArray?
    public var pixelMaskSource: String?
    public var metadata = StackMetadata()
    /// Time-stamped logs (--log): NXlog groups and per-frame values.
    public var logs: [StackLog] = []
    public init() {}
}

/// Values by dotted names, `sample.temperature=300K` or a TOML file's tables, written into
/// the entry's NeXus groups: `sample.*` into NXsample, `instrument.*` into NXinstrument (and
/// its known subgroups: source, monochromator, detector, ...), `user.*` into NXuser,
/// `experiment.identifier` as the entry's experiment_identifier, `entry.*` on the entry.
/// "300K", "300 K", "1.5e-3 m" are numbers with units (@units); "LaB6" is text.
public struct StackMetadata: Sendable {
    public enum Value: Equatable, Sendable {
        case integer(Int)
        case number(Double)
        case numbers([Double])
        case text(String)
        case boolean(Bool)
    }

    public struct Item: Equatable, Sendable {
        public let path: [String]
        public let value: Value
        public let units: String?
    }

    public private(set) var items: [Item] = []
    public init() {}
    public var isEmpty: Bool { items.isEmpty }

    /// Groups NeXus names under these names (the rest become NXcollection).
    static let classes: [String: String] = [
        "sample": "NXsample", "instrument": "NXinstrument", "user": "NXuser", "source": "NXsource",
        "monochromator": "NXmonochromator", "detector": "NXdetector", "beam": "NXbeam",
        "attenuator": "NXattenuator", "goniometer": "NXtransformations", "environment": "NXenvironment",
        "temperature_log": "NXlog", "slit": "NXslit", "mirror": "NXmirror", "monitor": "NXmonitor",
    ]

    static func validName(_ s: Substring) -> Bool {
        guard let f = s.unicodeScalars.first, f == "_" || (f.isASCII && f.properties.isAlphabetic) else { return false }
        return s.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) }
    }

    static func path(_ key: String, _ context: String) throws -> [String] {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2, parts.allSatisfy(validName) else {
            throw StackError("\(context): '\(key)' is not a dotted NeXus name (like sample.temperature or instrument.source.current)")
        }
        let top = parts[0]
        guard ["sample", "instrument", "user", "experiment", "entry"].contains(top) || top.hasPrefix("user") else {
            throw StackError("\(context): '\(key)' must start with sample, instrument, user, experiment or entry")
        }
        return parts.map(String.init)
    }

    /// "300K" -> (300, "K"); "LaB6" -> text; "true" -> boolean.
    public static func parse(_ text: String) -> (Value, String?) {
        let t = text.trimmingBlanks
        if t == "true" || t == "false" { return (.boolean(t == "true"), nil) }
        let u = Array(t.utf8)
        // the longest prefix that is a number
        var best = 0
        for end in stride(from: u.count, to: 0, by: -1) {
            let c = u[end - 1]
            guard (c >= 0x30 && c <= 0x39) || c == 0x2E else { continue }
            if Double(String(decoding: u[..<end], as: UTF8.self)) != nil { best = end; break }
        }
        guard best > 0 else { return (.text(t), nil) }
        let number = String(decoding: u[..<best], as: UTF8.self)
        let rest = String(decoding: u[best...], as: UTF8.self).trimmingBlanks
        if !rest.isEmpty {
            guard let f = rest.unicodeScalars.first, f.properties.isAlphabetic || "°µÅ%".unicodeScalars.contains(f),
                  !rest.contains(" ") || rest.split(separator: " ").count <= 2 else { return (.text(t), nil) }
        }
        let units = rest.isEmpty ? nil : rest
        if let i = Int(number) { return (.integer(i), units) }
        return (.number(Double(number)!), units)
    }

    /// `sample.temperature=300K`
    public mutating func add(assignment: String) throws {
        guard let eq = assignment.firstIndex(of: "="), eq != assignment.startIndex else {
            throw StackError("--meta \(assignment): key=value expected (like sample.temperature=300K)")
        }
        let key = String(assignment[..<eq]).trimmingBlanks
        let (v, u) = StackMetadata.parse(String(assignment[assignment.index(after: eq)...]))
        set(Item(path: try StackMetadata.path(key, "--meta \(assignment)"), value: v, units: u))
    }

    /// NXsample's own fields: a run.start key with one of these names (temperature=300K)
    /// goes into the sample; `sample=LaB6` names it.
    static let sampleFields: Set<String> = [
        "name", "chemical_formula", "temperature", "pressure", "magnetic_field", "electric_field",
        "stress_field", "description", "type", "situation", "preparation_date", "mass", "density",
        "relative_molecular_mass", "concentration", "volume_fraction", "thickness", "sample_id",
        "unit_cell", "orientation_matrix", "ub_matrix", "sample_component", "short_title", "rotation_angle",
    ]

    /// A value of a run's run.start event (`nxlua trigger run.start --run UID sample=LaB6
    /// temperature=300K`): `sample` names the sample, NXsample's field names go into it,
    /// dotted keys (sample.x, instrument.source.current, user.name) as --meta has them; other
    /// keys (scan_id, plan, file) are the run's, not the sample's, and are left out. Values
    /// already set (--meta, --meta-file) win. Returns whether the key was taken.
    @discardableResult
    public mutating func add(runStartKey key: String, number: Double? = nil, integer: Int? = nil, text: String? = nil,
                             boolean: Bool? = nil) -> Bool {
        let path: [String]
        if key == "sample" { path = ["sample", "name"] }
        else if StackMetadata.sampleFields.contains(key) { path = ["sample", key] }
        else if key.contains("."), let p = try? StackMetadata.path(key, "run.start") { path = p }
        else { return false }
        guard !items.contains(where: { $0.path == path }) else { return false }
        if let integer { set(Item(path: path, value: .integer(integer), units: nil)) }
        else if let number { set(Item(path: path, value: .number(number), units: nil)) }
        else if let boolean { set(Item(path: path, value: .boolean(boolean), units: nil)) }
        else if let text {
            let (v, u) = StackMetadata.parse(text)
            set(Item(path: path, value: v, units: u))
        } else { return false }
        return true
    }

    mutating func set(_ item: Item) {
        items.removeAll { $0.path == item.path }
        items.append(item)
    }

    /// A TOML file: tables ([sample], [instrument.source]), key = value with strings, numbers,
    /// booleans and arrays of numbers; `key_units = "K"` (or a string "300 K") gives units.
    public mutating func add(tomlFile path: String) throws {
        guard let text = readText(path, limit: 1 << 20) else { throw StackError("\(path): cannot read the metadata file (at most 1 MB)") }
        var table: [String] = []
        var pending: [Item] = []
        var units: [[String]: String] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let context = "\(path): line \(n + 1)"
            let line = stripComment(String(raw)).trimmingBlanks
            if line.isEmpty { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]"), !line.hasPrefix("[[") else { throw StackError("\(context): a table header [name] expected, got '\(line)'") }
                let name = String(line.dropFirst().dropLast()).trimmingBlanks
                table = name.split(separator: ".").map { String($0).trimmingBlanks }
                guard !table.isEmpty, table.allSatisfy({ StackMetadata.validName(Substring($0)) }) else {
                    throw StackError("\(context): '\(name)' is not a table name")
                }
                continue
            }
            guard let eq = line.firstIndex(of: "=") else { throw StackError("\(context): key = value expected, got '\(line)'") }
            let key = String(line[..<eq]).trimmingBlanks
            let raw = String(line[line.index(after: eq)...]).trimmingBlanks
            let full = (table + key.split(separator: ".").map { String($0).trimmingBlanks }).joined(separator: ".")
            var p = try StackMetadata.path(full, context)
            let value: Value
            var u: String? = nil
            if raw.hasPrefix("\"") || raw.hasPrefix("'") {
                guard raw.count >= 2, raw.last == raw.first else { throw StackError("\(context): unterminated string \(raw)") }
                let s = String(raw.dropFirst().dropLast())
                if p.last!.hasSuffix("_units") {
                    p[p.count - 1] = String(p.last!.dropLast(6))
                    units[p] = s
                    continue
                }
                (value, u) = StackMetadata.parse(s)
                if case .integer = value {} else if case .number = value {} else { pending.append(Item(path: p, value: .text(s), units: nil)); continue }
            } else if raw == "true" || raw == "false" {
                value = .boolean(raw == "true")
            } else if raw.hasPrefix("[") {
                guard raw.hasSuffix("]") else { throw StackError("\(context): unterminated array \(raw)") }
                let xs = raw.dropFirst().dropLast().split(separator: ",").map { Double(String($0).trimmingBlanks.replacingUnderscores) }
                guard xs.allSatisfy({ $0 != nil }) else { throw StackError("\(context): arrays of numbers only, got \(raw)") }
                value = .numbers(xs.map { $0! })
            } else if let i = Int(raw.replacingUnderscores) {
                value = .integer(i)
            } else if let x = Double(raw.replacingUnderscores) {
                value = .number(x)
            } else {
                throw StackError("\(context): cannot read the value \(raw) (a string in quotes, a number, true/false or [numbers])")
            }
            pending.append(Item(path: p, value: value, units: u))
        }
        for item in pending { set(Item(path: item.path, value: item.value, units: units[item.path] ?? item.units)) }
    }

    private func stripComment(_ line: String) -> String {
        var quote: Character? = nil
        for (i, c) in zip(line.indices, line) {
            if let q = quote { if c == q { quote = nil } } else if c == "\"" || c == "'" { quote = c } else if c == "#" { return String(line[..<i]) }
        }
        return line
    }

    /// Writes the values under `entry` (a value already there is replaced).
    func write(into entry: NXGroup) throws {
        for item in items {
            var group = entry
            var names = item.path
            switch names[0] {
            case "entry": names.removeFirst()
            case "experiment": names = ["experiment_" + names.dropFirst().joined(separator: "_")]
            default: break
            }
            for name in names.dropLast() {
                if let g = try group.child(name) as? NXGroup { group = g; continue }
                if try group.child(name) != nil { try group.delete(name) }
                let cls = StackMetadata.classes[name] ?? (name.hasPrefix("user") ? "NXuser" : "NXcollection")
                group = try group.makeGroup(name, nxclass: cls)
            }
            let name = names.last!
            if try group.child(name) != nil { try group.delete(name) }
            let v: NXValue
            switch item.value {
            case .integer(let i): v = .array(try NDArray.full([], Double(i), dtype: .int64))
            case .number(let x): v = .array(try NDArray.full([], x))
            case .numbers(let xs): v = .array(try NDArray.from(xs, shape: [xs.count]))
            case .text(let s): v = .string(s)
            case .boolean(let b): v = .array(try NDArray.full([], b ? 1 : 0, dtype: .bool))
            }
            let f = try group.makeField(name, value: v)
            if let u = item.units { try f.setAttribute("units", .string(u)) }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension String {
    var trimmingBlanks: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" || c == "\r" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\r" { s = s.dropLast() }
        return String(s)
    }
    var replacingUnderscores: String { String(filter { $0 != "_" }) }
}
