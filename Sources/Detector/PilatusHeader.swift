/// One value of a detector header.
public enum HeaderValue: Equatable, Sendable {
    case integer(Int)
    case number(Double)
    /// Two or more numbers: Pixel_size, Beam_xy, Energy_range.
    case numbers([Double])
    case text(String)
}

/// One header entry: a normalised key (lower case: "exposure_time"), its typed value, its
/// units as written ("s", "m", "deg", "pixels", "eV"), and the line it came from.
public struct HeaderEntry: Equatable, Sendable {
    public let key: String
    public let value: HeaderValue
    public let units: String?
    public let line: String

    public init(key: String, value: HeaderValue, units: String?, line: String) {
        self.key = key
        self.value = value
        self.units = units
        self.line = line
    }
}

/// The Pilatus header: the `# Key value unit` lines of a mini-CBF's
/// `_array_data.header_contents` or of a Pilatus TIFF's ImageDescription, conventions
/// SLS_1.0 and PILATUS_1.2. Known keys get typed values and units; unknown keys are kept
/// as text under their lower-cased name; no line is ever an error.
public struct PilatusHeader: Equatable, Sendable {
    public private(set) var entries: [HeaderEntry] = []
    /// The header text as found.
    public let text: String

    public subscript(key: String) -> HeaderEntry? { entries.last { $0.key == key } }

    /// What each known key holds.
    enum Kind { case integer, number, pair, text }
    static let known: [String: Kind] = [
        "detector": .text, "pixel_size": .pair, "exposure_time": .number, "exposure_period": .number,
        "tau": .number, "count_cutoff": .integer, "threshold_setting": .number, "gain_setting": .text,
        "n_excluded_pixels": .integer, "excluded_pixels": .text, "flat_field": .text, "trim_file": .text,
        "trim_directory": .text, "image_path": .text, "ratecorr_lut_directory": .text, "retrigger_mode": .text,
        "wavelength": .number, "energy_range": .pair, "detector_distance": .number, "detector_voffset": .number,
        "beam_xy": .pair, "flux": .number, "filter_transmission": .number, "start_angle": .number,
        "angle_increment": .number, "detector_2theta": .number, "polarization": .number,
        "alpha": .number, "alpha_increment": .number, "kappa": .number, "kappa_increment": .number,
        "phi": .number, "phi_increment": .number, "chi": .number, "chi_increment": .number,
        "omega": .number, "omega_increment": .number, "oscillation_axis": .text, "n_oscillations": .integer,
        "start_position": .number, "position_increment": .number, "shutter_time": .number,
        "sensor_thickness": .number,
    ]

    /// A header made from values found elsewhere (an HDF5 frame source's metadata), with
    /// the text that describes them.
    public init(entries: [HeaderEntry], text: String) {
        self.entries = entries
        self.text = text
    }

    /// Parses header text; lines not starting with `#` are ignored.
    public init(parsing text: String) {
        self.text = text
        for raw in text.split(omittingEmptySubsequences: true, whereSeparator: { $0.isNewline }) {
            var line = Substring(raw)
            guard line.first == "#" else { continue }
            line = line.dropFirst().drop { $0 == " " || $0 == "\t" }
            let body = String(line).trimmingSpaces
            guard !body.isEmpty else { continue }
            if let entry = PilatusHeader.parse(body, line: String(raw)) { entries.append(contentsOf: entry) }
        }
    }

    static func parse(_ body: String, line: String) -> [HeaderEntry]? {
        // the time stamp line: "2011-07-08T10:12:58.367" (PILATUS_1.2), "2007/Jun/17 15:12:36.928" (SLS_1.0)
        if let c = body.first, c.isNumber, body.count >= 8,
           body.prefix(5).dropFirst(4).first.map({ $0 == "-" || $0 == "/" }) == true {
            return [HeaderEntry(key: "time", value: .text(body), units: nil, line: line)]
        }
        // "Silicon sensor, thickness 0.000320 m"
        if let r = body.range(of: " sensor, thickness ") {
            let material = String(body[..<r.lowerBound])
            var out = [HeaderEntry(key: "sensor", value: .text(material), units: nil, line: line)]
            if let (x, units) = number(String(body[r.upperBound...])) {
                out.append(HeaderEntry(key: "sensor_thickness", value: .number(x), units: units, line: line))
            }
            return out
        }
        // the key: up to white space, ':' or '='; then an optional ':' or '='
        let keyEnd = body.firstIndex { $0 == " " || $0 == "\t" || $0 == ":" || $0 == "=" } ?? body.endIndex
        let key = body[..<keyEnd].lowercased()
        var rest = body[keyEnd...].drop { $0 == " " || $0 == "\t" }
        if rest.first == ":" || rest.first == "=" { rest = rest.dropFirst().drop { $0 == " " || $0 == "\t" } }
        let value = String(rest).trimmingSpaces
        guard !key.isEmpty else { return nil }
        switch known[key] {
        case .integer:
            if let (x, units) = number(value), x == x.rounded(), abs(x) < 9e15 {
                return [HeaderEntry(key: key, value: .integer(Int(x)), units: units, line: line)]
            }
        case .number:
            if let (x, units) = number(value) { return [HeaderEntry(key: key, value: .number(x), units: units, line: line)] }
        case .pair:
            if let (xs, units) = numbers(value) { return [HeaderEntry(key: key, value: .numbers(xs), units: units, line: line)] }
        case .text, nil:
            break
        }
        return [HeaderEntry(key: key, value: .text(value), units: nil, line: line)]
    }

    /// "0.0995000 s" -> (0.0995, "s"); "78.0000 deg." -> (78, "deg"); "1.0000" -> (1, nil).
    static func number(_ s: String) -> (Double, String?)? {
        let parts = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard let first = parts.first, let x = Double(first) else { return nil }
        return (x, parts.count > 1 ? unitsText(String(parts[1])) : nil)
    }

    /// "(1231.50, 1263.50) pixels" -> ([1231.5, 1263.5], "pixels");
    /// "172e-6 m x 172e-6 m" -> ([172e-6, 172e-6], "m").
    static func numbers(_ s: String) -> ([Double], String?)? {
        if s.first == "(", let close = s.firstIndex(of: ")") {
            let inner = s[s.index(after: s.startIndex)..<close]
            let xs = inner.split(separator: ",").map { Double($0.trimmingCharacters(in: " \t")) }
            guard xs.count >= 2, xs.allSatisfy({ $0 != nil }) else { return nil }
            let tail = String(s[s.index(after: close)...]).trimmingSpaces
            return (xs.map { $0! }, tail.isEmpty ? nil : unitsText(tail))
        }
        let sides = s.components(separatedBy: " x ")
        guard sides.count >= 2 else { return nil }
        var xs: [Double] = []
        var units: String? = nil
        for side in sides {
            guard let (x, u) = number(side.trimmingSpaces) else { return nil }
            xs.append(x)
            units = units ?? u
        }
        return (xs, units)
    }

    static func unitsText(_ s: String) -> String? {
        var u = s.trimmingSpaces
        if u.hasSuffix(".") { u.removeLast() }
        return u.isEmpty ? nil : u
    }
}

extension String {
    var trimmingSpaces: String { trimmingCharacters(in: " \t\r\n") }

    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = Substring(self)
        while let c = s.first, chars.contains(c) { s = s.dropFirst() }
        while let c = s.last, chars.contains(c) { s = s.dropLast() }
        return String(s)
    }

    func components(separatedBy separator: String) -> [String] {
        var out: [String] = []
        var rest = Substring(self)
        while let r = rest.range(of: separator) {
            out.append(String(rest[..<r.lowerBound]))
            rest = rest[r.upperBound...]
        }
        out.append(String(rest))
        return out
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String { String(self).trimmingCharacters(in: set) }

    func range(of needle: String) -> Range<Substring.Index>? {
        let n = Array(needle.utf8)
        guard !n.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if utf8[i...].starts(with: n) { return i..<utf8.index(i, offsetBy: n.count) }
            i = index(after: i)
        }
        return nil
    }
}

extension String {
    func range(of needle: String) -> Range<String.Index>? { self[...].range(of: needle) }
}
