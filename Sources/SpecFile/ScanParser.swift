import NDArray
#if canImport(Glibc)
import Glibc
#endif

/// Reads one #S block: control lines into the scan's fields, data rows and @A spectra as
/// numbers parsed from the mapped bytes. Rows are kept as spec2nexus keeps them: a line
/// whose words are all numbers, as many as the #L labels (an interrupted scan's last,
/// short row is skipped and reported in `warnings`).
struct ScanParser {
    let b: SpecBytes
    let path: String
    let scan: SpecScan

    private var values: [Double] = []
    private var rowCounts: [Int32] = []
    private var rowLines: [Int32] = []
    private var labelLine = 0
    private var positionRows: [(values: [String], line: Int)] = []
    private var mcaSpectra: [(name: String, values: [Double])] = []
    private var warningCount = 0

    init(b: SpecBytes, path: String, scan: SpecScan) {
        self.b = b
        self.path = path
        self.scan = scan
        values.reserveCapacity(1024)
    }

    private mutating func warn(_ line: Int, _ text: String) {
        warningCount += 1
        if warningCount <= 50 { scan.warnings.append("\(path): line \(line): \(text)") }
    }

    mutating func run(from start: Int, to end: Int, firstLine: Int) throws {
        var pos = start, number = firstLine
        var first = true
        while pos < end {
            var (line, next) = b.line(at: pos, number: number)
            pos = next; number += 1
            if first { first = false; continue }  // the #S line
            let s = b.skipBlanks(line.start, line.end)
            if s == line.end { continue }  // blank
            let c = b.base[s]
            if c == 0x23 {  // '#'
                try control(line)
            } else if c == 0x40 && s + 1 < line.end && b.base[s + 1] == 0x41 {  // "@A"
                let nameEnd = b.tokenEnd(s, line.end)
                let name = "mca" + b.string(s + 2, nameEnd)
                var spectrum: [Double] = []
                var ok = true
                // "\" at a line's end continues the spectrum on the next line (SPEC's %16C format)
                var from = nameEnd
                while true {
                    var e = line.end
                    while e > from && isBlank(b.base[e - 1]) { e -= 1 }
                    let continued = e > from && b.base[e - 1] == 0x5C
                    if continued { e -= 1 }
                    ok = numbers(from, e, into: &spectrum) && ok
                    if !continued || pos >= end { break }
                    (line, next) = b.line(at: pos, number: number)
                    pos = next; number += 1
                    from = line.start
                }
                if ok { mcaSpectra.append((name, spectrum)) } else { warn(line.number, "@A spectrum with a value that is not a number, skipped") }
            } else {
                let before = values.count
                if numbers(s, line.end, into: &values) {
                    rowCounts.append(Int32(values.count - before))
                    rowLines.append(Int32(line.number))
                } else {
                    values.removeSubrange(before...)
                    warn(line.number, "not a data row (a word is not a number), skipped")
                }
            }
        }
        try finish()
    }

    /// Appends the numbers of [from, to); false if a word is not a number.
    private func numbers(_ from: Int, _ to: Int, into out: inout [Double]) -> Bool {
        var i = b.skipBlanks(from, to)
        while i < to {
            let e = b.tokenEnd(i, to)
            guard let v = parseNumber(b.base, i, e) else { return false }
            out.append(v)
            i = b.skipBlanks(e, to)
        }
        return true
    }

    private mutating func numberList(_ text: String, _ line: Int, _ what: String) -> [Double] {
        var out: [Double] = []
        for w in words(text) {
            if let v = w.utf8.withContiguousStorageIfAvailable({ p in parseNumber(p.baseAddress!, 0, p.count) }) ?? Double(w) {
                out.append(v)
            } else {
                warn(line, "\(what) value '\(w)' is not a number, skipped")
            }
        }
        return out
    }

    private mutating func control(_ line: Line) throws {
        let (ks, ke) = b.firstWord(line)
        let key = b.string(ks + 1, ke)
        let text = b.afterFirstWord(line)
        switch key {
        case "D": scan.date = text
        case "T", "M":
            let w = words(text)
            guard let first = w.first, let v = Double(first) else {
                warn(line.number, "#\(key) without a number: '\(text)'")
                scan.other.append((key, text))
                return
            }
            if key == "T" {
                scan.countTime = v
                var unit = w.dropFirst().joined(separator: " ")
                if unit.hasPrefix("(") { unit.removeFirst() }
                if unit.hasSuffix(")") { unit.removeLast() }
                scan.countTimeUnit = unit
            } else { scan.monitor = v }
        case "Q": scan.hkl = numberList(text, line.number, "#Q")
        case "N":
            if let n = words(text).first.flatMap({ Int($0) }) { scan.declaredColumns = n } else { warn(line.number, "#N without a column count: '\(text)'") }
        case "L":
            var labels = splitLabels(text)
            // some writers separate labels by one space: believe #N when it says so
            if labels.count == 1, let n = scan.declaredColumns, n > 1 {
                let w = words(text)
                if w.count == n { labels = w }
            }
            scan.labels = labels
            labelLine = line.number
        case "C": scan.comments.append(text)
        case "U": scan.userLines.append(text)
        case "UXML": scan.uxml.append(text)
        default:
            if key.first == "G" && isNumbered(key) {
                scan.geometry.append((key, numberList(text, line.number, "#\(key)")))
            } else if key.first == "O" && isNumbered(key) {
                // #O inside a scan (SPOCK writes them there) names the motors of its header, as spec2nexus takes them
                if key == "O0" { scan.header.motorNames = [] }
                scan.header.motorNames.append(splitLabels(text))
            } else if key.first == "o" && isNumbered(key) {
                scan.header.motorMnemonics.append(words(text))
            } else if key.first == "P" && isNumbered(key) {
                positionRows.append((words(text), line.number))
            } else {
                scan.other.append((key, text))
            }
        }
    }

    private mutating func finish() throws {
        // positions: the n-th #P row against the header's n-th #O row
        let names = scan.header.motorNames
        for (row, p) in positionRows.enumerated() {
            guard row < names.count else { warn(p.line, "#P\(row) found without #O\(row) in the header, ignored"); continue }
            for (col, text) in p.values.enumerated() {
                guard col < names[row].count else {
                    warn(p.line, "extra value in #P\(row) position \(col + 1), no matching name in #O\(row)")
                    continue
                }
                guard let v = Double(text) ?? (text.utf8.withContiguousStorageIfAvailable { parseNumber($0.baseAddress!, 0, $0.count) } ?? nil) else {
                    throw SpecError("\(path): line \(p.line): #P\(row) value '\(text)' for motor '\(names[row][col])' is not a number")
                }
                if let k = scan.positions.firstIndex(where: { $0.name == names[row][col] }) {
                    scan.positions[k].value = v  // a repeated name keeps its place, the last value wins (as a dict)
                } else {
                    scan.positions.append((names[row][col], v))
                }
            }
        }

        // labels made unique as spec2nexus does: "I0", "I0_1", ...
        var labels = scan.labels
        if labels.count == 1, !rowCounts.isEmpty, labels[0].contains(" ") {
            throw SpecError("\(path): line \(labelLine): #L labels must be separated by two spaces ('\(labels[0])')")
        }
        var seen = Set<String>()
        for i in labels.indices {
            var key = labels[i], k = 0
            while seen.contains(key) { k += 1; key = "\(labels[i])_\(k)" }
            labels[i] = key
            seen.insert(key)
        }
        scan.labels = labels
        if let n = scan.declaredColumns, n != labels.count, !labels.isEmpty {
            warn(labelLine, "#L names \(labels.count) columns, #N says \(n)")
        }

        let columns = labels.count
        if columns == 0 {
            if !rowCounts.isEmpty { warn(Int(rowLines[0]), "\(rowCounts.count) data rows without #L labels, ignored") }
        } else {
            var keep = 0
            for (k, n) in rowCounts.enumerated() {
                if Int(n) == columns { keep += 1; continue }
                let last = k == rowCounts.count - 1
                warn(Int(rowLines[k]), "row with \(n) values where #L names \(columns) columns\(last && Int(n) < columns ? " (scan interrupted?)" : ""), skipped")
            }
            // one contiguous array per column, filled straight from the parsed rows
            let arrays = try (0..<columns).map { _ in try arrayWork { try NDArray(uninitialized: [keep], dtype: .float64) } }
            let outs = arrays.map { $0.storage.bytes.assumingMemoryBound(to: Double.self) }
            var row = 0, offset = 0
            values.withUnsafeBufferPointer { v in
                for n in rowCounts {
                    let n = Int(n)
                    if n == columns {
                        for c in 0..<columns { outs[c][row] = v[offset + c] }
                        row += 1
                    }
                    offset += n
                }
            }
            scan.columns = arrays
        }

        // MCA spectra, one 2-D array per name (rows padded with NaN if lengths differ)
        var order: [String] = []
        var byName: [String: [[Double]]] = [:]
        for (name, v) in mcaSpectra {
            if byName[name] == nil { order.append(name); byName[name] = [] }
            byName[name]!.append(v)
        }
        for name in order {
            let spectra = byName[name]!
            let width = spectra.map(\.count).max() ?? 0
            if spectra.contains(where: { $0.count != width }) {
                warn(scan.line, "@\(name == "mca" ? "A" : "A" + name.dropFirst(3)) spectra of different lengths, padded with NaN")
            }
            let a = try arrayWork { try NDArray(uninitialized: [spectra.count, width], dtype: .float64) }
            let p = a.storage.bytes.assumingMemoryBound(to: Double.self)
            for (r, s) in spectra.enumerated() {
                for k in 0..<width { p[r * width + k] = k < s.count ? s[k] : .nan }
            }
            scan.mca.append((name, a))
        }
        if warningCount > 50 { scan.warnings.append("\(path): \(warningCount - 50) more warnings in scan \(scan.name)") }
    }

    private func arrayWork<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ArrayError { throw SpecError("\(path): scan \(scan.name): \(e.message)") }
    }
}
