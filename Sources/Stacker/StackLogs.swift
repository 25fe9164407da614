#if canImport(Glibc)
import Glibc
#endif
import NDArray
import NeXus

/// A time-stamped log from outside the frames (a temperature controller, the ring current)
/// as the beamline writes it: a CSV of time,value. It becomes an NXlog in the stack (time
/// in seconds from its `start`, value with units) and, as NXRefine's beamline readers do,
/// a per-frame field of the log's value at each frame's time stamp (linear interpolation,
/// the end values outside the log's span, as numpy.interp).
public struct StackLog: Sendable {
    /// Where it goes: ["sample", "temperature"] -> entry/sample/temperature_log (NXlog) and
    /// the per-frame entry/sample/temperature.
    public let path: [String]
    /// Seconds since 1970 (times without a zone are read as UTC, as frame time stamps are).
    public let times: [Double]
    public let values: [Double]
    public let units: String?
    public let source: String

    public init(path: [String], times: [Double], values: [Double], units: String?, source: String) {
        self.path = path; self.times = times; self.values = values; self.units = units; self.source = source
    }

    /// `--log sample.temperature=FILE.csv` or `=FILE.spec:SCAN:COLUMN` (a name without a dot
    /// goes into the sample).
    public static func parse(_ spec: String) throws -> StackLog {
        guard let eq = spec.firstIndex(of: "="), eq != spec.startIndex else {
            throw StackError("--log \(spec): name=FILE.csv expected (like sample.temperature=temperature.csv)")
        }
        let key = String(spec[..<eq]).trimmingBlanks
        let file = String(spec[spec.index(after: eq)...])
        let path = key.contains(".") ? try StackMetadata.path(key, "--log \(spec)") : try StackMetadata.path("sample." + key, "--log \(spec)")
        guard ["sample", "instrument"].contains(path[0]) else {
            throw StackError("--log \(spec): logs go into the sample or the instrument (sample.temperature, instrument.source.current)")
        }
        // FILE:SCAN:COLUMN of a SPEC file (a file of that whole name is a CSV)
        if access(file, F_OK) != 0, let c = file.firstIndex(of: ":"), access(String(file[..<c]), F_OK) == 0 {
            return try StackSpec.log(file, path: path, "--log \(spec)")
        }
        return try read(csv: file, path: path)
    }

    /// A CSV (or whitespace-separated) file of time,value rows; a first line that is not
    /// numbers is a header, whose second column may carry units: "temperature (K)",
    /// "current [mA]". Times are seconds since 1970 or ISO 8601 text.
    public static func read(csv file: String, path: [String]) throws -> StackLog {
        guard let text = readText(file, limit: 256 << 20) else { throw StackError("\(file): cannot read the log (at most 256 MB)") }
        var times: [Double] = [], values: [Double] = [], units: String? = nil
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw).trimmingBlanks
            if line.isEmpty || line.hasPrefix("#") { continue }
            let cols = line.split(whereSeparator: { $0 == "," || $0 == "\t" || $0 == ";" }).map { String($0).trimmingBlanks }
            let parts = cols.count >= 2 ? cols : line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard parts.count >= 2 else { throw StackError("\(file): line \(n + 1): time,value expected, got '\(line)'") }
            let t = Double(parts[0]) ?? NXTime.seconds(parts[0])
            guard let t, let v = Double(parts[1]) else {
                if times.isEmpty && values.isEmpty && units == nil {  // the header
                    units = StackLog.units(in: parts[1]) ?? ""
                    continue
                }
                throw StackError("\(file): line \(n + 1): a time (seconds or ISO 8601) and a number expected, got '\(line)'")
            }
            if let last = times.last, t < last {
                throw StackError("\(file): line \(n + 1): time \(parts[0]) goes back (the log's times must not decrease)")
            }
            times.append(t)
            values.append(v)
        }
        guard !times.isEmpty else { throw StackError("\(file): no time,value rows in the log") }
        return StackLog(path: path, times: times, values: values, units: units?.isEmpty == false ? units : nil, source: file)
    }

    /// The log at time t: linear between its points, its end values outside (numpy.interp).
    public static func interpolate(_ times: [Double], _ values: [Double], at t: Double) -> Double {
        guard let first = times.first, t.isFinite else { return .nan }
        if t <= first { return values[0] }
        if t >= times[times.count - 1] { return values[values.count - 1] }
        var a = 0, b = times.count - 1
        while b - a > 1 {
            let m = (a + b) >> 1
            if times[m] <= t { a = m } else { b = m }
        }
        let span = times[b] - times[a]
        return span > 0 ? values[a] + (values[b] - values[a]) * (t - times[a]) / span : values[b]
    }

    /// Makes the NXlog under `entry` (groups on the way as --meta makes them) and returns
    /// the group the per-frame field is linked into and its name.
    func write(into entry: NXGroup) throws -> (NXGroup, String) {
        var group = entry
        for name in path.dropLast() {
            if let g = try group.child(name) as? NXGroup { group = g; continue }
            group = try group.makeGroup(name, nxclass: StackMetadata.classes[name] ?? "NXcollection")
        }
        let name = path.last!
        if try group.child(name + "_log") != nil { try group.delete(name + "_log") }
        let log = try group.makeGroup(name + "_log", nxclass: "NXlog")
        let t0 = (times[0] * 1000).rounded() / 1000  // the start attribute's milliseconds, exactly
        let time = try log.makeField("time", value: .array(try NDArray.from(times.map { $0 - t0 }, shape: [times.count])))
        try time.setAttribute("units", .string("s"))
        try time.setAttribute("start", .string(NXTime.iso(t0, milliseconds: true)))
        let value = try log.makeField("value", value: .array(try NDArray.from(values, shape: [values.count])))
        if let units { try value.setAttribute("units", .string(units)) }
        try log.setAttribute("source", .string(source))
        return (group, name)
    }
}

extension StackLog {
    /// "temperature (K)" -> "K", "current [mA]" -> "mA".
    static func units(in header: String) -> String? {
        for (open, close) in [("(", ")"), ("[", "]")] {
            if let a = header.firstIndex(of: Character(open)), let b = header.lastIndex(of: Character(close)), a < b {
                let u = String(header[header.index(after: a)..<b]).trimmingBlanks
                return u.isEmpty ? nil : u
            }
        }
        return nil
    }
}

/// A text file read whole, nil when it cannot be read or is larger than `limit` bytes.
func readText(_ path: String, limit: Int) -> String? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        bytes += buf[..<n]
        if bytes.count > limit { return nil }
    }
    return String(decoding: bytes, as: UTF8.self)
}
