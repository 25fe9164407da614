import LuaBridge
import NDArray
import NeXus
import NeutronEvents
import TerminalProgress

/// The `events` module and the groups' `histogram` method: neutron event data (thin: the
/// NeutronEvents core reads and bins).
enum EventsModule {
    static func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as EventError { throw LuaError.runtime(e.message) }
        catch { throw NeXusModule.fail(error) }
    }

    static let optionNames = ["tof", "tof_units", "pixels", "image", "pulses", "threads", "monitors", "block"]

    /// A list of numbers: an ndarray (1-D) or a table.
    static func numberList(_ call: LuaCall, _ o: Int32, _ key: String) throws -> [Double] {
        let lua = call.lua
        if let a = ArrayModule.cls.object(at: -1, in: lua) {
            guard a.array.ndim == 1 else { throw LuaError.argument(o, "\(key) must be 1-D, got shape \(NDArray.describe(a.array.shape))") }
            return a.array.doubles()
        }
        guard lua.type(at: -1) == .table else { throw LuaError.argument(o, "\(key) must be an ndarray or a table of numbers, got \(lua.typeName(at: -1))") }
        return try ArrayModule.numbers(lua, -1, arg: o, key)
    }

    struct Options {
        var tof: EventBins?
        var pixels = false
        var ids: (Int, Int)?
        var image = false
        var imageShape: [Int]?
        var request = EventRequest()
        var monitors = false
        var tofUnits: String?
    }

    static func options(_ call: LuaCall, _ o: Int32) throws -> Options {
        var out = Options()
        guard !call.isNoneOrNil(o) else { return out }
        try call.options(o, known: optionNames)
        let lua = call.lua
        func get(_ key: String, _ body: () throws -> Void) throws {
            defer { lua.pop() }
            if lua.rawGet(at: o, key: key) != .nil { try body() }
        }
        try get("tof") { out.tof = try wrap { try EventBins(edges: try numberList(call, o, "tof")) } }
        try get("pixels") {
            if lua.type(at: -1) == .boolean { out.pixels = lua.toBoolean(at: -1); return }
            let r = try numberList(call, o, "pixels")
            guard r.count == 2 else { throw LuaError.argument(o, "pixels must be true or {first id, last id}, got \(r.count) numbers") }
            out.pixels = true
            out.ids = (Int(r[0]), Int(r[1]))
        }
        try get("image") {
            if lua.type(at: -1) == .boolean { out.image = lua.toBoolean(at: -1); return }
            let s = try numberList(call, o, "image")
            guard s.count == 2 else { throw LuaError.argument(o, "image must be true or {rows, columns}, got \(s.count) numbers") }
            out.image = true
            out.imageShape = s.map { Int($0) }
        }
        try get("pulses") {
            let r = try numberList(call, o, "pulses")
            guard r.count == 2 else { throw LuaError.argument(o, "pulses must be {from, to} (seconds), got \(r.count) numbers") }
            out.request.pulses = (r[0], r[1])
        }
        try get("threads") { out.request.threads = max(0, try call.integer(-1)) }
        try get("block") { out.request.blockEvents = max(1, try call.integer(-1)) }
        try get("tof_units") { out.tofUnits = try call.string(-1) }
        try get("monitors") { out.monitors = lua.toBoolean(at: -1) }
        if out.pixels && out.image { throw LuaError.argument(o, "pixels and image exclude each other") }
        out.request.tof = out.tof
        return out
    }

    /// The NXevent_data groups of g: g itself, or every one below it (those inside an
    /// NXmonitor only with `monitors`).
    static func banks(_ g: NXGroup, monitors: Bool) throws -> [EventBank] {
        if g.nxclass == "NXevent_data" { return [try EventBank(g)] }
        var out: [EventBank] = []
        for node in try g.find("NXevent_data") {
            guard let bank = node as? NXGroup else { continue }
            if !monitors, bank.parent.nxclass == "NXmonitor" { continue }
            out.append(try EventBank(bank))
        }
        if out.isEmpty { throw EventError("\(g.file.path): \(g.path): no NXevent_data group here (a bank of neutron events is expected)") }
        return out
    }

    /// The pixel map of one bank for the options.
    static func pixelMap(_ bank: EventBank, _ o: Options) throws -> PixelMap? {
        guard o.pixels || o.image else { return nil }
        if let (a, b) = o.ids { return try PixelMap.consecutive(first: a, last: b) }
        if let d = try bank.detector(), o.imageShape == nil || !o.image {
            return try PixelMap.detector(d, image: o.image)
        }
        if o.image {
            guard let s = o.imageShape else {
                throw EventError("\(bank.group.file.path): \(bank.group.path): no NXdetector with detector_number for this bank: give image = {rows, columns} to map event_id (row * columns + column)")
            }
            return try PixelMap.consecutive(first: 0, last: s[0] * s[1] - 1, imageShape: s)
        }
        guard let (a, b) = try bank.idRange() else { return try PixelMap.consecutive(first: 0, last: 0) }
        return try PixelMap.consecutive(first: a, last: b)
    }

    /// Histograms g's banks: one bank's histogram, spectra summed, pixels in bank order.
    static func histogram(_ call: LuaCall, _ g: NXGroup, _ o: Int32) throws -> Int32 {
        let opts = try options(call, o)
        let list = try wrap { try banks(g, monitors: opts.monitors) }
        if opts.image, list.count > 1 {
            throw LuaError.runtime("\(g.file.path): \(g.path): an image is made per bank, this group holds \(list.count) banks (\(list.map(\.group.name).joined(separator: ", ")))")
        }
        let total = list.reduce(0) { $0 + $1.eventCount }
        let bar = ProgressBar(label: "histogram \(g.name)", total: total, unit: "events")
        var before = 0
        var parts: [EventHistogram] = []
        let maps: [PixelMap?] = try list.map { bank in try wrap { try pixelMap(bank, opts) } }
        // one result for all banks: each bank's counts go into its rows (pixels), or add up
        // (spectra, counts), with no per-bank copy
        var combined: NDArray? = nil
        if list.count > 1 {
            let nb = opts.tof?.count ?? 1
            if opts.pixels {
                let rows = maps.reduce(0) { $0 + ($1?.rows ?? 1) }
                combined = try wrap { try NDArray(zeros: opts.tof == nil ? [rows] : [rows, nb], dtype: .int64) }
            } else {
                combined = try wrap { try NDArray(zeros: opts.tof == nil ? [1] : [nb], dtype: .int64) }
            }
        }
        var row = 0
        for (bank, map) in zip(list, maps) {
            var request = opts.request
            // edges are in the first bank's units (or tof_units); other banks' times convert
            if let tof = opts.tof {
                let unit = opts.tofUnits.map { EventBank.seconds($0) } ?? list[0].tofSeconds
                request.tof = try wrap { try tof.scaled(by: unit / bank.tofSeconds) }
            }
            request.pixels = map
            var into: NDArray? = combined
            if let c = combined, opts.pixels {
                let r = map?.rows ?? 1
                into = try wrap { try c.view("\(row):\(row + r)") }
                row += r
            }
            let base = before
            let h = try wrap {
                try bank.histogram(request, into: into) { done, _ in
                    try CoreModule.checkStopped("histogram")
                    bar.update(base + done)
                }
            }
            before += bank.eventCount
            parts.append(h)
        }
        bar.finish()
        let counts: NDArray
        if let c = combined {
            counts = opts.tof == nil && !opts.pixels ? try wrap { try c.reshapedView([]) } : c
        } else {
            counts = parts[0].counts
        }
        let lua = call.lua
        try ArrayModule.push(counts, lua, scalarIfZeroD: false)
        lua.ensureStack(6)
        lua.newTable(recordCount: 8)
        lua.push(parts.reduce(0) { $0 + $1.eventsRead }); lua.rawSet(at: -2, key: "events")
        lua.push(parts.reduce(0) { $0 + $1.eventsBinned }); lua.rawSet(at: -2, key: "binned")
        lua.push(list.map(\.group.path)); lua.rawSet(at: -2, key: "banks")
        if let tof = opts.tof {
            try ArrayModule.push(try wrap { try NDArray.from(tof.edges, shape: [tof.edges.count]) }, lua, scalarIfZeroD: false)
            lua.rawSet(at: -2, key: "tof")
            lua.push(opts.tofUnits ?? list[0].tofUnits); lua.rawSet(at: -2, key: "tof_units")
        }
        if opts.pixels {
            let ids = maps.flatMap { $0?.ids ?? [] }.map(Double.init)
            try ArrayModule.push(try wrap { try NDArray.from(ids, shape: [ids.count], dtype: .int64) }, lua, scalarIfZeroD: false)
            lua.rawSet(at: -2, key: "ids")
        }
        if let m = maps.first ?? nil { lua.push(m.source); lua.rawSet(at: -2, key: "pixel_map") }
        return 2
    }

    static func groupArgument(_ call: LuaCall, _ i: Int32) throws -> (NXGroup, NXFile?) {
        if let g = NeXusModule.localGroup(at: i, in: call.lua) { return (g, nil) }
        if call.lua.type(at: i) == .string {
            if PlotModule.isSandboxed(call.lua) { throw LuaError.runtime("events: files cannot be opened here; pass an open group") }
            let f = try wrap { try NXFile(path: try call.string(i), mode: .read) }
            return (f.root, f)
        }
        throw NeXusModule.typeError(call, i, expected: "a file name or a local NeXus group")
    }

    static let histogramHelp = """
        opts: tof = edges (ndarray or table, in the units of the first bank's event_time_offset, or of
        tof_units = "us"/"ns"/"ms"/"s"; other banks convert; events.edges makes linear or logarithmic ones), pixels = true (rows by the bank's NXdetector detector_number, else by event_id
        from the smallest to the largest seen) or {first id, last id}, image = true (a 2-D detector image
        by x_pixel_offset/y_pixel_offset or a 2-D detector_number) or {rows, columns} (event_id = row *
        columns + column), pulses = {from, to} (seconds of event_time_zero, half-open), threads = n,
        monitors = true (include NXevent_data inside NXmonitor groups), block = events per block read.
        Result: counts (int64) of shape (tof bins), (pixels[, tof bins]) or (rows, columns[, tof bins]),
        and info {events, binned, banks, tof, tof_units, ids, pixel_map}. Bins are half-open
        [edge, next edge), as scipp's hist. Several banks: spectra add up, pixel rows follow bank order.
        """

    /// A method of every group; the events core reads local files only, so another tree's
    /// group (nx.remote) gets an error that says where to run it instead.
    static func histogramMethod() -> LuaMethodDecl<any NXReadableGroup> {
        LuaMethodDecl("histogram", "g:histogram{tof = edges, pixels = true, image = true, pulses = {t0, t1}} -> counts, info",
                      "histograms the neutron events of an NXevent_data group (or of every bank below g), streaming; local files",
                      help: histogramHelp) { call, g in
            guard let local = g as? NXGroup else {
                throw LuaError.runtime("\(g.location): \(g.path): histogram reads the events of a local file; over nx.remote, run it next to the data: r:eval(code, args)")
            }
            return try histogram(call, local, 2)
        }
    }

    static let declaration = LuaModuleDecl(
        "events",
        summary: "neutron event data (NXevent_data): histograms streamed over the file",
        help: """
        local f = nx.load("run.nxs")
        local tof = events.edges(0, 20000, 200)          -- or events.edges(100, 20000, 200, "log")
        local spectrum = f.entry.bank1_events:histogram{tof = tof}
        local counts, info = f.entry:histogram{tof = tof, pixels = true}   -- every bank: pixels x tof
        local image = f.entry.bank1_events:histogram{image = true, pulses = {0, 60}}
        events.histogram("run.nxs", {tof = tof})         -- the same from a file name
        events.banks(f)                                  -- {path, events, pulses} per bank
        """,
        functions: [
            LuaFunctionDecl("histogram", "events.histogram(file_or_group, opts) -> counts, info",
                            "histograms the events of every NXevent_data below a group or in a file (as g:histogram)",
                            help: histogramHelp) { call in
                let (g, file) = try groupArgument(call, 1)
                defer { try? file?.close() }
                return try histogram(call, g, 2)
            },
            LuaFunctionDecl("banks", "events.banks(file_or_group [, monitors]) -> {{path, events, pulses, tof_units}}",
                            "the NXevent_data groups below a group or in a file, checked (event_index, lengths)") { call in
                let (g, file) = try groupArgument(call, 1)
                defer { try? file?.close() }
                let list = try wrap { try banks(g, monitors: call.boolean(2)) }
                let lua = call.lua
                lua.ensureStack(4)
                lua.newTable(arrayCount: list.count)
                for (i, b) in list.enumerated() {
                    lua.newTable(recordCount: 4)
                    lua.push(b.group.path); lua.rawSet(at: -2, key: "path")
                    lua.push(b.eventCount); lua.rawSet(at: -2, key: "events")
                    lua.push(b.pulseCount); lua.rawSet(at: -2, key: "pulses")
                    lua.push(b.tofUnits); lua.rawSet(at: -2, key: "tof_units")
                    lua.rawSet(at: -2, index: i + 1)
                }
                return 1
            },
            LuaFunctionDecl("edges", "events.edges(lo, hi, n [, \"log\"]) -> ndarray",
                            "n + 1 bin edges from lo to hi: equal widths, or equal ratios with \"log\" (NumPy's linspace/geomspace)") { call in
                let lo = try call.number(1), hi = try call.number(2), n = try call.integer(3)
                let form = try call.option(4, ["linear", "log"], default: "linear")
                let bins = try wrap { form == "log" ? try EventBins.logarithmic(lo, hi, count: n) : try EventBins.linear(lo, hi, count: n) }
                try ArrayModule.push(try wrap { try NDArray.from(bins.edges, shape: [bins.edges.count]) }, call.lua, scalarIfZeroD: false)
                return 1
            },
        ])
}
