/// How a declared field is stored and compared.
public enum FieldType: String, Sendable, CaseIterable {
    /// Compared exactly (case-insensitively), faceted, part of the free text.
    case text
    /// A floating-point number with a unit dimension; ranges compare SI values.
    case number
    /// A count (frames, sizes).
    case integer
    /// An instant: ISO 8601 text as harvested, seconds since 1970 (UTC) for ranges.
    case time
}

/// One catalog field: its type, its unit dimension, and where files keep it (paths
/// relative to the NXentry, tried in order; the first that exists wins).
public struct FieldDeclaration: Sendable, Equatable {
    public let name: String
    public let type: FieldType
    public let dimension: Dimension
    public var paths: [String]
    public let summary: String

    public init(_ name: String, _ type: FieldType, paths: [String] = [], _ summary: String) {
        self.init(name, type, .none, paths: paths, summary)
    }

    public init(_ name: String, _ type: FieldType, _ dimension: Dimension, paths: [String] = [], _ summary: String) {
        self.name = name
        self.type = type
        self.dimension = dimension
        self.paths = paths
        self.summary = summary
    }

    /// Field names go into SQL as JSON keys and index names: letters, digits and '_' only,
    /// starting with a letter (checked where mapping files are read).
    public static func validName(_ name: String) -> Bool {
        func letter(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("A"..."Z").contains(c) }
        guard let f = name.unicodeScalars.first, letter(f), name.count <= 64 else { return false }
        return name.unicodeScalars.allSatisfy { letter($0) || ("0"..."9").contains($0) || $0 == "_" }
    }
}

public struct MappingError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The declared fields and where to find them. A path segment that starts with "NX" and a
/// lower-case letter means "the first child group of that class" (NXsample/temperature);
/// a path starting with "/" is absolute in the file.
public struct Mapping: Sendable, Equatable {
    public private(set) var fields: [FieldDeclaration]

    public init(fields: [FieldDeclaration]) { self.fields = fields }

    public func field(_ name: String) -> FieldDeclaration? { fields.first { $0.name == name } }

    /// Fields every entry has, filled by the harvester itself rather than from a path.
    public static let computed: [FieldDeclaration] = [
        .init("path", .text, "the file's absolute path"),
        .init("entry", .text, "the NXentry's name in the file"),
        .init("kind", .text, "raw (a measured file), stack (written by nxlua stack) or derived (has NXprocess results)"),
        .init("status", .text, "ok, bad (unreadable file: see error), running or done (a stack being written / finished)"),
        .init("error", .text, "why a bad file could not be read"),
        .init("size", .integer, "file size in bytes"),
        .init("mtime", .time, "file modification time"),
        .init("sha256", .text, "SHA-256 of the file's bytes (catalog add --checksum)"),
        .init("frames", .integer, "frames in the default NXdata signal (its first axis for 3-D and more)"),
        .init("signal_shape", .text, "shape of the default NXdata signal, as 100x512x512"),
        .init("signal_dtype", .text, "element type of the default NXdata signal"),
        .init("bad_frames", .integer, "frames the stacker recorded as bad"),
        .init("stack_source", .text, "the frames a stack was made from (folder or pattern)"),
        .init("program", .text, "program of the NXprocess groups (derived data)"),
        .init("macro_hash", .text, "SHA-256 of the macro that wrote the NXprocess results"),
        .init("source", .text, "the file derived data was made from"),
    ]

    /// NeXus base classes, areaDetector NDAttributes and the stacker's layout.
    public static let standard = Mapping(fields: computed + [
        .init("title", .text, paths: ["title"], "the entry's title"),
        .init("start_time", .time, paths: ["start_time", "NXinstrument/NDAttributes/StartTime"], "when the scan started"),
        .init("end_time", .time, paths: ["end_time"], "when the scan ended"),
        .init("scan_command", .text, paths: ["scan_command", "command", "NXinstrument/NDAttributes/ScanCommand"], "the scan command"),
        .init("sample", .text, paths: ["NXsample/name", "NXsample/short_title", "NXinstrument/NDAttributes/SampleName",
                                      "NXinstrument/NDAttributes/Sample"], "sample name"),
        .init("formula", .text, paths: ["NXsample/chemical_formula", "NXinstrument/NDAttributes/Formula"], "chemical formula"),
        .init("temperature", .number, .temperature, paths: ["NXsample/temperature", "NXsample/temperature_env/NXsensor/value",
                                                           "NXinstrument/NDAttributes/Temperature", "NXinstrument/NDAttributes/SampleTemp",
                                                           "NXinstrument/NDAttributes/temperature"],
              "sample temperature (the mean of per-frame values)"),
        .init("unit_cell", .text, paths: ["NXsample/unit_cell", "NXsample/unitcell"], "unit cell a b c alpha beta gamma"),
        .init("space_group", .text, paths: ["NXsample/space_group"], "space group"),
        .init("instrument", .text, paths: ["NXinstrument/name", "/entry/instrument/name"], "instrument name"),
        .init("beamline", .text, paths: ["NXinstrument/beamline", "NXinstrument/NXsource/name", "NXinstrument/NDAttributes/Beamline"],
              "beamline (or source) name"),
        .init("detector", .text, paths: ["NXinstrument/NXdetector/description", "NXinstrument/NXdetector/local_name",
                                        "NXinstrument/NXdetector/type", "NXinstrument/NDAttributes/DetectorModel"], "detector"),
        .init("wavelength", .number, .length, paths: ["NXinstrument/NXmonochromator/wavelength", "NXinstrument/NXbeam/incident_wavelength",
                                                     "NXsample/NXbeam/incident_wavelength", "NXinstrument/NDAttributes/Wavelength"],
              "incident wavelength"),
        .init("energy", .number, .energy, paths: ["NXinstrument/NXmonochromator/energy", "NXinstrument/NXbeam/incident_energy",
                                                 "NXsample/NXbeam/incident_energy", "NXinstrument/NDAttributes/Energy"], "incident energy"),
        .init("exposure_time", .number, .time, paths: ["NXinstrument/NXdetector/count_time", "NXinstrument/NDAttributes/AcquireTime"],
              "exposure per frame"),
    ])

    /// The standard mapping with a beamline's mapping file applied: its fields add to or
    /// replace (their paths go first) the standard ones.
    public func applying(_ other: Mapping) -> Mapping {
        var out = self
        for f in other.fields {
            if let i = out.fields.firstIndex(where: { $0.name == f.name }) {
                let old = out.fields[i]
                guard old.type == f.type || f.type == .text && old.type == .text else {
                    out.fields[i] = f
                    continue
                }
                var merged = FieldDeclaration(f.name, f.type, f.dimension == .none ? old.dimension : f.dimension,
                                              paths: f.paths, f.summary.isEmpty ? old.summary : f.summary)
                merged.paths += old.paths.filter { !f.paths.contains($0) }
                out.fields[i] = merged
            } else {
                out.fields.append(f)
            }
        }
        return out
    }

    /// Reads a mapping file: a TOML subset, one table per field.
    ///
    ///     # mapping for beamline 6-ID-D
    ///     [field.temperature]
    ///     type = "number"            # text, number, integer or time
    ///     dimension = "temperature"  # for numbers: temperature, length, energy, angle, time, pressure, magnetic_field
    ///     paths = ["instrument/NDAttributes/TempSample", "NXsample/temperature"]
    ///     summary = "sample temperature"
    ///
    /// Tables, `key = value` lines (strings in double quotes, lists of strings), `#`
    /// comments. Anything else is an error naming the file and line.
    public static func parse(_ text: String, source: String) throws -> Mapping {
        var fields: [FieldDeclaration] = []
        var current: (name: String, line: Int, values: [String: TOMLValue])? = nil
        func finish() throws {
            guard let c = current else { return }
            let typeName = c.values["type"]?.string ?? "text"
            guard let type = FieldType(rawValue: typeName) else {
                throw MappingError("\(source):\(c.line): field '\(c.name)': unknown type '\(typeName)' (expected text, number, integer or time)")
            }
            let dimName = c.values["dimension"]?.string ?? "none"
            guard let dim = Dimension(rawValue: dimName) else {
                throw MappingError("\(source):\(c.line): field '\(c.name)': unknown dimension '\(dimName)' (expected one of \(Dimension.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            if dim != .none && type != .number {
                throw MappingError("\(source):\(c.line): field '\(c.name)': a dimension needs type = \"number\"")
            }
            let paths: [String]
            switch c.values["paths"] ?? c.values["path"] {
            case .list(let l)?: paths = l
            case .string(let s)?: paths = [s]
            case nil: throw MappingError("\(source):\(c.line): field '\(c.name)': no paths (paths = [\"NXsample/name\", ...])")
            }
            if Mapping.computed.contains(where: { $0.name == c.name }) {
                throw MappingError("\(source):\(c.line): field '\(c.name)' is filled by the harvester and cannot be mapped")
            }
            fields.append(FieldDeclaration(c.name, type, dim, paths: paths, c.values["summary"]?.string ?? ""))
            current = nil
        }
        for (n, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = n + 1
            let line = stripComment(String(rawLine)).trimmed(" \t\r")
            if line.isEmpty { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else { throw MappingError("\(source):\(lineNumber): a table header ends with ']'") }
                let header = String(line.dropFirst().dropLast()).trimmed(" \t")
                guard header.hasPrefix("field.") else {
                    throw MappingError("\(source):\(lineNumber): unknown table [\(header)] (expected [field.NAME])")
                }
                try finish()
                let name = String(header.dropFirst(6)).trimmed(" \t\"")
                guard FieldDeclaration.validName(name) else {
                    throw MappingError("\(source):\(lineNumber): bad field name '\(name)' (letters, digits and '_', starting with a letter)")
                }
                if fields.contains(where: { $0.name == name }) { throw MappingError("\(source):\(lineNumber): field '\(name)' declared twice") }
                current = (name, lineNumber, [:])
                continue
            }
            guard let eq = line.firstIndex(of: "=") else {
                throw MappingError("\(source):\(lineNumber): 'key = value' or '[field.NAME]' expected")
            }
            guard current != nil else { throw MappingError("\(source):\(lineNumber): a key outside any [field.NAME] table") }
            let key = String(line[..<eq]).trimmed(" \t")
            guard ["type", "dimension", "paths", "path", "summary"].contains(key) else {
                throw MappingError("\(source):\(lineNumber): unknown key '\(key)' (expected type, dimension, paths or summary)")
            }
            let value = try TOMLValue.parse(String(line[line.index(after: eq)...]).trimmed(" \t"), at: "\(source):\(lineNumber)")
            current!.values[key] = value
        }
        try finish()
        return Mapping(fields: fields)
    }

    /// The text before a `#` that is not inside a string.
    static func stripComment(_ line: String) -> String {
        var inString = false, escaped = false
        for (i, c) in zip(line.indices, line) {
            if escaped { escaped = false; continue }
            if c == "\\" && inString { escaped = true; continue }
            if c == "\"" { inString.toggle() }
            if c == "#" && !inString { return String(line[..<i]) }
        }
        return line
    }
}

enum TOMLValue: Equatable {
    case string(String)
    case list([String])

    var string: String? { if case .string(let s) = self { return s } else { return nil } }

    static func parse(_ text: String, at location: String) throws -> TOMLValue {
        var chars = Substring(text)
        func parseString() throws -> String {
            guard chars.first == "\"" else { throw MappingError("\(location): a string in double quotes expected") }
            chars = chars.dropFirst()
            var out = ""
            while let c = chars.first {
                chars = chars.dropFirst()
                if c == "\"" { return out }
                if c == "\\" {
                    guard let e = chars.first else { break }
                    chars = chars.dropFirst()
                    switch e {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "\"", "\\": out.append(e)
                    default: throw MappingError("\(location): unknown escape \\\(e)")
                    }
                    continue
                }
                out.append(c)
            }
            throw MappingError("\(location): unterminated string")
        }
        func skipSpaces() { while let c = chars.first, c == " " || c == "\t" { chars = chars.dropFirst() } }
        if chars.first == "[" {
            chars = chars.dropFirst()
            var items: [String] = []
            skipSpaces()
            if chars.first == "]" { chars = chars.dropFirst() } else {
                while true {
                    skipSpaces()
                    items.append(try parseString())
                    skipSpaces()
                    if chars.first == "," { chars = chars.dropFirst(); skipSpaces(); if chars.first == "]" { chars = chars.dropFirst(); break }; continue }
                    if chars.first == "]" { chars = chars.dropFirst(); break }
                    throw MappingError("\(location): ',' or ']' expected in a list")
                }
            }
            skipSpaces()
            guard chars.isEmpty else { throw MappingError("\(location): unexpected text after the list") }
            return .list(items)
        }
        let s = try parseString()
        skipSpaces()
        guard chars.isEmpty else { throw MappingError("\(location): unexpected text after the string") }
        return .string(s)
    }
}
