#if canImport(Glibc)
import Glibc
#endif
import LuaBridge
import NDArray
import NeXus
import Plot
import RemoteClient

/// Showing a figure where the user is (the REPL's terminal): the one hook between the
/// plot bindings and the terminal. The nxlua executable sets `show` (Sources/nxlua/
/// FigureShow.swift: TerminalGraphics, which writes nothing when stdout is not a terminal
/// unless NXLUA_PLOT forces a protocol); plot, oplot, logplot and fig:show() call it.
/// Unset (the subcommands: macros, serve; embedders), or in the eval sandbox: nothing is
/// shown, and fig:save still works.
public enum FigureDisplay {
    nonisolated(unsafe) public static var show: ((Figure) -> Void)?

    static func display(_ fig: Figure, _ lua: Lua) {
        guard let show, !PlotModule.isSandboxed(lua) else { return }
        show(fig)
    }
}

/// A projection or other computed data, plottable like NXdata (d:project{...}).
final class PlotDataBox: @unchecked Sendable {
    let input: PlotInput
    init(_ input: PlotInput) { self.input = input }
}

/// The `plot` module: figures of NXdata, fields, arrays and tables (thin: the Plot core
/// draws; NeXus's NXData rules find signal, axes and errors).
enum PlotModule {
    static let currentKey = "nxlua.plot.current"
    static let sandboxKey = "nxlua.plot.sandboxed"
    /// Fields bigger than this are refused whole (the message says how to slice).
    static let readLimit = 512 << 20
    /// The largest figure the eval sandbox draws (4 megapixels, a 16 MB surface).
    static let sandboxPixels = 4_000_000

    static func fail(_ error: Error) -> LuaError {
        if let e = error as? PlotError { return .runtime(e.message) }
        return NeXusModule.fail(error)
    }

    static func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw fail(error) }
    }

    static func isSandboxed(_ lua: Lua) -> Bool {
        defer { lua.pop() }
        return lua.rawGet(at: Lua.registryIndex, key: sandboxKey) == .boolean
    }

    /// Marks a state as the sandbox of nxlua serve: figures cannot be saved to files
    /// (fig:png() still works) nor shown.
    static func markSandboxed(_ lua: Lua) {
        lua.push(true)
        lua.rawSet(at: Lua.registryIndex, key: sandboxKey)
    }

    // MARK: options

    static let optionNames = ["cmap", "scale", "norm", "linthresh", "vmin", "vmax", "percentiles", "mask", "aspect",
                              "origin", "colorbar", "xlabel", "ylabel", "title", "marker", "line", "color", "label",
                              "errors", "frame", "logx", "logy", "xlim", "ylim", "width", "height"]

    /// The options table at i (nil/none: defaults); unknown keys are an error naming them.
    static func options(_ call: LuaCall, _ i: Int32) throws -> (PlotOptions, width: Int?, height: Int?) {
        var o = PlotOptions()
        guard !call.isNoneOrNil(i) else { return (o, nil, nil) }
        try call.options(i, known: optionNames)
        let lua = call.lua
        let t = lua.absIndex(i)
        func get<T>(_ key: String, _ body: () throws -> T) throws -> T? {
            lua.ensureStack(4)
            guard lua.rawGet(at: t, key: key) != .nil else { lua.pop(); return nil }
            defer { lua.pop() }
            return try body()
        }
        func str(_ key: String) throws -> String? {
            try get(key) {
                guard lua.type(at: -1) == .string, let s = lua.toString(at: -1) else { throw LuaError.runtime("plot option '\(key)' must be a string") }
                return s
            }
        }
        func num(_ key: String) throws -> Double? {
            try get(key) {
                guard lua.type(at: -1) == .number, let v = lua.toNumber(at: -1) else { throw LuaError.runtime("plot option '\(key)' must be a number") }
                return v
            }
        }
        func bool(_ key: String) throws -> Bool? {
            try get(key) {
                guard lua.type(at: -1) == .boolean else { throw LuaError.runtime("plot option '\(key)' must be true or false") }
                return lua.toBoolean(at: -1)
            }
        }
        func pair(_ key: String) throws -> (Double, Double)? {
            try get(key) {
                let top = lua.absIndex(-1)
                guard lua.type(at: top) == .table, lua.rawLength(at: top) == 2,
                      lua.rawGet(at: top, index: 1) == .number, lua.rawGet(at: top, index: 2) == .number else {
                    throw LuaError.runtime("plot option '\(key)' must be a table of two numbers, e.g. {0, 100}")
                }
                defer { lua.pop(2) }
                return (lua.toNumber(at: -2)!, lua.toNumber(at: -1)!)
            }
        }
        o.cmap = try str("cmap")
        if let c = o.cmap, Colormap.named(c) == nil {
            throw LuaError.runtime("unknown colormap '\(c)' (known: \(Colormap.names.joined(separator: ", ")), each also with _r)")
        }
        let linthresh = try num("linthresh") ?? 1
        guard linthresh > 0 else { throw LuaError.runtime("plot option 'linthresh' must be positive") }
        if let s = try str("scale") ?? str("norm") {
            guard let sc = Scale.named(s, linthresh: linthresh) else {
                throw LuaError.runtime("unknown scale '\(s)' (known: linear, log, sqrt, symlog)")
            }
            o.scale = sc
        } else if try num("linthresh") != nil { o.scale = .symlog(linthresh: linthresh) }
        o.vmin = try num("vmin")
        o.vmax = try num("vmax")
        _ = try get("percentiles") {
            if lua.type(at: -1) == .boolean {
                o.autoscale = lua.toBoolean(at: -1) ? .percentiles(0.5, 99.5) : .minmax
                return
            }
            lua.pop()  // pair() pushes it again
            lua.pushNil()
            if let p = try pair("percentiles") { o.autoscale = .percentiles(p.0, p.1) }
        }
        if let a = try str("aspect") {
            guard let v = Aspect(rawValue: a) else { throw LuaError.runtime("plot option 'aspect' must be \"equal\" or \"auto\"") }
            o.aspect = v
        }
        if let a = try str("origin") {
            guard let v = Origin(rawValue: a) else { throw LuaError.runtime("plot option 'origin' must be \"lower\" or \"upper\"") }
            o.origin = v
        }
        o.colorbar = try bool("colorbar")
        o.xlabel = try str("xlabel")
        o.ylabel = try str("ylabel")
        o.title = try str("title")
        if let m = try get("marker", {
            if lua.type(at: -1) == .boolean { return lua.toBoolean(at: -1) ? Marker.circle : Marker.none }
            guard let s = lua.toString(at: -1), lua.type(at: -1) == .string, let m = Marker(rawValue: s) else {
                throw LuaError.runtime("plot option 'marker' must be one of \(Marker.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")) or a boolean")
            }
            return m
        }) { o.marker = m }
        o.line = try bool("line")
        if let c = try str("color") {
            guard let v = RGB(parsing: c) else { throw LuaError.runtime("plot option 'color': unknown colour '\(c)' (use \"#rrggbb\", a name such as \"red\", or \"C0\"..\"C9\")") }
            o.color = v
        }
        o.label = try str("label")
        o.errorValues = try get("errors") { () -> [Double]? in
            if lua.type(at: -1) == .boolean { o.errors = lua.toBoolean(at: -1); return nil }
            return try vector(call, lua.absIndex(-1), "errors").values
        } ?? nil
        o.frame = try get("frame") {
            let top = lua.absIndex(-1)
            if lua.type(at: top) == .number, let k = lua.toInteger(at: top) { return [k] }
            guard lua.type(at: top) == .table else { throw LuaError.runtime("plot option 'frame' must be an index or a table of indices (0-based)") }
            var out: [Int] = []
            for k in stride(from: 1, through: lua.rawLength(at: top), by: 1) {
                lua.rawGet(at: top, index: k)
                defer { lua.pop() }
                guard let v = lua.toInteger(at: -1) else { throw LuaError.runtime("plot option 'frame' must hold integers (0-based)") }
                out.append(v)
            }
            return out
        }
        o.logx = try bool("logx")
        o.logy = try bool("logy")
        o.xlim = try pair("xlim")
        o.ylim = try pair("ylim")
        if let m = try get("mask", { () -> NDArray? in
            if lua.type(at: -1) == .boolean {
                if !lua.toBoolean(at: -1) { o.mask = .none }
                return nil
            }
            return try maskArray(call, lua.absIndex(-1))
        }) { o.maskArray = m }
        let w = try num("width").map { Int($0) }, h = try num("height").map { Int($0) }
        return (o, w, h)
    }

    static func maskArray(_ call: LuaCall, _ i: Int32) throws -> NDArray? {
        let lua = call.lua
        if let a = ArrayModule.cls.object(at: i, in: lua) { return a.array }
        if let f = NeXusModule.readableField(at: i, in: lua) { return try arrayValue(f, nil) }
        if lua.type(at: i) == .table { return try ArrayModule.fromTable(call, i, dtype: .float64) }
        throw LuaError.runtime("plot option 'mask' must be an ndarray, a field, a table, or false (no automatic masks)")
    }

    // MARK: sources

    /// "long_name", else "name (units)", else the name.
    static func label(_ f: any NXReadableField) -> String {
        if let l = f.stringAttribute("long_name"), !l.isEmpty { return l }
        if let u = f.stringAttribute("units"), !u.isEmpty { return "\(f.name) (\(u))" }
        return f.name
    }

    static func stringValue(_ f: any NXReadableNode) -> String? {
        guard let field = f as? any NXReadableField, case .strings(let s, _)? = try? field.read(nil) else { return nil }
        return s.first
    }

    /// The group's title: @title, a `title` field, the entry's `title` field, else its path.
    static func title(_ g: any NXReadableGroup) -> String {
        if let t = g.stringAttribute("title"), !t.isEmpty { return t }
        if let t = (try? g.childNode("title")).flatMap({ $0 }).flatMap(stringValue), !t.isEmpty { return t }
        var p: any NXReadableGroup = g.parentGroup
        for _ in 0..<4 {
            if let t = (try? p.childNode("title")).flatMap({ $0 }).flatMap(stringValue), !t.isEmpty { return t }
            if p.path == "/" { break }
            p = p.parentGroup
        }
        return g.path
    }

    /// A field's values as an array, refusing what is too big to plot whole.
    static func arrayValue(_ f: any NXReadableField, _ sel: Selection?, hint: String? = nil) throws -> NDArray {
        if sel == nil {
            let shape = try wrap { try f.shape }
            let size: Int = (try? f.elementType).flatMap { if case .numeric(let d) = $0 { return d.itemSize } else { return nil } } ?? 8
            let bytes = shape.reduce(1, *) * size
            if bytes > readLimit {
                let slice = shape.count >= 3 ? "one frame, e.g. \(hint ?? "d")[\"0, :, :\"]" : "a part, e.g. \(hint ?? "c")[\"\(shape.map { "0:\(min($0, 2048))" }.joined(separator: ", "))\"]"
                throw LuaError.runtime("\(f.location): \(f.path): \(NDArray.describe(shape)) is too big to plot whole (\(bytes >> 20) MB, limit \(readLimit >> 20) MB): plot \(slice):plot()")
            }
        }
        switch try wrap({ try f.read(sel) }) {
        case .array(let a): return a
        default: throw LuaError.runtime("\(f.location): \(f.path): not numeric data: nothing to plot")
        }
    }

    /// The input for an NXdata group (or the NXdata a group's @default leads to). `frame`
    /// reads only that frame of an N-d signal.
    static func groupInput(_ g0: any NXReadableGroup, _ o: inout PlotOptions) throws -> PlotInput {
        var g = g0
        if try wrap({ try g.signalField() }) == nil || g.nxclass != "NXdata" {
            if g.nxclass != "NXdata", let d = try wrap({ try g.defaultDataGroup() }) { g = d }
        }
        guard let s = try wrap({ try g.signalField() }) else {
            throw LuaError.runtime("\(g.location): \(g.path): no NXdata with a valid signal to plot (set @signal, or plot a field)")
        }
        let shape = try wrap { try s.shape }
        let axes = try wrap { try g.axisFields() }
        let errorsField = try wrap { try g.errorsField() }
        var sel: Selection? = nil
        var kept = Array(0..<shape.count)
        if let frame = o.frame {
            guard frame.count < shape.count else {
                throw LuaError.runtime("\(g.location): \(g.path): frame = {\(frame.map(String.init).joined(separator: ", "))} fixes every dimension of the signal's shape \(NDArray.describe(shape))")
            }
            for (k, i) in frame.enumerated() where i < -shape[k] || i >= shape[k] {
                throw LuaError.runtime("\(g.location): \(g.path): frame index \(i) is out of range for dimension \(k) of length \(shape[k])")
            }
            sel = Selection(frame.map { .index(.int($0)) } + [.ellipsis])
            kept = Array(frame.count..<shape.count)
            o.frame = nil
        } else if shape.filter({ $0 != 1 }).count > 2 {
            throw LuaError.runtime("\(g.location): \(g.path): the signal '\(s.name)' has shape \(NDArray.describe(shape)): plot one frame with d:plot{frame = 0} or d[\"0, :, :\"], or a sum with d:project{axis = 0, range = {0, 10}}:plot()")
        }
        var input = PlotInput(signal: try arrayValue(s, sel, hint: "d"))
        input.signalLabel = label(s)
        input.title = title(g)
        input.markers = true
        input.squeeze = true
        input.counts = s.stringAttribute("units")?.lowercased() == "counts"
        input.axes = try kept.map { k -> [Double]? in
            guard let a = axes[k] else { return nil }
            return try arrayValue(a, nil).contiguous(as: .float64).doubles()
        }
        input.axisLabels = kept.map { k in axes[k].map(label) }
        if let e = errorsField { input.errors = try arrayValue(e, sel) }
        if let frame = sel {
            // "omega = 11 degree (frame 10)": the axis value where there is one
            let parts = try frame.items.prefix(kept.first ?? 0).enumerated().map { k, item -> String in
                guard case .index(.int(let i)) = item else { return "" }
                guard let a = axes[k], let v = try? arrayValue(a, Selection([.index(.int(i))])), v.ndim == 0 else { return "frame \(i)" }
                let units = a.stringAttribute("units").map { " \($0)" } ?? ""
                let value = try v.value(at: [])
                let text = value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
                return "\(a.name) = \(text)\(units) (frame \(i))"
            }
            input.title = (input.title ?? "") + " [\(parts.joined(separator: ", "))]"
        }
        // the image's shape once size-1 axes are dropped (a (1, y, x) stack of one frame)
        let image = input.signal.shape.filter { $0 != 1 }
        if image.count == 2 { input.pixelMask = try foundMask(g, imageShape: image) }
        return input
    }

    /// The NXdata's pixel mask (NXData's rule), as an image-shaped array.
    static func foundMask(_ g: any NXReadableGroup, imageShape: [Int]) throws -> NDArray? {
        guard let f = g.pixelMaskField(imageShape: imageShape) else { return nil }
        return try wrap { try arrayValue(f, nil).contiguous().reshapedView(imageShape) }
    }

    static func fieldInput(_ f: any NXReadableField, _ o: inout PlotOptions) throws -> PlotInput {
        // the signal of an NXdata plots with its axes
        let parent = f.parentGroup
        if parent.nxclass == "NXdata", let s = try? parent.signalField(), s.path == f.path {
            return try groupInput(parent, &o)
        }
        let shape = try wrap { try f.shape }
        var sel: Selection? = nil
        if let frame = o.frame {
            sel = Selection(frame.map { .index(.int($0)) } + [.ellipsis])
            o.frame = nil
        } else if shape.filter({ $0 != 1 }).count > 2 {
            throw LuaError.runtime("\(f.location): \(f.path): shape \(NDArray.describe(shape)): plot one frame with c:plot{frame = 0} or c[\"0, :, :\"]:plot()")
        }
        var input = PlotInput(signal: try arrayValue(f, sel, hint: "c"))
        input.signalLabel = label(f)
        input.title = f.path
        input.counts = f.stringAttribute("units")?.lowercased() == "counts"
        input.markers = false
        input.squeeze = true
        return input
    }

    /// The input at argument i: NXdata or group, field, ndarray, plot.Data, or a table.
    static func input(_ call: LuaCall, _ i: Int32, _ o: inout PlotOptions) throws -> PlotInput {
        let lua = call.lua
        if let g = NeXusModule.readableGroup(at: i, in: lua) { return try groupInput(g, &o) }
        if let f = NeXusModule.readableField(at: i, in: lua) { return try fieldInput(f, &o) }
        if let a = ArrayModule.cls.object(at: i, in: lua) { return PlotInput(signal: a.array) }
        if let d = dataClass.object(at: i, in: lua) { return d.input }
        if lua.type(at: i) == .table { return PlotInput(signal: try ArrayModule.fromTable(call, i, dtype: .float64)) }
        if lua.type(at: i) == .number {
            throw LuaError.argument(i, "a number is not plottable (plot an array, a table of numbers, a field or NXdata)")
        }
        throw call.typeError(i, expected: "NXdata, field, ndarray or table")
    }

    /// 1-D values at argument i (x or y of fig:line, plot(x, y)).
    static func vector(_ call: LuaCall, _ i: Int32, _ what: String) throws -> (values: [Double], label: String?) {
        let lua = call.lua
        var o = PlotOptions()
        let inp = try input(call, i, &o)
        guard inp.signal.ndim <= 1 || inp.signal.shape.filter({ $0 != 1 }).count <= 1 else {
            throw LuaError.argument(i, "\(what) must be 1-D, got shape \(NDArray.describe(inp.signal.shape))")
        }
        _ = lua
        return (try wrap { try inp.signal.contiguous(as: .float64).doubles() }, inp.signalLabel)
    }

    /// An image holds a float64 copy of its frame: Lua's collector is told, so that the
    /// figures a loop leaves behind are collected (and their memory reused) in time.
    static func accountImage(_ p: Panel, _ lua: Lua) {
        if let im = p.image { lua.accountExternalAllocation(bytes: im.data.storage.storage.byteCount) }
    }

    // MARK: current figure

    static func setCurrent(_ lua: Lua, at i: Int32) {
        lua.pushValue(at: i)
        lua.rawSet(at: Lua.registryIndex, key: currentKey)
    }

    static func current(_ lua: Lua) -> Figure? {
        defer { lua.pop() }
        lua.rawGet(at: Lua.registryIndex, key: currentKey)
        return figureClass.object(at: -1, in: lua)
    }

    enum Mode { case plot, oplot, logplot }

    /// plot / oplot / logplot with the source at `src`, x/y form when two data
    /// arguments come first (plot(x, y, opts)).
    static func plotCall(_ call: LuaCall, _ mode: Mode, src: Int32 = 1, into given: Figure? = nil) throws -> Int32 {
        let lua = call.lua
        // plot(x, y [, opts]): two data arguments
        let twoData = lua.type(at: src + 1) != .none && lua.type(at: src + 1) != .nil &&
            !(lua.type(at: src + 1) == .table && isOptionsTable(lua, src + 1))
        let optIndex = twoData ? src + 2 : src + 1
        var (o, w, h) = try options(call, optIndex)
        if mode == .logplot {
            o.scale = o.scale ?? .log
        }
        var fig: Figure
        var pushed = false
        if let given { fig = given }
        else if mode == .oplot, let cur = current(lua) { fig = cur }
        else {
            fig = try wrap { try Figure(width: w, height: h) }
            figureClass.push(fig, to: lua)
            setCurrent(lua, at: -1)
            pushed = true
        }
        if let w { fig.width = w }
        if let h { fig.height = h }
        let panel = fig.panel
        if twoData {
            let (x, xl) = try vector(call, src, "x")
            let (y, yl) = try vector(call, src + 1, "y")
            let yerr = o.errors ? o.errorValues : nil
            if mode == .logplot { o.logy = o.logy ?? true }
            let line = try wrap { try Line(x: x, y: y, yerr: yerr, label: o.label, color: o.color, marker: o.marker ?? .none, line: o.line ?? true) }
            panel.lines.append(line)
            if panel.xlabel == nil { panel.xlabel = xl }
            if panel.ylabel == nil { panel.ylabel = yl }
            panel.apply(o)
        } else {
            var inp = try input(call, src, &o)
            if mode == .logplot && (inp.signal.shape.filter { $0 != 1 }.count <= 1 || o.frame?.count == inp.signal.ndim - 1) {
                o.logy = o.logy ?? true
                o.scale = nil
            }
            if mode == .oplot, panel.image != nil, inp.signal.shape.filter({ $0 != 1 }).count >= 2 {
                inp.title = nil
            }
            try wrap { try panel.add(inp, o) }
            accountImage(panel, lua)
        }
        if !pushed { figureClass.push(fig, to: lua) }
        FigureDisplay.display(fig, lua)
        return 1
    }

    /// Whether the table at i looks like options (string keys) rather than data.
    static func isOptionsTable(_ lua: Lua, _ i: Int32) -> Bool {
        lua.rawLength(at: i) == 0 && lua.type(at: i) == .table && !isEmptyTable(lua, i)
    }

    static func isEmptyTable(_ lua: Lua, _ i: Int32) -> Bool {
        var empty = true
        try? lua.forEachRaw(at: i) { _, _ in empty = false }
        return empty
    }

    // MARK: methods shared by NXdata, fields, arrays and plot.Data

    static func plotMethod<T>() -> LuaMethodDecl<T> {
        LuaMethodDecl("plot", "obj:plot([opts]) -> figure",
                      "draws it in a new figure (NXdata by its signal, axes and errors; see help(plot))") { call, _ in
            try plotCall(call, .plot)
        }
    }

    static func oplotMethod<T>() -> LuaMethodDecl<T> {
        LuaMethodDecl("oplot", "obj:oplot([opts]) -> figure", "draws it over the current figure") { call, _ in
            try plotCall(call, .oplot)
        }
    }

    static func logplotMethod<T>() -> LuaMethodDecl<T> {
        LuaMethodDecl("logplot", "obj:logplot([opts]) -> figure",
                      "as plot with a log scale (log y for 1-D, log colours for images)") { call, _ in
            try plotCall(call, .logplot)
        }
    }

    static func projectMethod<T>() -> LuaMethodDecl<T> {
        LuaMethodDecl("project", "d:project{axis = 0, range = {10, 50}} -> plot.Data",
                      "sums the signal over a range of one axis (as nexusformat's NXdata.project): plot it with :plot()",
                      help: "range: 0-based positions {start, stop} (stop excluded), or floats by axis value.\nExample:  d:project{axis = 0, range = {10, 50}}:plot()") { call, _ in
            try projectCall(call)
        }
    }

    static func projectCall(_ call: LuaCall) throws -> Int32 {
        let lua = call.lua
        try call.options(2, known: ["axis", "range"])
        lua.rawGet(at: 2, key: "axis")
        let axis = lua.toInteger(at: -1) ?? 0
        lua.pop()
        var range: Range<Int>? = nil
        var floatRange: (Double, Double)? = nil
        if lua.rawGet(at: 2, key: "range") == .table {
            let t = lua.absIndex(-1)
            lua.rawGet(at: t, index: 1); lua.rawGet(at: t, index: 2)
            guard let a = lua.toNumber(at: -2), let b = lua.toNumber(at: -1) else {
                throw LuaError.runtime("project: range must be two numbers {start, stop}")
            }
            if lua.isInteger(at: -2) && lua.isInteger(at: -1) { range = lua.toInteger(at: -2)!..<max(lua.toInteger(at: -1)!, lua.toInteger(at: -2)!) }
            else { floatRange = (a, b) }
            lua.pop(2)
        }
        lua.pop()
        // a group reads only the range it sums
        if let g = NeXusModule.readableGroup(at: 1, in: lua) {
            guard let s = try wrap({ try g.signalField() }) else { throw LuaError.runtime("\(g.location): \(g.path): no signal to project") }
            let shape = try wrap { try s.shape }
            let ax = axis < 0 ? axis + shape.count : axis
            guard ax >= 0 && ax < shape.count else { throw LuaError.runtime("project: axis \(axis) is out of range for shape \(NDArray.describe(shape))") }
            var items = [Selection.Item](repeating: .range(nil, nil, nil), count: shape.count)
            if let r = range { items[ax] = .range(.int(r.lowerBound), .int(r.upperBound), nil) }
            if let (a, b) = floatRange { items[ax] = .range(.float(a), .float(b), nil) }
            var sel = try wrap { try g.positions(Selection(items)) }
            // one position: keep the axis so that project sums over it
            if case .index(let b) = sel.items[ax], case .int(let k) = b { sel.items[ax] = .range(.int(k), .int(k + 1), nil) }
            var o = PlotOptions()
            var full = try groupInputUnchecked(g, &o)
            full.signal = try arrayValue(s, sel)
            if let e = try wrap({ try g.errorsField() }) { full.errors = try arrayValue(e, sel) } else { full.errors = nil }
            if case .range(let lo, _, _) = sel.items[ax], case .int(let start)? = lo, var axv = full.axes[ax] {
                let n = full.signal.shape[ax]
                let edges = axv.count == shape[ax] + 1
                axv = Array(axv[start..<min(axv.count, start + n + (edges ? 1 : 0))])
                full.axes[ax] = axv
            }
            var p = try wrap { try full.project(axis: ax) }
            // the title names positions in the file, not in the slice read
            if case .range(let lo, let hi, _) = sel.items[ax] {
                var a = 0, b = shape[ax]
                if case .int(let v)? = lo { a = v < 0 ? v + shape[ax] : v }
                if case .int(let v)? = hi { b = v < 0 ? v + shape[ax] : min(v, shape[ax]) }
                p.title = (full.title.map { $0 + ": " } ?? "") + "sum over \(full.axisLabels[ax] ?? "axis \(ax)") [\(a):\(b)]"
            }
            dataClass.push(PlotDataBox(p), to: lua)
            return 1
        }
        var o = PlotOptions()
        let inp = try input(call, 1, &o)
        if floatRange != nil { throw LuaError.runtime("project: ranges by axis value need NXdata; give 0-based positions") }
        let p = try wrap { try inp.project(axis: axis, range: range) }
        dataClass.push(PlotDataBox(p), to: lua)
        return 1
    }

    /// As groupInput, without reading the signal (project reads its own range).
    static func groupInputUnchecked(_ g: any NXReadableGroup, _ o: inout PlotOptions) throws -> PlotInput {
        guard let s = try wrap({ try g.signalField() }) else { throw LuaError.runtime("\(g.location): \(g.path): no signal") }
        let axes = try wrap { try g.axisFields() }
        let placeholder = try wrap { try NDArray(zeros: try s.shape.map { _ in 0 }, dtype: .float64) }
        var input = PlotInput(signal: placeholder)
        input.signalLabel = label(s)
        input.title = title(g)
        input.markers = true
        input.squeeze = true
        input.axes = try axes.map { a in try a.map { try arrayValue($0, nil).contiguous(as: .float64).doubles() } }
        input.axisLabels = axes.map { $0.map(label) }
        return input
    }

    static let dataClass: LuaClass<PlotDataBox> = LuaClass(
        "plot.Data",
        summary: "computed data with axes and labels (d:project{...}): plot it like NXdata",
        methods: [
            plotMethod(), oplotMethod(), logplotMethod(), projectMethod(),
            LuaMethodDecl("signal", "p:signal() -> ndarray", "the values") { call, d in
                try ArrayModule.push(d.input.signal, call.lua)
                return 1
            },
        ],
        describe: { d in "plot.Data \(NDArray.describe(d.input.signal.shape)): \(d.input.title ?? "")" }
    )

    // MARK: the figure object

    static func panelProperty(_ call: LuaCall, _ fig: Figure) throws -> Int32 {
        let lua = call.lua
        let key = try call.string(2)
        let p = fig.panel
        switch key {
        case "title": lua.push(p.title)
        case "xlabel": lua.push(p.xlabel)
        case "ylabel": lua.push(p.ylabel)
        case "width": lua.push(fig.width)
        case "height": lua.push(fig.height)
        case "rows": lua.push(fig.rows)
        case "cols": lua.push(fig.cols)
        case "panels": lua.push(fig.panels.count)
        default: return 0
        }
        return 1
    }

    static func limits(_ call: LuaCall, _ fig: Figure, x: Bool) throws -> Int32 {
        let p = fig.panel
        if call.isNoneOrNil(2) && call.isNoneOrNil(3) {
            if x { p.xlim = nil } else { p.ylim = nil }
        } else {
            let a = try call.number(2), b = try call.number(3)
            guard a.isFinite, b.isFinite, a != b else { throw LuaError.runtime("\(x ? "xlim" : "ylim"): two different finite numbers expected") }
            if x { p.xlim = (a, b) } else { p.ylim = (a, b) }
        }
        call.lua.pushValue(at: 1)
        return 1
    }

    static func flag(_ call: LuaCall, _ set: (Bool) -> Void) -> Int32 {
        set(call.isNoneOrNil(2) ? true : call.boolean(2))
        call.lua.pushValue(at: 1)
        return 1
    }

    static func base64(_ bytes: [UInt8]) -> String {
        let t = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 2 < bytes.count {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [t[Int(v >> 18 & 63)], t[Int(v >> 12 & 63)], t[Int(v >> 6 & 63)], t[Int(v & 63)]]
            i += 3
        }
        let rest = bytes.count - i
        if rest > 0 {
            let v = UInt32(bytes[i]) << 16 | (rest > 1 ? UInt32(bytes[i + 1]) << 8 : 0)
            out += [t[Int(v >> 18 & 63)], t[Int(v >> 12 & 63)], rest > 1 ? t[Int(v >> 6 & 63)] : 61, 61]
        }
        return String(decoding: out, as: UTF8.self)
    }

    static let figureClass: LuaClass<Figure> = LuaClass(
        "plot.Figure",
        summary: "a figure: panels of lines and images; change it, then save, show or get PNG bytes",
        help: """
        fig.title, fig.xlabel, fig.ylabel     labels of the current panel (read and write)
        fig.width, fig.height                 size in pixels
        fig:xlim(a, b), fig:ylim(a, b)        limits (no arguments: automatic again)
        fig:line(x, y, opts), fig:image(a, opts), fig:plot(src, opts)   add to the current panel
        fig:panel(i)                          selects panel i (0-based, row by row)
        fig:save("f.png"|"f.svg"|"f.pdf"), fig:png() -> PNG bytes, fig:show()
        """,
        methods: [
            LuaMethodDecl("save", "fig:save(path) -> path | nil, message",
                          "writes the figure as PNG, SVG or PDF (by the extension)") { call, fig in
                let path = try call.string(2)
                if isSandboxed(call.lua) { throw LuaError.runtime("fig:save is not available here (no files): return fig:png(\"base64\") or fig:png(\"array\")") }
                guard FigureFormat(path: path) != nil else {
                    throw LuaError.argument(2, "\(path): unknown picture format (use a name ending in .png, .svg or .pdf)")
                }
                do { try fig.save(path) } catch let e as PlotError {
                    if e.message.hasPrefix(path) { return call.returns(nil, e.message) }
                    throw LuaError.runtime(e.message)
                }
                return call.returns(path)
            },
            LuaMethodDecl("png", "fig:png([\"string\"|\"base64\"|\"array\"]) -> PNG bytes",
                          "the figure as PNG bytes: a Lua string (default), base64 text, or a uint8 ndarray (what nxlua serve's eval sends in binary)") { call, fig in
                let form = try call.option(2, ["string", "base64", "array"], default: "string")
                // the sandbox's limits count Lua's memory and arrays, not cairo's surfaces
                if isSandboxed(call.lua), fig.width * fig.height > sandboxPixels {
                    throw LuaError.runtime("fig:png: \(fig.width)x\(fig.height) pixels is more than remote evaluation draws (\(sandboxPixels / 1_000_000) megapixels)")
                }
                let bytes = try wrap { try fig.pngData() }
                switch form {
                case "base64": call.lua.push(base64(bytes))
                case "array":
                    let a = try wrap { try NDArray(uninitialized: [bytes.count], dtype: .uint8) }
                    bytes.withUnsafeBytes { a.storage.bytes.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
                    try ArrayModule.push(a, call.lua)
                default: bytes.withUnsafeBytes { call.lua.push(bytes: $0) }
                }
                return 1
            },
            LuaMethodDecl("show", "fig:show() -> fig", "shows the figure in the terminal (when it can show pictures)") { call, fig in
                FigureDisplay.display(fig, call.lua)
                call.lua.pushValue(at: 1)
                return 1
            },
            LuaMethodDecl("plot", "fig:plot(src [, opts]) -> fig", "draws NXdata, a field, an array or a table on the current panel") { call, fig in
                try plotCall(call, .oplot, src: 2, into: fig)
            },
            LuaMethodDecl("line", "fig:line([x,] y [, opts]) -> fig",
                          "adds a line (opts: label, color, marker, line, errors = array)") { call, fig in
                let lua = call.lua
                let hasX = lua.type(at: 3) != .none && lua.type(at: 3) != .nil && !(lua.type(at: 3) == .table && isOptionsTable(lua, 3))
                let (x, xl) = hasX ? try vector(call, 2, "x") : (nil, nil)
                let (y, yl) = try vector(call, hasX ? 3 : 2, "y")
                let (o, _, _) = try options(call, hasX ? 4 : 3)
                try addLine(fig, x, y, o.errorValues, o, xl, yl)
                lua.pushValue(at: 1)
                return 1
            },
            LuaMethodDecl("image", "fig:image(a [, opts]) -> fig",
                          "shows a 2-D array (or NXdata, field) as the current panel's image (opts: cmap, scale, vmin, vmax, mask ...)") { call, fig in
                var (o, _, _) = try options(call, 3)
                let inp = try input(call, 2, &o)
                try wrap { try fig.panel.add(inp, o) }
                accountImage(fig.panel, call.lua)
                call.lua.pushValue(at: 1)
                return 1
            },
            LuaMethodDecl("axes", "fig:axes() -> left, top, width, height",
                          "where the current panel's axes were drawn the last time (pixels from the top left; nil before the first drawing)") { call, fig in
                guard let r = fig.panel.axesRect else { return 0 }
                return call.returns(r.0, r.1, r.2, r.3)
            },
            LuaMethodDecl("panel", "fig:panel(i) -> fig", "makes panel i (0-based, row by row) the current one") { call, fig in
                let i = try call.integer(2)
                guard i >= 0 && i < fig.panels.count else {
                    throw LuaError.argument(2, "panel \(i) does not exist (the figure has \(fig.panels.count): 0 to \(fig.panels.count - 1))")
                }
                fig.current = i
                call.lua.pushValue(at: 1)
                return 1
            },
            LuaMethodDecl("xlim", "fig:xlim(a, b) -> fig", "x limits of the current panel (none: automatic)") { call, fig in
                try limits(call, fig, x: true)
            },
            LuaMethodDecl("ylim", "fig:ylim(a, b) -> fig", "y limits of the current panel (none: automatic)") { call, fig in
                try limits(call, fig, x: false)
            },
            LuaMethodDecl("logx", "fig:logx([on]) -> fig", "log x axis") { call, fig in flag(call) { fig.panel.logx = $0 } },
            LuaMethodDecl("logy", "fig:logy([on]) -> fig", "log y axis") { call, fig in flag(call) { fig.panel.logy = $0 } },
            LuaMethodDecl("colorbar", "fig:colorbar([on]) -> fig", "shows or hides the colorbar of the current panel") { call, fig in
                flag(call) { fig.panel.colorbar = $0 }
            },
            LuaMethodDecl("legend", "fig:legend([on]) -> fig", "shows or hides the legend (lines with a label)") { call, fig in
                flag(call) { fig.panel.legend = $0 }
            },
            LuaMethodDecl("aspect", "fig:aspect(\"equal\"|\"auto\") -> fig", "equal: one data unit is as long on both axes") { call, fig in
                let a = try call.option(2, ["equal", "auto"])
                fig.panel.aspect = Aspect(rawValue: a)!
                call.lua.pushValue(at: 1)
                return 1
            },
            LuaMethodDecl("clim", "fig:clim(vmin, vmax) -> fig", "colour limits of the current panel's image") { call, fig in
                guard let im = fig.panel.image else { throw LuaError.runtime("clim: the current panel has no image") }
                im.vmin = try call.optNumber(2)
                im.vmax = try call.optNumber(3)
                call.lua.pushValue(at: 1)
                return 1
            },
            LuaMethodDecl("cmap", "fig:cmap(name) -> fig", "colormap of the current panel's image") { call, fig in
                guard let im = fig.panel.image else { throw LuaError.runtime("cmap: the current panel has no image") }
                let name = try call.string(2)
                guard let m = Colormap.named(name) else { throw LuaError.argument(2, "unknown colormap '\(name)'") }
                im.colormap = m
                call.lua.pushValue(at: 1)
                return 1
            },
            LuaMethodDecl("scale", "fig:scale(\"linear\"|\"log\"|\"sqrt\"|\"symlog\" [, linthresh]) -> fig", "colour scale of the current panel's image") { call, fig in
                guard let im = fig.panel.image else { throw LuaError.runtime("scale: the current panel has no image") }
                let name = try call.string(2)
                guard let s = Scale.named(name, linthresh: try call.optNumber(3) ?? 1) else { throw LuaError.argument(2, "unknown scale '\(name)'") }
                im.scale = s
                call.lua.pushValue(at: 1)
                return 1
            },
        ],
        metamethods: [
            "__newindex": { call in
                let fig = try call.object(1, figureClass)
                let key = try call.string(2)
                let p = fig.panel
                func text() throws -> String? { call.isNoneOrNil(3) ? nil : try call.string(3) }
                switch key {
                case "title": p.title = try text()
                case "xlabel": p.xlabel = try text()
                case "ylabel": p.ylabel = try text()
                case "width", "height":
                    let v = try call.integer(3)
                    guard (64...16384).contains(v) else { throw LuaError.runtime("figure \(key) must be 64 to 16384 pixels") }
                    if key == "width" { fig.width = v } else { fig.height = v }
                default:
                    throw LuaError.runtime("plot.Figure has no field '\(key)' to set (title, xlabel, ylabel, width, height)")
                }
                return 0
            },
        ],
        index: { call, fig in try panelProperty(call, fig) },
        completions: { _ in ["title", "xlabel", "ylabel", "width", "height", "rows", "cols", "panels"] },
        describe: { fig in
            let t = fig.panel.title.map { ": \($0)" } ?? ""
            return "plot.Figure \(fig.width)x\(fig.height), \(fig.panels.count) panel\(fig.panels.count == 1 ? "" : "s")\(t)"
        }
    )

    static func addLine(_ fig: Figure, _ x: [Double]?, _ y: [Double], _ errs: [Double]?, _ o: PlotOptions,
                        _ xl: String?, _ yl: String?) throws {
        let line = try wrap {
            try Line(x: x, y: y, yerr: o.errors ? errs : nil, label: o.label, color: o.color, marker: o.marker ?? .none, line: o.line ?? true)
        }
        let p = fig.panel
        p.lines.append(line)
        if p.xlabel == nil, x != nil { p.xlabel = xl }
        if p.ylabel == nil { p.ylabel = yl }
        p.apply(o)
    }

    // MARK: the module

    static let declaration = LuaModuleDecl(
        "plot",
        summary: "figures of NXdata, fields and arrays: PNG, SVG, PDF; inline in the terminal",
        help: """
        plot(src [, opts]), plot(x, y [, opts])   a new figure (also d:plot(), c:plot(), a:plot())
        oplot(src [, opts])                       over the current figure;  logplot: log scale
        plot.figure{rows = 1, cols = 2}           a grid of panels; fig:panel(i) selects one
        fig:save("frame.png"), fig:png()          files (.png .svg .pdf) or PNG bytes
        Options: cmap, scale ("linear"|"log"|"sqrt"|"symlog", linthresh), vmin, vmax,
        percentiles ({0.5, 99.5}; true/false), mask (array, field, or false), aspect,
        origin ("lower": row 0 at the bottom, as NeXpy), colorbar, xlabel, ylabel, title,
        marker ("o" "s" "+" "x" "." "none"), line, color, label, errors, frame (N-d:
        which frame), logx, logy, xlim, ylim, width, height (pixels).
        Integer frames autoscale to the 0.5-99.5 percentiles; masked pixels (NaN,
        negative integers, the unsigned maximum, pixel_mask) are drawn light gray.
        Indices (frame, project ranges) are 0-based.
        """,
        functions: [
            LuaFunctionDecl("plot", "plot(src [, opts]) -> figure", "draws NXdata, a field, an array or a table in a new figure",
                            help: "Examples:  plot(f.entry.data)   plot(x, y, {label = 'fit'})   plot(frame, {scale = 'log'})") { call in
                try plotCall(call, .plot)
            },
            oplotFunction,
            logplotFunction,
            LuaFunctionDecl("figure", "plot.figure{rows = 1, cols = 1, width, height} -> figure",
                            "a new, empty figure with a grid of panels; it becomes the current figure") { call in
                var rows = 1, cols = 1
                var w: Int? = nil, h: Int? = nil
                if !call.isNoneOrNil(1) {
                    try call.options(1, known: ["rows", "cols", "width", "height"])
                    let lua = call.lua
                    for key in ["rows", "cols", "width", "height"] {
                        guard lua.rawGet(at: 1, key: key) != .nil else { lua.pop(); continue }
                        guard let v = lua.toInteger(at: -1) else { lua.pop(); throw LuaError.runtime("plot.figure: '\(key)' must be an integer") }
                        lua.pop()
                        switch key { case "rows": rows = v; case "cols": cols = v; case "width": w = v; default: h = v }
                    }
                }
                let fig = try wrap { try Figure(rows: rows, cols: cols, width: w, height: h) }
                figureClass.push(fig, to: call.lua)
                setCurrent(call.lua, at: -1)
                return 1
            },
            LuaFunctionDecl("colormap", "plot.colormap(name) -> ndarray (256, 4) uint8",
                            "a colormap's 256 colours as r, g, b, a bytes (the tables figures use; '_r' reverses)") { call in
                let name = try call.string(1)
                guard let m = Colormap.named(name) else {
                    throw LuaError.argument(1, "unknown colormap '\(name)' (known: \(Colormap.names.joined(separator: ", ")), each also with _r)")
                }
                let a = try wrap { try NDArray(uninitialized: [256, 4], dtype: .uint8) }
                m.rgba8.withUnsafeBytes { a.storage.bytes.copyMemory(from: $0.baseAddress!, byteCount: 1024) }
                try ArrayModule.push(a, call.lua)
                return 1
            },
            LuaFunctionDecl("current", "plot.current() -> figure|nil", "the current figure (the last one plotted)") { call in
                guard let f = current(call.lua) else { return 0 }
                figureClass.push(f, to: call.lua)
                return 1
            },
        ],
        classes: [figureClass, dataClass],
        values: [("colormaps", Colormap.names + Colormap.names.map { $0 + "_r" })],
        // plot(...) is plot.plot(...)
        call: { call in try plotCall(call, .plot) }
    )

    static let oplotFunction = LuaFunctionDecl("oplot", "oplot(src [, opts]) -> figure",
                                               "draws over the current figure (a new one if none)") { call in
        try plotCall(call, .oplot)
    }
    static let logplotFunction = LuaFunctionDecl("logplot", "logplot(src [, opts]) -> figure",
                                                 "plot with log y (1-D) or log colours (images)") { call in
        try plotCall(call, .logplot)
    }

    /// oplot and logplot are globals too, as in nexusformat (set beside the module, so
    /// that they do not need it built).
    static func installGlobals(_ lua: Lua) throws {
        try lua.setGlobal(oplotFunction)
        try lua.setGlobal(logplotFunction)
    }
}
