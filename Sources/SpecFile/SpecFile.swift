import NDArray
#if canImport(Glibc)
import Glibc
#endif

/// A header block of a SPEC file (from an #E line to the next #E, #F or #S line): the
/// motor names that #P lines of the following scans refer to, comments, date.
public final class SpecHeader: @unchecked Sendable {
    /// 1-based line of the #E line (0 for the empty header of scans before any #E).
    public let line: Int
    public internal(set) var epoch: String = ""
    public internal(set) var date: String = ""
    public internal(set) var comments: [String] = []
    /// #O rows: motor names (split at two or more spaces: names may hold one space).
    public internal(set) var motorNames: [[String]] = []
    /// #o rows: motor mnemonics.
    public internal(set) var motorMnemonics: [[String]] = []
    /// #J rows: counter names; #j rows: counter mnemonics.
    public internal(set) var counterNames: [[String]] = []
    public internal(set) var counterMnemonics: [[String]] = []
    public internal(set) var userLines: [String] = []
    /// Any other control line, in order: (key without '#', text after it).
    public internal(set) var other: [(key: String, text: String)] = []

    init(line: Int) { self.line = line }
}

/// One scan (#S block), read in full.
public final class SpecScan: @unchecked Sendable {
    /// The name spec2nexus gives: the #S number, "12.1", "12.2", ... for repeats.
    public let name: String
    /// The #S number as written.
    public let number: String
    /// 0 for the first scan of a number, 1 for the first repeat ("12.1"), ...
    public let repeatIndex: Int
    public let command: String
    /// The #S line's text after "#S" (number and command, as spec2nexus's entry title).
    public let title: String
    /// 1-based line of the #S line.
    public let line: Int
    public let header: SpecHeader
    public internal(set) var date = ""
    /// #T (count time, with its unit word) or #M (monitor counts) and its text.
    public internal(set) var countTime: Double?
    public internal(set) var countTimeUnit = ""
    public internal(set) var monitor: Double?
    /// #G0, #G1, ... rows (geometry), #Q (hkl at start).
    public internal(set) var geometry: [(key: String, values: [Double])] = []
    public internal(set) var hkl: [Double] = []
    /// #N column count as written (nil when absent).
    public internal(set) var declaredColumns: Int?
    /// #L labels made unique as spec2nexus does ("I0", "I0_1").
    public internal(set) var labels: [String] = []
    /// One float64 array per label (rows whose value count matches the labels).
    public internal(set) var columns: [NDArray] = []
    /// Motor positions at the scan's start (#P rows against the header's #O names), in order.
    public internal(set) var positions: [(name: String, value: Double)] = []
    public internal(set) var comments: [String] = []
    public internal(set) var userLines: [String] = []
    /// The #UXML lines' text (XML), joined by newlines.
    public internal(set) var uxml: [String] = []
    /// MCA spectra from @A lines: "mca" (@A), "mca1" (@A1), ...; (spectra, channels) float64.
    public internal(set) var mca: [(name: String, spectra: NDArray)] = []
    /// Any other control line, in order: (key without '#', text after it).
    public internal(set) var other: [(key: String, text: String)] = []
    /// What was tolerated: rows skipped (an interrupted scan's last row), #P values without
    /// a motor name, a #L/#N mismatch; each names the line.
    public internal(set) var warnings: [String] = []

    init(name: String, number: String, repeatIndex: Int, command: String, title: String, line: Int, header: SpecHeader) {
        self.name = name
        self.title = title
        self.number = number
        self.repeatIndex = repeatIndex
        self.command = command
        self.line = line
        self.header = header
    }

    public var rowCount: Int { columns.first?.count ?? 0 }

    public func column(_ label: String) -> NDArray? {
        labels.firstIndex(of: label).map { columns[$0] }
    }

    public func position(_ motor: String) -> Double? {
        positions.last(where: { $0.name == motor })?.value
    }
}

/// A SPEC data file: scans indexed when opened (one pass finding #E, #F and #S lines),
/// each scan read in full on first use, with its numbers parsed straight from the mapped
/// bytes into arrays. Follows spec2nexus's reading (scan names, labels, positions, which
/// rows count), so both give the same answers.
public final class SpecFile: @unchecked Sendable {
    public let path: String
    /// The #F line's name (the file name SPEC wrote), if any.
    public private(set) var specFileName: String?
    public private(set) var headers: [SpecHeader] = []
    /// Scan names in file order ("1", "2", "12", "12.1", ...).
    public private(set) var scanNames: [String] = []

    private let mapped: MappedFile
    private let bytes: SpecBytes?
    private struct ScanRange { let start: Int; let end: Int; let line: Int; let header: Int; let number: String; let repeatIndex: Int; let command: String; let title: String }
    private var ranges: [ScanRange] = []
    private var indexByName: [String: Int] = [:]
    private var cache: [Int: SpecScan] = [:]
    private var lock = pthread_mutex_t()

    public init(path: String) throws {
        self.path = path
        mapped = try MappedFile(path: path)
        pthread_mutex_init(&lock, nil)
        guard let base = mapped.bytes else { throw SpecError("\(path): not a SPEC data file (empty)") }
        let n = mapped.count
        let probe = min(n, 65536)
        if memchr(base, 0, probe) != nil { throw SpecError("\(path): not a SPEC data file (binary data: a NUL byte in the first \(probe) bytes)") }
        let newline: UInt8 = memchr(base, 0x0A, n) != nil ? 0x0A : 0x0D
        let b = SpecBytes(base: base, count: n, newline: newline)
        bytes = b
        try index(b)
        if headers.isEmpty && ranges.isEmpty && specFileName == nil {
            throw SpecError("\(path): not a SPEC data file (no #F, #E or #S control line)")
        }
    }

    deinit { pthread_mutex_destroy(&lock) }

    // MARK: the index

    /// Section starts as spec2nexus cuts them: a line whose first word is #E, #F or #S.
    private enum Section { case none, file, header, scan }

    private func sectionKind(_ b: SpecBytes, _ line: Line) -> Section {
        let (s, e) = b.firstWord(line)
        guard e - s == 2, b.base[s] == 0x23 else { return .none }
        switch b.base[s + 1] {
        case 0x53: return .scan    // S
        case 0x45: return .header  // E
        case 0x46: return .file    // F
        default: return .none
        }
    }

    private func index(_ b: SpecBytes) throws {
        var pos = 0, number = 1
        var current = Section.none
        var sectionStart = 0, sectionLine = 0
        var pendingScan: (number: String, command: String, title: String)?
        func closeSection(at end: Int) throws {
            switch current {
            case .none, .file: break
            case .header:
                headers.append(parseHeader(b, from: sectionStart, to: end, line: sectionLine))
            case .scan:
                guard let s = pendingScan else { break }
                if headers.isEmpty { headers.append(SpecHeader(line: 0)) }
                // spec2nexus names a repeat "N.k" with the lowest k not yet in use.
                var name = s.number, k = 0
                while indexByName[name] != nil { k += 1; name = "\(s.number).\(k)" }
                indexByName[name] = ranges.count
                scanNames.append(name)
                ranges.append(ScanRange(start: sectionStart, end: end, line: sectionLine, header: headers.count - 1,
                                        number: s.number, repeatIndex: k, command: s.command, title: s.title))
            }
        }
        while pos < b.count {
            let (line, next) = b.line(at: pos, number: number)
            // cheap test first: control lines start with '#' (after blanks)
            let first = b.skipBlanks(line.start, line.end)
            if first < line.end && b.base[first] == 0x23 {
                let kind = sectionKind(b, line)
                if kind != .none {
                    try closeSection(at: line.start)
                    current = kind
                    sectionStart = line.start
                    sectionLine = number
                    switch kind {
                    case .file:
                        if specFileName == nil { specFileName = b.afterFirstWord(line) }
                    case .scan:
                        let text = b.afterFirstWord(line)
                        guard let num = words(text).first else {
                            throw SpecError("\(path): line \(number): #S line without a scan number")
                        }
                        var command = String(text.dropFirst(num.count))
                        while let c = command.first, c == " " || c == "\t" { command.removeFirst() }
                        pendingScan = (num, command, text)
                    default: break
                    }
                }
            }
            pos = next
            number += 1
        }
        try closeSection(at: b.count)
    }

    private func parseHeader(_ b: SpecBytes, from start: Int, to end: Int, line first: Int) -> SpecHeader {
        let h = SpecHeader(line: first)
        var pos = start, number = first
        while pos < end {
            let (line, next) = b.line(at: pos, number: number)
            pos = next; number += 1
            let (ks, ke) = b.firstWord(line)
            guard ke > ks, b.base[ks] == 0x23 else { continue }
            let key = b.string(ks + 1, ke)
            let text = b.afterFirstWord(line)
            switch key.first {
            case "E" where key == "E": h.epoch = text
            case "D" where key == "D": h.date = text
            case "C" where key == "C": h.comments.append(text)
            case "U" where key == "U": h.userLines.append(text)
            case "O" where isNumbered(key):
                if key == "O0" { h.motorNames = [] }
                h.motorNames.append(splitLabels(text))
            case "o" where isNumbered(key): h.motorMnemonics.append(words(text))
            case "J" where isNumbered(key): h.counterNames.append(splitLabels(text))
            case "j" where isNumbered(key): h.counterMnemonics.append(words(text))
            default: h.other.append((key, text))
            }
        }
        return h
    }

    // MARK: scans

    public var scanCount: Int { ranges.count }

    /// The scan of that name ("12", "12.1"); nil when the file has none.
    public func scan(_ name: String) throws -> SpecScan? {
        guard let i = indexByName[name] else { return nil }
        return try scan(at: i)
    }

    /// The scan at file position i (0-based).
    public func scan(at i: Int) throws -> SpecScan {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if let s = cache[i] { return s }
        let s = try parseScan(i)
        cache[i] = s
        return s
    }

    private func parseScan(_ i: Int) throws -> SpecScan {
        guard let b = bytes else { throw SpecError("\(path): empty") }
        let r = ranges[i]
        let scan = SpecScan(name: scanNames[i], number: r.number, repeatIndex: r.repeatIndex, command: r.command, title: r.title,
                            line: r.line, header: headers[r.header])
        var parser = ScanParser(b: b, path: path, scan: scan)
        try parser.run(from: r.start, to: r.end, firstLine: r.line)
        return scan
    }
}

@inline(__always) func isNumbered(_ key: String) -> Bool {
    key.utf8.count >= 2 && key.utf8.dropFirst().allSatisfy { $0 &- 0x30 < 10 }
}

/// #L and #O names: separated by two or more spaces (a name may hold one), tabs count as two.
func splitLabels(_ text: String) -> [String] {
    var out: [String] = []
    var cur: [UInt8] = []
    var spaces = 0
    for c in text.utf8 {
        if c == 0x20 || c == 0x09 {
            spaces += c == 0x09 ? 2 : 1
            continue
        }
        if spaces >= 2 {
            out.append(String(decoding: cur, as: UTF8.self)); cur = []
        } else if spaces == 1 { cur.append(0x20) }
        spaces = 0
        cur.append(c)
    }
    if spaces == 1, !cur.isEmpty { cur.append(0x20) }
    out.append(String(decoding: cur, as: UTF8.self))
    return out
}

func words(_ text: String) -> [String] {
    text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
}
