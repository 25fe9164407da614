import Detector
import LuaBridge
import NDArray

/// The `detector` module: CBF and TIFF frames as arrays plus their headers (thin: the
/// Detector core does the work).
enum DetectorModule {
    static func fail(_ error: Error) -> LuaError {
        if let e = error as? LuaError { return e }
        if let e = error as? DetectorError { return .runtime(e.message) }
        if let e = error as? ArrayError { return .runtime(e.message) }
        return .runtime("\(error)")
    }

    static func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw fail(error) }
    }

    // MARK: headers as Lua tables

    static func push(_ v: HeaderValue, _ lua: Lua) {
        switch v {
        case .integer(let n): lua.push(n)
        case .number(let x): lua.push(x)
        case .text(let s): lua.push(s)
        case .numbers(let xs):
            lua.newTable(arrayCount: xs.count)
            for (k, x) in xs.enumerated() {
                lua.push(x)
                lua.rawSet(at: -2, index: k + 1)
            }
        }
    }

    /// Pushes the Pilatus entries of `pilatus` into the table on top: typed values under
    /// their lower-cased keys, units in a `units` table, the text as `text`.
    static func pushPilatus(_ pilatus: PilatusHeader, _ lua: Lua) {
        lua.ensureStack(6)
        lua.newTable()  // units
        for e in pilatus.entries {
            push(e.value, lua)
            lua.rawSet(at: -3, key: e.key)
            if let u = e.units {
                lua.push(u)
                lua.rawSet(at: -2, key: e.key)
            }
        }
        lua.rawSet(at: -2, key: "units")
        lua.push(pilatus.text)
        lua.rawSet(at: -2, key: "text")
    }

    static func push(_ h: FrameHeader, _ lua: Lua) {
        lua.ensureStack(6)
        lua.newTable(recordCount: 16)
        if let p = h.pilatus { pushPilatus(p, lua) } else {
            lua.newTable()
            lua.rawSet(at: -2, key: "units")
        }
        // what the file format says wins over a Pilatus key of the same name
        func set(_ key: String, _ value: String?) {
            guard let value else { return }
            lua.push(value)
            lua.rawSet(at: -2, key: key)
        }
        set("format", h.format)
        set("compression", h.compression)
        set("decoder", h.decoder)
        set("convention", h.convention)
        set("description", h.description)
        if let n = h.pages { lua.push(n); lua.rawSet(at: -2, key: "pages") }
        if let n = h.page { lua.push(n); lua.rawSet(at: -2, key: "page") }
        if !h.mime.isEmpty {
            lua.newTable(recordCount: h.mime.count)
            for (k, v) in h.mime {
                lua.push(v.count >= 2 && v.hasPrefix("\"") && v.hasSuffix("\"") ? String(v.dropFirst().dropLast()) : v)
                lua.rawSet(at: -2, key: k)
            }
            lua.rawSet(at: -2, key: "mime")
        }
    }

    /// A header argument for the writers: a string of `# Key value` lines, or a header
    /// table (its `text`).
    static func headerText(_ call: LuaCall, _ i: Int32) throws -> String? {
        let lua = call.lua
        switch lua.type(at: i) {
        case .none, .nil: return nil
        case .string: return try call.string(i)
        case .table:
            defer { lua.pop() }
            guard lua.rawGet(at: i, key: "text") == .string, let s = lua.toString(at: -1) else {
                throw LuaError.argument(i, "a header table needs its text field (the # Key value lines)")
            }
            return s
        default: throw call.typeError(i, expected: "header (string or table)")
        }
    }

    static func array(_ call: LuaCall, _ i: Int32) throws -> NDArray {
        if let a = ArrayModule.cls.object(at: i, in: call.lua) { return a.array }
        if call.lua.type(at: i) == .table { return try ArrayModule.fromTable(call, i, dtype: nil) }
        throw call.typeError(i, expected: "ndarray")
    }

    /// Options table helpers: a field's value on the stack top, popped by the caller.
    static func field(_ lua: Lua, _ t: Int32, _ key: String) -> LuaType { lua.rawGet(at: t, key: key) }

    static func readOptions(_ call: LuaCall, _ i: Int32) throws -> FrameReader.Options {
        var o = FrameReader.Options()
        guard !call.isNoneOrNil(i) else { return o }
        try call.options(i, known: ["md5", "decoder", "page"])
        let lua = call.lua
        let t = lua.absIndex(i)
        if field(lua, t, "md5") != .nil { o.checkMD5 = lua.toBoolean(at: -1) }
        lua.pop()
        switch field(lua, t, "decoder") {
        case .nil: break
        case .string:
            let s = lua.toString(at: -1) ?? ""
            guard let d = FrameReader.Decoder(rawValue: s) else {
                lua.pop()
                throw LuaError.argument(i, "decoder must be one of \(FrameReader.Decoder.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")), got \"\(s)\"")
            }
            o.decoder = d
        default:
            lua.pop()
            throw LuaError.argument(i, "decoder must be a string")
        }
        lua.pop()
        switch field(lua, t, "page") {
        case .nil: break
        case .string where lua.toString(at: -1) == "all": o.page = nil
        case .number where lua.toInteger(at: -1) != nil: o.page = lua.toInteger(at: -1)
        default:
            lua.pop()
            throw LuaError.argument(i, "page must be a 0-based integer or \"all\"")
        }
        lua.pop()
        return o
    }

    // MARK: the module

    static let declaration = LuaModuleDecl(
        "detector",
        summary: "detector frames: CBF (Pilatus mini-CBF, imgCIF) and TIFF readers, headers, writers",
        help: """
        local frame, h = detector.read("img_00001.cbf")   -- frame: (1679, 1475) int32 ndarray
        h.exposure_time, h.units.exposure_time            -- 0.0995  "s"
        h.beam_xy[1], h.pixel_size[1]                     -- header pairs are Lua tables (1-based)
        frame["100:200, 300:400"]:sum()                   -- arrays are 0-based, as NumPy
        detector.write("copy.cbf", frame, h)              -- byte-offset mini-CBF (or .tif)
        Byte-offset mini-CBF is decoded natively; other CBF compressions and full imgCIF files
        go through cbflib, TIFF through libtiff (both loaded on first use).
        """,
        functions: [
            LuaFunctionDecl("read", "detector.read(path [, options]) -> frame, header",
                            "reads one frame (an ndarray) and its header (a table)",
                            help: """
                            options: {md5 = true} checks a CBF's Content-MD5 (off by default);
                            {decoder = "native" | "cbflib" | "auto"} picks the CBF decoder (auto: native
                            for byte-offset mini-CBF, cbflib otherwise); {page = k} reads TIFF page k
                            (0-based), {page = "all"} stacks every page as (pages, rows, columns).
                            header: the Pilatus keys lower-cased and typed (exposure_time = 0.0995,
                            beam_xy = {x, y}, count_cutoff = 1048574, unknown keys as text), their units
                            in header.units, the lines in header.text, and format, compression,
                            decoder, convention, mime (CBF), pages and page (TIFF).
                            Bad files raise an error naming the file and the problem.
                            """) { call in
                let path = try call.string(1)
                let options = try readOptions(call, 2)
                let frame = try wrap { try FrameReader.read(path, options: options) }
                try ArrayModule.push(frame.array, call.lua, scalarIfZeroD: false)
                push(frame.header, call.lua)
                return 2
            },
            LuaFunctionDecl("header", "detector.header(path) -> header",
                            "reads a frame's header only (no pixels decoded)") { call in
                let path = try call.string(1)
                let h = try wrap { try FrameReader.readHeader(path) }
                push(h, call.lua)
                return 1
            },
            LuaFunctionDecl("parse_header", "detector.parse_header(text) -> header",
                            "parses Pilatus '# Key value unit' lines into a header table") { call in
                let text = try call.string(1)
                call.lua.newTable()
                pushPilatus(PilatusHeader(parsing: text), call.lua)
                return 1
            },
            LuaFunctionDecl("write", "detector.write(path, frame [, header [, options]])",
                            "writes a frame as byte-offset mini-CBF (.cbf) or TIFF (.tif, .tiff)",
                            help: """
                            header: Pilatus '# Key value unit' lines, or a header table from detector.read.
                            options: {format = "cbf" | "tiff"} (default: from the file name),
                            {rows_per_strip = n} or {tile = {rows, columns}} (TIFF), {convention =
                            "PILATUS_1.2"} (CBF). A 3-D ndarray becomes a multi-page TIFF. The file is
                            written under a temporary name and renamed into place.
                            """) { call in
                let path = try call.string(1)
                let a = try array(call, 2)
                let header = try headerText(call, 3)
                let lua = call.lua
                var format = path.lowercased().hasSuffix(".cbf") ? "cbf"
                    : (path.lowercased().hasSuffix(".tif") || path.lowercased().hasSuffix(".tiff")) ? "tiff" : nil
                var tiff = TIFFWriter.Options()
                var convention = "PILATUS_1.2"
                if !call.isNoneOrNil(4) {
                    try call.options(4, known: ["format", "convention", "rows_per_strip", "tile"])
                    if field(lua, 4, "format") == .string { format = lua.toString(at: -1) }
                    lua.pop()
                    if field(lua, 4, "convention") == .string { convention = lua.toString(at: -1) ?? convention }
                    lua.pop()
                    if field(lua, 4, "rows_per_strip") == .number { tiff.rowsPerStrip = lua.toInteger(at: -1) }
                    lua.pop()
                    if field(lua, 4, "tile") == .table {
                        let t = lua.absIndex(-1)
                        lua.rawGet(at: t, index: 1)
                        lua.rawGet(at: t, index: 2)
                        if let r = lua.toInteger(at: -2), let c = lua.toInteger(at: -1) { tiff.tile = (r, c) }
                        lua.pop(2)
                        if tiff.tile == nil { lua.pop(); throw LuaError.argument(4, "tile must be {rows, columns}") }
                    }
                    lua.pop()
                }
                switch format {
                case "cbf": try wrap { try CBFWriter.write(path, a, header: header, convention: convention) }
                case "tiff": try wrap { try TIFFWriter.write(path, a, header: header, options: tiff) }
                case nil: throw LuaError.runtime("\(path): cannot tell the format from the name (use .cbf, .tif or .tiff, or {format = \"cbf\"|\"tiff\"})")
                case let f?: throw LuaError.argument(4, "format must be \"cbf\" or \"tiff\", got \"\(f)\"")
                }
                return 0
            },
            LuaFunctionDecl("synthetic", "detector.synthetic([options]) -> frame, header_text",
                            "a realistic synthetic Pilatus frame (2M: 1679 x 1475 int32) and its header lines",
                            help: """
                            Gaps -1, dead pixels -2, Poisson background falling from the beam centre,
                            Bragg spots up to 1e5 counts, hot pixels near the 1048574 cutoff.
                            options: {seed = 1, spots = 300, frame = 1 (sets Start_angle), modules =
                            {8, 3}} ({1, 1}: a Pilatus 100K, 195 x 487; {5, 2}: 1M; {12, 5}: 6M); the same
                            seed gives the same frame.
                            """) { call in
                var o = SyntheticPilatus.Options()
                if !call.isNoneOrNil(1) {
                    try call.options(1, known: ["seed", "spots", "frame", "modules"])
                    let lua = call.lua
                    if field(lua, 1, "seed") == .number, let n = lua.toInteger(at: -1) { o.seed = UInt64(bitPattern: Int64(n)) }
                    lua.pop()
                    if field(lua, 1, "spots") == .number, let n = lua.toInteger(at: -1) { o.spots = max(0, n) }
                    lua.pop()
                    if field(lua, 1, "frame") == .number, let n = lua.toInteger(at: -1) { o.frameNumber = n }
                    lua.pop()
                    if field(lua, 1, "modules") == .table {
                        lua.rawGet(at: -1, index: 1)
                        lua.rawGet(at: -2, index: 2)
                        let r = lua.toInteger(at: -2), c = lua.toInteger(at: -1)
                        lua.pop(3)
                        guard let r, let c else { throw LuaError.argument(1, "modules must be {rows, columns}") }
                        o.modules = (r, c)  // scales spots, dead and hot pixels
                    } else { lua.pop() }
                }
                let (a, text) = try wrap { try SyntheticPilatus.frame(o) }
                try ArrayModule.push(a, call.lua, scalarIfZeroD: false)
                call.lua.push(text)
                return 2
            },
            stackFunction,
        ])
}
