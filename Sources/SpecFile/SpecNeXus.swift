import NDArray
import NeXus
#if canImport(Glibc)
import Glibc
#endif

/// SPEC scans to NeXus in spec2nexus's layout: one NXentry "S<name>" per scan with title,
/// scan_number, command, date, comments, T or M; NXdata "data" with every column (the
/// first, the scanned motor, as axis; the last, the detector, as signal) and MCA spectra;
/// "positioners" (one NXpositioner per motor, linked as instrument/positioners);
/// #G rows under instrument/geometry_parameters; #U lines under UserReserved; #UXML text.
public enum SpecToNeXus {
    /// Writes `scans` (names; all when nil) of `spec` into a new file at `path`.
    /// `progress` is called after each scan with the count written (it may throw to stop).
    public static func write(_ spec: SpecFile, to path: String, scans: [String]? = nil,
                             progress: ((Int) throws -> Void)? = nil) throws {
        let names = scans ?? spec.scanNames
        for n in names where try spec.scan(n) == nil {
            throw SpecError("\(spec.path): no scan \(n) (scans: \(summary(spec.scanNames)))")
        }
        let file = try NXFile(path: path, mode: .write)
        do {
            let root = file.root
            try root.setAttribute("creator", .string("nxlua"))
            try root.setAttribute("SPEC_file", .string(spec.specFileName ?? spec.path))
            if let h = spec.headers.first {
                try root.setAttribute("SPEC_epoch", .string(h.epoch))
                try root.setAttribute("SPEC_date", .string(iso8601(h.date)))
                try root.setAttribute("SPEC_comments", .string(h.comments.joined(separator: "\n")))
            }
            try root.setAttribute("SPEC_num_headers", integer(spec.headers.count))
            if let first = names.first { try root.setAttribute("default", .string("S" + first)) }
            for (k, n) in names.enumerated() {
                guard let scan = try spec.scan(n) else { continue }
                try writeScan(scan, into: try root.makeGroup("S" + n, nxclass: "NXentry"))
                try progress?(k + 1)
            }
            try file.close()
        } catch {
            try? file.close()
            unlink(path)
            throw error
        }
    }

    public static func summary(_ names: [String]) -> String {
        names.count <= 8 ? names.joined(separator: ", ") : names.prefix(4).joined(separator: ", ") + ", ..., " + names.suffix(2).joined(separator: ", ")
    }

    static func number(_ v: Double) -> NXValue { .array(try! NDArray.full([], v)) }
    static func integer(_ v: Int) -> NXValue { .array(try! NDArray.full([], Double(v), dtype: .int64)) }

    static func text(_ g: NXGroup, _ name: String, _ value: String, attrs: [(String, String)] = []) throws {
        let f = try g.makeField(name, value: .string(value))
        for (k, v) in attrs { try f.setAttribute(k, .string(v)) }
    }

    static func writeScan(_ scan: SpecScan, into entry: NXGroup) throws {
        try entry.setAttribute("default", .string("data"))
        try text(entry, "title", scan.title)
        try text(entry, "experiment_description", "SPEC scan")
        let n: NXField
        if let i = Int(scan.number) {
            n = try entry.makeField("scan_number", value: .array(try NDArray.full([], Double(i), dtype: .int64)))
        } else {
            n = try entry.makeField("scan_number", value: .string(scan.number))
        }
        try n.setAttribute("spec_name", .string("SCAN_N"))
        if scan.repeatIndex > 0 { try n.setAttribute("repeat", integer(scan.repeatIndex)) }
        try text(entry, "command", scan.command)
        if !scan.date.isEmpty { try text(entry, "date", iso8601(scan.date), attrs: [("spec_text", scan.date)]) }
        if !scan.comments.isEmpty { try text(entry, "comments", scan.comments.joined(separator: "\n")) }
        if let t = scan.countTime {
            try text(entry, "counting_basis", "SPEC scan with constant counting time")
            let f = try entry.makeField("T", value: number(t))
            try f.setAttribute("units", .string("s"))
            try entry.makeGroup("monitor", nxclass: "NXmonitor").link("preset", to: f)
        } else if let m = scan.monitor {
            try text(entry, "counting_basis", "SPEC scan with constant monitor count")
            let f = try entry.makeField("M", value: number(m))
            try f.setAttribute("units", .string("counts"))
            try entry.makeGroup("monitor", nxclass: "NXmonitor").link("preset", to: f)
        }
        if !scan.hkl.isEmpty {
            try entry.makeField("Q", value: .array(try NDArray.from(scan.hkl, shape: [scan.hkl.count])))
        }
        try writeData(scan, into: entry)

        let instrument = try entry.makeGroup("instrument", nxclass: "NXinstrument")
        if !scan.positions.isEmpty {
            let group = try entry.makeGroup("positioners", nxclass: "NXnote")
            var used = Set<String>()
            for (name, value) in scan.positions {
                let p = try group.makeGroup(unique(cleanName(name), &used), nxclass: "NXpositioner")
                try text(p, "name", name)
                let v = try p.makeField("value", value: number(value))
                try v.setAttribute("spec_name", .string(name))
            }
            try instrument.link("positioners", to: group)
        }
        if !scan.geometry.isEmpty {
            let g = try instrument.makeGroup("geometry_parameters", nxclass: "NXnote")
            try text(g, "description", "SPEC #G lines (geometry), as written")
            for (key, values) in scan.geometry {
                try g.makeField(key, value: .array(try NDArray.from(values, shape: [values.count])))
            }
        }
        if !scan.userLines.isEmpty {
            let g = try entry.makeGroup("UserReserved", nxclass: "NXnote")
            for (i, line) in scan.userLines.enumerated() { try text(g, "item_\(i + 1)", line) }
        }
        if !scan.uxml.isEmpty {
            let g = try entry.makeGroup("UXML", nxclass: "NXnote")
            try text(g, "type", "text/xml")
            try text(g, "data", scan.uxml.joined(separator: "\n"))
        }
        if !scan.header.motorMnemonics.isEmpty {
            let g = try entry.makeGroup("positioner_cross_reference", nxclass: "NXnote")
            var used = Set<String>()
            for (row, mnes) in scan.header.motorMnemonics.enumerated() where row < scan.header.motorNames.count {
                for (col, mne) in mnes.enumerated() where col < scan.header.motorNames[row].count {
                    try text(g, unique(cleanName(mne), &used), scan.header.motorNames[row][col], attrs: [("mne", mne)])
                }
            }
        }
    }

    static func writeData(_ scan: SpecScan, into entry: NXGroup) throws {
        let data = try entry.makeGroup("data", nxclass: "NXdata")
        try text(data, "description", "SPEC scan data")
        guard !scan.labels.isEmpty else {
            // spec2nexus's placeholder: an NXentry must have data to plot
            try data.setAttribute("signal", .string("no_y_data"))
            try data.setAttribute("axes", .string("no_x_data"))
            for n in ["no_x_data", "no_y_data"] {
                let f = try data.makeField(n, value: .array(try NDArray(zeros: [0], dtype: .float64)))
                try f.setAttribute("long_name", .string("no data points in this scan"))
            }
            return
        }
        var used = Set<String>()
        var fieldNames: [String] = []
        for (label, column) in zip(scan.labels, scan.columns) {
            let name = unique(cleanName(label), &used)
            fieldNames.append(name)
            let f = try data.makeField(name, value: .array(column))
            try f.setAttribute("spec_name", .string(label))
        }
        let axis = fieldNames[0], signal = fieldNames[fieldNames.count - 1]
        try data.setAttribute("signal", .string(signal))
        try data.setAttribute("axes", .string(axis))
        try data.setAttribute("\(axis)_indices", .array(try NDArray.full([1], 0, dtype: .int64)))
        for (name, spectra) in scan.mca {
            let field = unique("_\(name)_", &used)
            let f = try data.makeField(field, value: .array(spectra))
            try f.setAttribute("units", .string("counts"))
            try f.setAttribute("axes", .string("\(axis):\(field)channel_"))
            let channels = try NDArray.arange(1, Double(spectra.shape[1] + 1), dtype: .int64)
            let c = try data.makeField(unique("\(field)channel_", &used), value: .array(channels))
            try c.setAttribute("units", .string("channel"))
        }
    }

    /// spec2nexus's clean_name: a NeXus-valid name ([A-Za-z_][A-Za-z0-9_]*).
    public static func cleanName(_ s: String) -> String {
        var out = String(s.unicodeScalars.map { ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") ? Character($0) : "_" })
        if out.isEmpty { out = "_" }
        if let c = out.first, c.isNumber { out = "_" + out }
        return out
    }

    static func unique(_ name: String, _ used: inout Set<String>) -> String {
        var key = name, k = 0
        while used.contains(key) { k += 1; key = "\(name)_\(k)" }
        used.insert(key)
        return key
    }

    /// SPEC's date ("Wed Nov 03 13:39:34 2010") or SPOCK's ("09/15/17 04:39:10") as ISO 8601;
    /// other text unchanged.
    public static func iso8601(_ date: String) -> String {
        func pad(_ v: Int, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        func iso(_ y: Int, _ mo: Int, _ d: Int, _ h: Int, _ mi: Int, _ s: Int) -> String? {
            guard (1...12).contains(mo), (1...31).contains(d), (0...23).contains(h), (0...59).contains(mi), (0...61).contains(s) else { return nil }
            return "\(pad(y, 4))-\(pad(mo, 2))-\(pad(d, 2))T\(pad(h, 2)):\(pad(mi, 2)):\(pad(s, 2))"
        }
        func clock(_ t: Substring) -> (Int, Int, Int)? {
            let p = t.split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
            guard p.count == 3, let h = p[0], let m = p[1], let s = p[2] else { return nil }
            return (h, m, s)
        }
        let w = date.split(whereSeparator: { $0 == " " || $0 == "\t" })
        // SPEC: "Wed Nov 03 13:39:34 2010"
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        if w.count == 5, let mo = months.firstIndex(of: String(w[1])), let d = Int(w[2]), let (h, mi, s) = clock(w[3]),
           let y = Int(w[4]), let out = iso(y, mo + 1, d, h, mi, s) { return out }
        // SPOCK: "09/15/17 04:39:10"
        if w.count == 2 {
            let p = w[0].split(separator: "/").map { Int($0) }
            if p.count == 3, let mo = p[0], let d = p[1], let yy = p[2], let (h, mi, s) = clock(w[1]),
               let out = iso(yy < 69 ? 2000 + yy : (yy < 100 ? 1900 + yy : yy), mo, d, h, mi, s) { return out }
        }
        return date
    }
}
