#if canImport(Glibc)
import Glibc
#endif

/// A one-line progress bar on stderr for long work (streaming reductions, stacking,
/// transfers): shown only when stderr is a terminal, CI is unset and NXLUA_PROGRESS is
/// not "0", and only once the work has taken half a second, so quick calls, pipes and
/// logs stay clean. Redrawn at most ten times a second; `finish()` erases it.
public final class ProgressBar {
    public let label: String
    public let total: Int
    public let unit: String
    /// Bytes per unit, to show a rate in MB/s (0: units per second).
    public let bytesPerUnit: Int
    private let start = ProgressBar.now()
    private var lastDraw = 0.0
    private var drawn = false
    private let enabled: Bool

    public init(label: String, total: Int, unit: String = "", bytesPerUnit: Int = 0) {
        self.label = label
        self.total = total
        self.unit = unit
        self.bytesPerUnit = bytesPerUnit
        enabled = ProgressBar.isWanted
    }

    /// Whether bars are drawn in this process.
    public static var isWanted: Bool {
        guard isatty(2) != 0, getenv("CI") == nil else { return false }
        if let v = getenv("NXLUA_PROGRESS"), String(cString: v) == "0" { return false }
        if let t = getenv("TERM"), String(cString: t) == "dumb" { return false }
        return true
    }

    /// `note`: a short text shown after the rate ("lag 3").
    public func update(_ done: Int, note: String = "") {
        guard enabled else { return }
        let t = ProgressBar.now()
        let elapsed = t - start
        guard elapsed >= 0.5, t - lastDraw >= 0.1 || done >= total else { return }
        lastDraw = t
        var line = ProgressBar.render(label: label, done: done, total: total, unit: unit,
                                      bytesPerUnit: bytesPerUnit, elapsed: elapsed, width: ProgressBar.columns())
        if !note.isEmpty { line += "  " + note }
        write("\r" + line + "\u{1B}[K")
        drawn = true
    }

    /// Erases the bar (the caller prints its own result).
    public func finish() {
        guard drawn else { return }
        write("\r\u{1B}[K")
        drawn = false
    }

    deinit { finish() }

    /// The text of the bar: "label [#####-----]  45%  90/200 frames  1.2 GB/s  eta 3 s";
    /// with no total (0: a folder followed until it stops): "label  90 frames  25/s  1.2 GB/s".
    public static func render(label: String, done: Int, total: Int, unit: String, bytesPerUnit: Int,
                              elapsed: Double, width: Int) -> String {
        if total <= 0 {
            var text = "\(label)  \(done)\(unit.isEmpty ? "" : " " + unit)"
            if elapsed > 0, done > 0 {
                let perSecond = Double(done) / elapsed
                text += "  \(Int(perSecond))/s"
                if bytesPerUnit > 0 { text += "  \(bytes(perSecond * Double(bytesPerUnit)))/s" }
            }
            return text
        }
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 0
        var tail = " \(String(Int(fraction * 100)).leftPadded(3))%  \(done)/\(total)\(unit.isEmpty ? "" : " " + unit)"
        if elapsed > 0, done > 0 {
            let perSecond = Double(done) / elapsed
            tail += "  \(Int(perSecond))/s"
            if bytesPerUnit > 0 { tail += "  \(bytes(perSecond * Double(bytesPerUnit)))/s" }
            if done < total { tail += "  eta \(Int((Double(total - done) / perSecond).rounded(.up))) s" }
        }
        let barWidth = max(10, min(40, width - label.count - 56))  // fixed: the tail's length varies
        let filled = Int(fraction * Double(barWidth))
        return "\(label) [" + String(repeating: "#", count: filled) + String(repeating: "-", count: barWidth - filled) + "]" + tail
    }

    static func bytes(_ x: Double) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var v = x, i = 0
        while v >= 1000, i < units.count - 1 { v /= 1000; i += 1 }
        let rounded = (v * 10).rounded() / 10
        return "\(rounded) \(units[i])"
    }

    private func write(_ s: String) {
        var bytes = Array(s.utf8)
        _ = Glibc.write(2, &bytes, bytes.count)
    }

    private static func columns() -> Int {
        var w = winsize()
        return ioctl(2, UInt(TIOCGWINSZ), &w) == 0 && w.ws_col > 0 ? Int(w.ws_col) : 80
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

extension String {
    fileprivate func leftPadded(_ n: Int) -> String { String(repeating: " ", count: max(0, n - count)) + self }
}
