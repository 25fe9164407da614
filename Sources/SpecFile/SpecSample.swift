/// What a SPEC scan says about its sample. SPEC has no sample or temperature fields:
/// CHESS and APS users put them in comments, counters and motors. One set of rules for
/// the catalog's harvest and the stacker's `--spec` (docs/sources.md).
extension SpecScan {
    /// Column or motor names that hold the sample temperature (compared lower-cased).
    public static let temperatureNames: Set<String> = ["temperature", "temp", "tsample", "t_sample", "sample_temp",
                                                       "sampletemp", "sample_t", "tsam", "t_sam"]

    /// The scan's comments, then its header's.
    public var allComments: [String] { comments + header.comments }

    /// "sample: LaB6", "Sample = LaB6 powder", "#C sample LaB6" in comments: the value
    /// after the word (up to a comma or semicolon).
    public var sampleName: String? {
        for c in allComments {
            let words = c.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let i = words.firstIndex(where: { SpecScan.stripped($0.lowercased(), ":=") == "sample" }) else { continue }
            var rest = words[(i + 1)...].joined(separator: " ")
            while let f = rest.first, f == ":" || f == "=" || f == " " { rest.removeFirst() }
            if let cut = rest.firstIndex(where: { $0 == "," || $0 == ";" }) { rest = String(rest[..<cut]) }
            rest = SpecScan.stripped(rest, " ")
            if !rest.isEmpty { return rest }
        }
        return nil
    }

    /// The sample temperature: the mean of a temperature column, else a temperature motor's
    /// position, else "temperature = 300 K" in a comment. Columns and motors are in kelvin
    /// (SPEC keeps no units); a comment's units are its own when `isTemperatureUnit` knows
    /// them (K without any).
    public func sampleTemperature(isTemperatureUnit: (String) -> Bool) -> (value: Double, units: String)? {
        for (label, column) in zip(labels, columns) where SpecScan.temperatureNames.contains(label.lowercased()) {
            let xs = column.doubles().filter { $0.isFinite }
            if !xs.isEmpty { return (xs.reduce(0, +) / Double(xs.count), "K") }
        }
        for (motor, value) in positions where SpecScan.temperatureNames.contains(motor.lowercased()) && value.isFinite {
            return (value, "K")
        }
        for c in allComments {
            let words = c.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let i = words.firstIndex(where: { SpecScan.temperatureNames.contains(SpecScan.stripped($0.lowercased(), ":=")) }) else { continue }
            var rest = Array(words[(i + 1)...])
            while let f = rest.first, f == "=" || f == ":" { rest.removeFirst() }
            guard let first = rest.first else { continue }
            // "300", "300K", "300 K", "25 degC"
            let digits = first.prefix(while: { $0.isNumber || $0 == "." || $0 == "-" || $0 == "+" || $0 == "e" || $0 == "E" })
            guard let v = Double(digits), v.isFinite else { continue }
            var units = String(first.dropFirst(digits.count))
            if units.isEmpty, rest.count > 1, isTemperatureUnit(rest[1]) { units = rest[1] }
            if units.isEmpty || !isTemperatureUnit(units) { units = "K" }
            return (v, units)
        }
        return nil
    }

    static func stripped(_ s: String, _ set: String) -> String {
        var t = Substring(s)
        while let f = t.first, set.contains(f) { t.removeFirst() }
        while let l = t.last, set.contains(l) { t.removeLast() }
        return String(t)
    }
}
