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

    /// `--log sample.temperature=FILE.csv` (a name without a dot goes into the sample).
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
        return try read(csv: file, path: path)
    }

    /// A CSV (or whitespace-separated) file of time,value rows; a first line that is not
    /// numbers is a header, whose second column may carry units: "temperature (K)",
    /// "current [mA]". Times are seconds since 1970 or ISO 8601 text.
    public static func read(csv file: String, path: [String]) throws -> StackLog {
        guard let text = readWholeText(file) else { throw StackError("\(file): cannot read the log") }
        var times: [Double] = [], values: [Double] = [], units: String? = nil
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw).trimmingBlanks
            if line.isEmpty || line.hasPrefix("#") { continue }
            let cols = line.split(whereSeparator: { $0 == "," || $0 == "\t" || $0 == ";" }).map { String($0).trimmingBlanks }
            let parts = cols.count >= 2 ? cols : line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard parts.count >= 2 else { throw StackError("\(file): line \(n + 1): time,value expected, got '\(line)'") }
            let t = Double(parts[0]) ?? StackTime.seconds(parts[0])
            guard let t, let v = Double(parts[1]) else {
                if times.isEmpty && values.isEmpty && units == nil {  // the header
                    units = StackTime.units(in: parts[1]) ?? ""
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
        try time.setAttribute("start", .string(StackTime.iso(t0)))
        let value = try log.makeField("value", value: .array(try NDArray.from(values, shape: [values.count])))
        if let units { try value.setAttribute("units", .string(units)) }
        try log.setAttribute("source", .string(source))
        return (group, name)
    }
}

/// Time stamps as text: ISO 8601 (frame headers "2024-03-01T12:00:01.100", with an
/// optional zone) and SLS's "2007/Jun/17 15:12:36.928"; seconds since 1970.
public enum StackTime {
    public static func seconds(_ text: String) -> Double? {
        let s = Array(text.trimmingBlanks.utf8)
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= s.count else { return nil }
            var v = 0
            for k in 0..<n { let c = s[i + k]; guard c >= 48 && c <= 57 else { return nil }; v = v * 10 + Int(c - 48) }
            i += n
            return v
        }
        func eat(_ c: Character) -> Bool { if i < s.count, s[i] == c.asciiValue! { i += 1; return true }; return false }
        guard let year = digits(4) else { return nil }
        var month: Int
        if eat("-") {
            guard let m = digits(2), eat("-") else { return nil }
            month = m
        } else if eat("/") {
            guard i + 3 <= s.count else { return nil }
            let name = String(decoding: s[i..<(i + 3)], as: UTF8.self).lowercased()
            guard let k = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"].firstIndex(of: name) else { return nil }
            month = k + 1
            i += 3
            guard eat("/") else { return nil }
        } else { return nil }
        guard let day = digits(2), eat("T") || eat(" "), let hour = digits(2), eat(":"), let minute = digits(2) else { return nil }
        var second = 0.0
        if eat(":") {
            let start = i
            while i < s.count, (s[i] >= 48 && s[i] <= 57) || s[i] == 46 { i += 1 }
            guard let x = Double(String(decoding: s[start..<i], as: UTF8.self)) else { return nil }
            second = x
        }
        var zone = 0
        if eat("Z") {
        } else if i < s.count, s[i] == 43 || s[i] == 45 {
            let sign = s[i] == 45 ? -1 : 1
            i += 1
            guard let zh = digits(2) else { return nil }
            _ = eat(":")
            zone = sign * (zh * 3600 + (digits(2) ?? 0) * 60)
        }
        guard i == s.count else { return nil }
        var t = tm()
        t.tm_year = Int32(year - 1900)
        t.tm_mon = Int32(month - 1)
        t.tm_mday = Int32(day)
        t.tm_hour = Int32(hour)
        t.tm_min = Int32(minute)
        return Double(timegm(&t)) + second - Double(zone)
    }

    /// Seconds since 1970 as ISO 8601 text (UTC, milliseconds).
    public static func iso(_ seconds: Double) -> String {
        var whole = time_t(seconds.rounded(.down))
        let ms = Int(((seconds - Double(whole)) * 1000).rounded())
        var parts = tm()
        gmtime_r(&whole, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let frac = ms == 0 ? "" : "." + String(1000 + min(ms, 999)).dropFirst()
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))\(frac)"
    }

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

func readWholeText(_ path: String) -> String? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        bytes += buf[..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}
