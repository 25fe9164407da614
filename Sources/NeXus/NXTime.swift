#if canImport(Glibc)
import Glibc
#endif

/// Instants as files write them: ISO 8601 (NeXus's NX_DATE_TIME) and the other forms
/// detector headers use. One parser for the catalog's harvest and queries, the stacker's
/// frame time stamps and the logs it interpolates.
public enum NXTime {
    /// Seconds since 1970 of "2026-12-01", "2026-12-01T10:00", "2026-12-01T10:00:00",
    /// "...Z", "...+02:00", "2026-12-01 10:00:00.5" (or ",5") and SLS's
    /// "2007/Jun/17 15:12:36.928"; a time without a zone is UTC. nil for anything else.
    public static func seconds(_ text: String) -> Double? {
        let s = Array(text.utf8.drop(while: isBlank).reversed().drop(while: isBlank).reversed())
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= s.count else { return nil }
            var v = 0
            for k in 0..<n {
                let c = s[i + k]
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int(c - 48)
            }
            i += n
            return v
        }
        func eat(_ c: UInt8) -> Bool {
            if i < s.count, s[i] == c { i += 1; return true }
            return false
        }
        guard let year = digits(4) else { return nil }
        let month: Int
        if eat(UInt8(ascii: "-")) {
            guard let m = digits(2), eat(UInt8(ascii: "-")) else { return nil }
            month = m
        } else if eat(UInt8(ascii: "/")) {  // SLS: 2007/Jun/17
            guard i + 3 <= s.count,
                  let k = monthNames.firstIndex(of: String(decoding: s[i..<(i + 3)], as: UTF8.self).lowercased()) else { return nil }
            i += 3
            guard eat(UInt8(ascii: "/")) else { return nil }
            month = k + 1
        } else { return nil }
        guard let day = digits(2), (1...12).contains(month), (1...31).contains(day) else { return nil }
        var hour = 0, minute = 0, second = 0.0, zone = 0
        if eat(UInt8(ascii: "T")) || eat(UInt8(ascii: " ")) {
            guard let h = digits(2), eat(UInt8(ascii: ":")), let m = digits(2), h < 24, m < 60 else { return nil }
            hour = h
            minute = m
            if eat(UInt8(ascii: ":")) {
                guard let sec = digits(2), sec <= 60 else { return nil }
                second = Double(sec)
                if eat(UInt8(ascii: ".")) || eat(UInt8(ascii: ",")) {
                    var scale = 0.1
                    while i < s.count, s[i] >= 48 && s[i] <= 57 { second += Double(s[i] - 48) * scale; scale /= 10; i += 1 }
                }
            }
            if eat(UInt8(ascii: "Z")) {
            } else if i < s.count, s[i] == UInt8(ascii: "+") || s[i] == UInt8(ascii: "-") {
                let sign = s[i] == UInt8(ascii: "-") ? -1 : 1
                i += 1
                guard let zh = digits(2) else { return nil }
                _ = eat(UInt8(ascii: ":"))
                zone = sign * (zh * 3600 + (digits(2) ?? 0) * 60)
            }
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

    /// ISO 8601 in UTC: "2026-12-01T10:00:00Z", with milliseconds when asked
    /// ("2026-12-01T10:00:00.250Z") and only where they are not zero.
    public static func iso(_ seconds: Double, milliseconds: Bool = false) -> String {
        var whole = time_t(seconds.rounded(.down))
        var ms = milliseconds ? Int(((seconds - Double(whole)) * 1000).rounded()) : 0
        if ms >= 1000 { whole += 1; ms -= 1000 }
        var parts = tm()
        gmtime_r(&whole, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let fraction = ms == 0 ? "" : "." + String(String(1000 + ms).dropFirst())
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))\(fraction)Z"
    }

    private static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    private static func isBlank(_ c: UInt8) -> Bool { c == 32 || c == 9 || c == 0 || c == 13 || c == 10 }
}
