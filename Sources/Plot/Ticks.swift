#if canImport(Glibc)
import Glibc
#endif

/// Tick positions and labels: steps of 1, 2 or 5 times a power of ten on linear axes,
/// decades on log axes; labels as plain decimals, or mantissas with a shared "×10^k"
/// when the values are very large or very small.
public struct Ticks: Sendable, Equatable {
    public var values: [Double]
    public var labels: [String]
    /// A shared power of ten written once at the end of the axis ("×10^6"), or nil.
    public var exponent: Int?
    /// Log axes label decades as 10^k: the exponent of each label (the renderer writes
    /// it as a superscript); nil on linear axes.
    public var superscripts: [String]?

    public init(values: [Double], labels: [String], exponent: Int? = nil, superscripts: [String]? = nil) {
        self.values = values
        self.labels = labels
        self.exponent = exponent
        self.superscripts = superscripts
    }

    /// The smallest step of 1, 2 or 5 times a power of ten giving at most `target`
    /// intervals.
    public static func niceStep(_ span: Double, target: Int = 8) -> Double {
        guard span > 0, span.isFinite else { return 1 }
        let raw = span / Double(max(target, 1))
        let mag = pow(10, floor(log10(raw)))
        let f = raw / mag
        let nice: Double = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10
        return nice * mag
    }

    /// Linear ticks inside [lo, hi] (both included when they fall on a step).
    public static func linear(_ lo: Double, _ hi: Double, target: Int = 8) -> Ticks {
        let a = min(lo, hi), b = max(lo, hi)
        guard a.isFinite, b.isFinite else { return Ticks(values: [], labels: []) }
        if a == b { return Ticks(values: [a], labels: [format(a, step: max(abs(a), 1))]) }
        let step = niceStep(b - a, target: target)
        var values: [Double] = []
        var k = ceil(a / step - 1e-9)
        while k * step <= b + step * 1e-9 {
            let v = k * step
            values.append(abs(v) < step * 1e-9 ? 0 : v)
            k += 1
            if values.count > 100 { break }
        }
        return labelled(values, step: step)
    }

    /// Labels for values on a step: plain when every label is short, else mantissas
    /// with a shared power of ten.
    static func labelled(_ values: [Double], step: Double) -> Ticks {
        let biggest = values.map { abs($0) }.max() ?? 0
        if biggest >= 1e5 || (biggest < 1e-3 && biggest > 0) || step < 1e-4 {
            let e = Int(floor(log10(biggest > 0 ? biggest : step)))
            let scale = pow(10, Double(e))
            return Ticks(values: values, labels: values.map { format($0 / scale, step: step / scale) }, exponent: e)
        }
        return Ticks(values: values, labels: values.map { format($0, step: step) })
    }

    /// A value with as many decimals as the step needs ("0.25", "1500", "-2").
    public static func format(_ v: Double, step: Double) -> String {
        let decimals = max(0, min(10, Int(ceil(-log10(step) - 1e-9))))
        if decimals == 0 { return String(Int64(v.rounded())) }
        var s = String(format: decimals, v)
        if s.hasPrefix("-"), Double(s) == 0 { s.removeFirst() }
        return s
    }

    /// Log ticks: every decade inside [lo, hi] (every other one ... when there are many);
    /// with fewer than two decades, 1-2-5 multiples or linear ticks.
    public static func log(_ lo: Double, _ hi: Double) -> Ticks {
        let a = min(lo, hi), b = max(lo, hi)
        guard a > 0, b.isFinite else { return Ticks(values: [], labels: []) }
        let e0 = Int(ceil(log10(a) - 1e-9)), e1 = Int(floor(log10(b) + 1e-9))
        if e1 - e0 >= 2 {
            let every = max(1, (e1 - e0 + 7) / 8)
            let exps = stride(from: e0, through: e1, by: every).map { $0 }
            return Ticks(values: exps.map { pow(10, Double($0)) }, labels: exps.map { _ in "10" },
                         superscripts: exps.map { String($0) })
        }
        var values: [Double] = []
        for e in (e0 - 1)...(e1 + 1) {
            for m in [1.0, 2, 5] {
                let v = m * pow(10, Double(e))
                if v >= a * (1 - 1e-9) && v <= b * (1 + 1e-9) { values.append(v) }
            }
        }
        if values.count >= 2 {
            return Ticks(values: values, labels: values.map { shortest($0) })
        }
        return linear(a, b, target: 4)
    }

    static func shortest(_ v: Double) -> String {
        if v >= 1e5 || v < 1e-3 {
            let e = Int(floor(log10(v) + 1e-9))
            let m = v / pow(10, Double(e))
            return (abs(m - 1) < 1e-9 ? "" : format(m, step: 1) + "×") + "1e\(e)"
        }
        return format(v, step: v >= 1 ? 1 : pow(10, floor(log10(v))))
    }

    /// Symlog ticks: 0 and the decades on each side beyond linthresh.
    public static func symlog(_ lo: Double, _ hi: Double, linthresh: Double) -> Ticks {
        var values: [Double] = []
        if lo <= 0 && hi >= 0 { values.append(0) }
        let top = max(abs(lo), abs(hi))
        guard top > 0 else { return linear(lo, hi) }
        let e0 = Int(ceil(log10(linthresh) - 1e-9)), e1 = Int(floor(log10(top) + 1e-9))
        if e1 >= e0 {
            let every = max(1, (e1 - e0 + 4) / 4)
            for e in stride(from: e0, through: e1, by: every) {
                let v = pow(10, Double(e))
                if v <= hi { values.append(v) }
                if -v >= lo { values.append(-v) }
            }
        }
        values.sort()
        if values.count < 2 { return linear(lo, hi) }
        return Ticks(values: values, labels: values.map { v in v == 0 ? "0" : (v < 0 ? "-" : "") + shortest(abs(v)) })
    }
}

extension String {
    /// printf's %.Nf without Foundation.
    init(format decimals: Int, _ v: Double) {
        var buf = [CChar](repeating: 0, count: 64)
        _ = withVaList([Int32(decimals), v]) { vsnprintf(&buf, 64, "%.*f", $0) }
        self = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
