import LuaBridge
import NDArray
import SpecFile
import TerminalProgress

/// The `spec` module: SPEC data files (thin: the SpecFile core does the work).
enum SpecModule {
    final class FileBox: @unchecked Sendable {
        let file: SpecFile
        init(_ file: SpecFile) { self.file = file }
    }

    static func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as SpecError { throw LuaError.runtime(e.message) }
        catch let e as LuaError { throw e }
        catch let e as ArrayError { throw LuaError.runtime(e.message) }
        catch { throw LuaError.runtime("\(error)") }
    }

    /// A scan name from a Lua number (12, 12.1) or string ("12.1").
    static func scanName(_ call: LuaCall, _ i: Int32) throws -> String {
        let lua = call.lua
        switch lua.type(at: i) {
        case .number:
            if let n = lua.toInteger(at: i) { return String(n) }
            return "\(lua.toNumber(at: i) ?? 0)"
        case .string: return try call.string(i)
        default: throw call.typeError(i, expected: "scan number or name")
        }
    }

    static func set(_ lua: Lua, _ key: String, _ value: String) { lua.push(value); lua.rawSet(at: -2, key: key) }
    static func set(_ lua: Lua, _ key: String, _ value: Double?) {
        guard let value else { return }
        lua.push(value); lua.rawSet(at: -2, key: key)
    }
    static func set(_ lua: Lua, _ key: String, _ value: [String]) { lua.push(value); lua.rawSet(at: -2, key: key) }
    static func set(_ lua: Lua, _ key: String, numbers: [Double]) {
        lua.newTable(arrayCount: numbers.count)
        for (k, x) in numbers.enumerated() { lua.push(x); lua.rawSet(at: -2, index: k + 1) }
        lua.rawSet(at: -2, key: key)
    }
    static func setOther(_ lua: Lua, _ other: [(key: String, text: String)]) {
        var seen: [String: [String]] = [:], order: [String] = []
        for (k, t) in other {
            if seen[k] == nil { order.append(k) }
            seen[k, default: []].append(t)
        }
        for k in order { set(lua, k, seen[k]!.joined(separator: "\n")) }
    }

    static func pushHeader(_ h: SpecHeader, _ lua: Lua) {
        lua.ensureStack(6)
        lua.newTable(recordCount: 8)
        set(lua, "line", Double(h.line))
        set(lua, "epoch", h.epoch)
        set(lua, "date", h.date)
        set(lua, "comments", h.comments)
        set(lua, "user", h.userLines)
        lua.newTable(arrayCount: h.motorNames.count)
        for (i, row) in h.motorNames.enumerated() { lua.push(row); lua.rawSet(at: -2, index: i + 1) }
        lua.rawSet(at: -2, key: "motors")
        lua.newTable(arrayCount: h.motorMnemonics.count)
        for (i, row) in h.motorMnemonics.enumerated() { lua.push(row); lua.rawSet(at: -2, index: i + 1) }
        lua.rawSet(at: -2, key: "mnemonics")
        setOther(lua, h.other)
    }

    /// A scan as a plain table: what spec2nexus's SpecDataFileScan holds, arrays for columns.
    static func pushScan(_ s: SpecScan, _ lua: Lua) throws {
        lua.ensureStack(8)
        lua.newTable(recordCount: 12)
        set(lua, "name", s.name)
        set(lua, "number", s.number)
        set(lua, "command", s.command)
        set(lua, "title", s.title)
        set(lua, "date", s.date)
        set(lua, "line", Double(s.line))
        lua.push(s.rowCount); lua.rawSet(at: -2, key: "rows")
        set(lua, "labels", s.labels)
        lua.newTable(recordCount: s.labels.count)
        for (label, column) in zip(s.labels, s.columns) {
            try ArrayModule.push(column, lua, scalarIfZeroD: false)
            lua.rawSet(at: -2, key: label)
        }
        lua.rawSet(at: -2, key: "data")
        lua.newTable(recordCount: s.positions.count)
        for (name, value) in s.positions { lua.push(value); lua.rawSet(at: -2, key: name) }
        lua.rawSet(at: -2, key: "positions")
        set(lua, "motors", s.positions.map(\.name))
        lua.newTable(recordCount: s.mca.count)
        for (name, a) in s.mca {
            try ArrayModule.push(a, lua, scalarIfZeroD: false)
            lua.rawSet(at: -2, key: name)
        }
        lua.rawSet(at: -2, key: "mca")
        set(lua, "warnings", s.warnings)
        // the rest, by SPEC's key names
        lua.newTable(recordCount: 10)
        set(lua, "T", s.countTime)
        if s.countTime != nil { set(lua, "T_units", s.countTimeUnit) }
        set(lua, "M", s.monitor)
        if !s.hkl.isEmpty { set(lua, "Q", numbers: s.hkl) }
        for (key, values) in s.geometry { set(lua, key, numbers: values) }
        if let n = s.declaredColumns { set(lua, "N", Double(n)) }
        set(lua, "comments", s.comments)
        if !s.userLines.isEmpty { set(lua, "U", s.userLines) }
        if !s.uxml.isEmpty { set(lua, "UXML", s.uxml.joined(separator: "\n")) }
        setOther(lua, s.other)
        pushHeader(s.header, lua)
        lua.rawSet(at: -2, key: "header")
        lua.rawSet(at: -2, key: "metadata")
    }

    static func scanList(_ call: LuaCall, _ i: Int32, _ file: SpecFile) throws -> [String]? {
        guard !call.isNoneOrNil(i) else { return nil }
        let lua = call.lua
        switch lua.type(at: i) {
        case .number, .string: return [try scanName(call, i)]
        case .table:
            var out: [String] = []
            var k = 1
            while lua.rawGet(at: i, index: k) != .nil {
                out.append(try scanName(call, -1))
                lua.pop()
                k += 1
            }
            lua.pop()
            return out
        default: throw call.typeError(i, expected: "scan number, name or list")
        }
    }

    static func writeNeXus(_ file: SpecFile, to path: String, scans: [String]?) throws {
        let bar = ProgressBar(label: "spec2nexus", total: scans?.count ?? file.scanCount, unit: "scans")
        try wrap {
            try SpecToNeXus.write(file, to: path, scans: scans) { done in
                try CoreModule.checkStopped("spec2nexus")
                bar.update(done)
            }
        }
        bar.finish()
    }

    static let fileClass: LuaClass<FileBox> = LuaClass(
        "spec.File",
        summary: "a SPEC data file: its scans (read on first use) and headers",
        help: """
        f.path, f.scan_count, f.headers (a list of header tables: epoch, date, comments, motors, ...),
        f:scans() -> {"1", "2", "12", "12.1", ...} in file order, f:scan(12) or f:scan("12.1") -> scan,
        f:write_nexus(out [, scans]).
        """,
        methods: [
            LuaMethodDecl("scans", "f:scans() -> {names}", "the scan names in file order, as spec2nexus names them (a repeated 12 is \"12.1\", then \"12.2\")") { call, box in
                call.lua.push(box.file.scanNames)
                return 1
            },
            LuaMethodDecl("scan", "f:scan(number_or_name) -> scan", "one scan as a table; raises if the file has no such scan",
                          help: """
                          scan.command, scan.date, scan.title, scan.name, scan.number, scan.line (of #S), scan.rows,
                          scan.labels (the #L names in order, made unique as spec2nexus does: I0, I0_1),
                          scan.data[label] (a float64 ndarray per column), scan.positions[motor] (#P values
                          by the header's #O names; scan.motors lists them in order), scan.mca.mca (the @A
                          spectra as (spectra, channels)), scan.warnings (rows skipped, e.g. an interrupted
                          scan's short last row, with their lines), scan.metadata (T, T_units, M, Q, G0...,
                          N, comments, U, UXML, other #keys, and the header table).
                          """) { call, box in
                let name = try scanName(call, 2)
                guard let s = try wrap({ try box.file.scan(name) }) else {
                    throw LuaError.runtime("\(box.file.path): no scan \(name) (scans: \(SpecToNeXus.summary(box.file.scanNames)))")
                }
                try pushScan(s, call.lua)
                return 1
            },
            LuaMethodDecl("write_nexus", "f:write_nexus(out [, scans])", "writes the scans (all, one, or a list) to a new NeXus file as spec2nexus does",
                          help: """
                          One NXentry S<name> per scan (title, scan_number, command, date, comments, T or M,
                          Q), NXdata 'data' with every column (first column = axis, last = signal) and MCA
                          spectra, positioners (one NXpositioner per motor, also instrument/positioners),
                          #G rows, #U lines, #UXML text. The file is replaced.
                          """) { call, box in
                if PlotModule.isSandboxed(call.lua) { throw LuaError.runtime("f:write_nexus is not available here (no files)") }
                let out = try call.string(2)
                let scans = try scanList(call, 3, box.file)
                try writeNeXus(box.file, to: out, scans: scans)
                return 0
            },
        ],
        index: { call, box in
            let f = box.file, lua = call.lua
            switch try call.string(2) {
            case "path": lua.push(f.path)
            case "scan_count": lua.push(f.scanCount)
            case "spec_file": lua.push(f.specFileName)
            case "headers":
                lua.newTable(arrayCount: f.headers.count)
                for (i, h) in f.headers.enumerated() { pushHeader(h, lua); lua.rawSet(at: -2, index: i + 1) }
            default: return 0
            }
            return 1
        },
        completions: { _ in ["path", "scan_count", "spec_file", "headers"] },
        describe: { box in "spec.File: \(box.file.path), \(box.file.scanCount) scans, \(box.file.headers.count) headers" })

    static let declaration = LuaModuleDecl(
        "spec",
        summary: "SPEC data files: scans, columns as arrays, motor positions, conversion to NeXus",
        help: """
        local f = spec.load("data.spec")
        f:scans()                        -- {"1", "2", "12", "12.1"}: file order, repeats as spec2nexus names them
        local s = f:scan(12)             -- or f:scan("12.1")
        s.command, s.date, s.labels      -- "ascan  th 0 1 10 1", "Wed Nov 03 ...", {"th", "I0", "det"}
        s.data.det:max(), s.positions.chi, s.metadata.T
        f:write_nexus("data.nxs")        -- one NXentry per scan (spec2nexus's layout)
        From a shell: nxlua spec2nexus data.spec data.nxs [scan ...]
        """,
        functions: [
            LuaFunctionDecl("load", "spec.load(path) -> file", "opens a SPEC data file (scans are read on first use)",
                            help: """
                            Reads headers (#F #E #D #O #o #C) and finds the scans (#S) in one pass over the mapped
                            file; a scan's lines (#D #T #M #G #Q #P #N #L, data rows, #U, #UXML, @A) are read
                            when f:scan asks for it. Several headers per file, repeated scan numbers, blank lines,
                            scans interrupted mid-row and \\r\\n line ends are taken as spec2nexus takes them.
                            A file that is not SPEC raises an error naming it (and the line, where one is to blame).
                            """) { call in
                let path = try call.string(1)
                let f = try wrap { try SpecFile(path: path) }
                fileClass.push(FileBox(f), to: call.lua)
                return 1
            },
            LuaFunctionDecl("to_nexus", "spec.to_nexus(spec_path, nexus_path [, scans])",
                            "converts a SPEC file (all scans, one, or a list) to NeXus, as `nxlua spec2nexus` does") { call in
                if PlotModule.isSandboxed(call.lua) { throw LuaError.runtime("spec.to_nexus is not available here (no files)") }
                let path = try call.string(1)
                let out = try call.string(2)
                let f = try wrap { try SpecFile(path: path) }
                try writeNeXus(f, to: out, scans: try scanList(call, 3, f))
                return 0
            },
        ],
        classes: [fileClass])
}
