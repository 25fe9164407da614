#if canImport(Glibc)
import Glibc
#endif
import Crystal
import LuaBridge
import NDArray
import NeXus
import Stacker
import TerminalProgress

/// The `crystal` module: single-crystal geometry, the crystal simulator, frame statistics
/// and peak search (thin: the Crystal core does the work).
enum CrystalModule {
    static func fail(_ error: Error) -> LuaError {
        if let e = error as? LuaError { return e }
        if let e = error as? CrystalError { return .runtime(e.message) }
        if let e = error as? ArrayError { return .runtime(e.message) }
        return .runtime("\(error)")
    }

    static func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw fail(error) }
    }

    final class GeometryBox: @unchecked Sendable {
        var geometry: CrystalGeometry
        init(_ g: CrystalGeometry) { geometry = g }
    }

    final class SimulationBox: @unchecked Sendable {
        let simulation: CrystalSimulation
        init(_ s: CrystalSimulation) { simulation = s }
    }

    final class StatsBox: @unchecked Sendable {
        let stats: FrameStatistics
        /// The powder pattern, once computed (frame_stats with a geometry, or st:radial).
        var radial: RadialSum?
        init(_ s: FrameStatistics) { stats = s }
    }

    /// The options of a radial sum: radial_bins (nil: one per pixel of radius) and
    /// polarization (0.99).
    static func radialOptions(_ t: Options?) throws -> (bins: Int?, polarization: Double) {
        let bins = try t?.integer("radial_bins")
        if let bins, bins < 1 { throw LuaError.runtime("radial_bins must be >= 1, got \(bins)") }
        return (bins, try t?.number("polarization") ?? 0.99)
    }

    final class PeaksBox: @unchecked Sendable {
        var peaks: [FoundPeak]
        let finder: PeakFinder?
        var first = 0, last = 0
        var threshold: Double
        init(_ peaks: [FoundPeak], finder: PeakFinder?, threshold: Double) { self.peaks = peaks; self.finder = finder; self.threshold = threshold }
    }

    // MARK: arguments

    /// Options of a table argument: typed getters that pop what they read.
    struct Options {
        let call: LuaCall
        let index: Int32
        var lua: Lua { call.lua }

        func number(_ key: String) throws -> Double? {
            defer { lua.pop() }
            switch lua.rawGet(at: index, key: key) {
            case .nil: return nil
            case .number: return lua.toNumber(at: -1)
            default: throw LuaError.argument(index, "\(key) must be a number")
            }
        }
        func integer(_ key: String) throws -> Int? {
            guard let v = try number(key) else { return nil }
            guard v == v.rounded(), abs(v) < 1e15 else { throw LuaError.argument(index, "\(key) must be an integer, got \(v)") }
            return Int(v)
        }
        func string(_ key: String) throws -> String? {
            defer { lua.pop() }
            switch lua.rawGet(at: index, key: key) {
            case .nil: return nil
            case .string: return lua.toString(at: -1)
            default: throw LuaError.argument(index, "\(key) must be a string")
            }
        }
        func numbers(_ key: String, count: Int) throws -> [Double]? {
            defer { lua.pop() }
            switch lua.rawGet(at: index, key: key) {
            case .nil: return nil
            case .table:
                var out: [Double] = []
                let t = lua.absIndex(-1)
                for i in 1...count {
                    defer { lua.pop() }
                    guard lua.rawGet(at: t, index: i) == .number, let x = lua.toNumber(at: -1) else {
                        throw LuaError.argument(index, "\(key) must be a table of \(count) numbers")
                    }
                    out.append(x)
                }
                return out
            default: throw LuaError.argument(index, "\(key) must be a table of \(count) numbers")
            }
        }
        func boolean(_ key: String) -> Bool? {
            defer { lua.pop() }
            return lua.rawGet(at: index, key: key) == .nil ? nil : lua.toBoolean(at: -1)
        }
        /// An ndarray, a Lua table or a field (read) under `key`.
        func array(_ key: String) throws -> NDArray? {
            defer { lua.pop() }
            if lua.rawGet(at: index, key: key) == .nil { return nil }
            return try CrystalModule.array(call, lua.absIndex(-1), what: key)
        }
    }

    static func array(_ call: LuaCall, _ i: Int32, what: String) throws -> NDArray {
        if let a = ArrayModule.cls.object(at: i, in: call.lua) { return a.array }
        if let f = NeXusModule.readableField(at: i, in: call.lua) {
            guard case .array(let a) = try wrap({ try f.read(nil) }) else { throw LuaError.runtime("\(f.location): \(f.path): \(what) must be numeric") }
            return a
        }
        if call.lua.type(at: i) == .table { return try ArrayModule.fromTable(call, i, dtype: nil) }
        throw LuaError.runtime("\(what) must be an ndarray, a field or a table of numbers")
    }

    /// A file argument: a tree (nx.load's root or any object of it) or a path (opened "r").
    static func file(_ call: LuaCall, _ i: Int32, write: Bool = false) throws -> NXFile {
        if let g = NeXusModule.localGroup(at: i, in: call.lua) { return g.file }
        if let f = NeXusModule.localField(at: i, in: call.lua) { return f.file }
        if call.lua.type(at: i) == .string {
            if PlotModule.isSandboxed(call.lua) { throw LuaError.runtime("opening files by name is not available here") }
            let path = try call.string(i)
            return try wrap { try NXFile(path: path, mode: write ? .readWrite : .read) }
        }
        throw NeXusModule.typeError(call, i, expected: "NeXus file (from nx.load) or path")
    }

    static func field(_ call: LuaCall, _ i: Int32) throws -> NXField {
        if let f = NeXusModule.localField(at: i, in: call.lua) { return f }
        if let g = NeXusModule.localGroup(at: i, in: call.lua) {
            // an NXdata or NXentry: its signal / detector data
            for path in ["data", "instrument/detector/data", "data/data"] {
                if let f = try wrap({ try g.resolve(path) }) as? NXField { return f }
            }
            throw LuaError.runtime("\(g.file.path): \(g.path): no frames found (looked for data, instrument/detector/data and data/data); pass the frames field")
        }
        throw NeXusModule.typeError(call, i, expected: "NXfield of frames")
    }

    static func point(_ call: LuaCall, from i: Int32) throws -> (Double, Double, Double) {
        (try call.number(i), try call.number(i + 1), try call.optNumber(i + 2) ?? 0)
    }

    static func pushVector(_ v: Vector3, _ lua: Lua) -> Int32 {
        lua.push(v.x); lua.push(v.y); lua.push(v.z)
        return 3
    }

    static func pushMatrix(_ m: Matrix3?, _ lua: Lua) throws {
        guard let m else { lua.pushNil(); return }
        try ArrayModule.push(try wrap { try NDArray.from(m.flat, shape: [3, 3]) }, lua)
    }

    static func matrix(_ call: LuaCall, _ i: Int32) throws -> Matrix3 {
        let a = try array(call, i, what: "orientation matrix")
        guard a.count == 9 else { throw LuaError.runtime("an orientation matrix needs 3 x 3 values, got shape \(NDArray.describe(a.shape))") }
        let v = a.doubles()
        return Matrix3([Array(v[0..<3]), Array(v[3..<6]), Array(v[6..<9])])
    }

    static let geometryKeys = ["distance", "pixel_size", "beam_center_x", "beam_center_y", "yaw", "pitch", "roll",
                               "detector_orientation", "theta", "omega", "chi", "phi_start", "phi_step", "wavelength",
                               "sample_offset", "unit_cell", "orientation_matrix", "frames", "frame_shape",
                               "phi_frames", "omega_frames", "chi_frames"]

    /// Sets geometry values from a table at `t` (the keys of geometryKeys).
    static func apply(_ call: LuaCall, _ t: Int32, to g: inout CrystalGeometry) throws {
        try call.options(t, known: geometryKeys)
        let o = Options(call: call, index: call.lua.absIndex(t))
        if let v = try o.number("distance") { g.distance = v }
        if let v = try o.number("pixel_size") { g.pixelSize = v }
        if let v = try o.number("beam_center_x") { g.beamCenterX = v }
        if let v = try o.number("beam_center_y") { g.beamCenterY = v }
        if let v = try o.number("yaw") { g.yaw = v }
        if let v = try o.number("pitch") { g.pitch = v }
        if let v = try o.number("roll") { g.roll = v }
        if let v = try o.string("detector_orientation") { g.detectorOrientation = v }
        if let v = try o.number("theta") { g.theta = v }
        if let v = try o.number("omega") { g.omega = v }
        if let v = try o.number("chi") { g.chi = v }
        if let v = try o.number("phi_start") { g.phiStart = v }
        if let v = try o.number("phi_step") { g.phiStep = v }
        if let v = try o.number("wavelength") { g.wavelength = v }
        if let v = try o.numbers("sample_offset", count: 3) { g.sampleOffset = Vector3(v[0], v[1], v[2]) }
        if let v = try o.numbers("unit_cell", count: 6) { g.unitCell = UnitCell(a: v[0], b: v[1], c: v[2], alpha: v[3], beta: v[4], gamma: v[5]) }
        if let v = try o.integer("frames") { g.frames = v }
        if let v = try o.numbers("frame_shape", count: 2) { g.frameShape = v.map { Int($0) } }
        // per-frame angles (an array or table, one value per frame; false: back to the scalar);
        // setting the scalar alone drops them
        func present(_ key: String) -> Bool { defer { call.lua.pop() }; return call.lua.rawGet(at: o.index, key: key) != .nil }
        func perFrame(_ key: String) throws -> [Double]?? {
            defer { call.lua.pop() }
            switch call.lua.rawGet(at: o.index, key: key) {
            case .nil: return nil
            case .boolean where !call.lua.toBoolean(at: -1): return .some(nil)
            default:
                let v = try array(call, call.lua.absIndex(-1), what: key).doubles()
                guard !v.isEmpty, v.allSatisfy({ $0.isFinite }) else { throw LuaError.argument(t, "\(key) must hold one finite angle per frame") }
                return .some(v)
            }
        }
        if present("phi_start") || present("phi_step") { g.phiFrames = nil }
        if present("omega") { g.omegaFrames = nil }
        if present("chi") { g.chiFrames = nil }
        if let v = try perFrame("phi_frames") { g.phiFrames = v; if let v { g.phiStart = v[0] } }
        if let v = try perFrame("omega_frames") { g.omegaFrames = v; if let v { g.omega = v[0] } }
        if let v = try perFrame("chi_frames") { g.chiFrames = v; if let v { g.chi = v[0] } }
        if call.lua.rawGet(at: o.index, key: "orientation_matrix") != .nil {
            let m = try matrix(call, call.lua.absIndex(-1))
            call.lua.pop()
            g.orientationMatrix = m
        } else { call.lua.pop() }
        _ = try wrap { try g.transform() }
    }

    static func pushGeometryValue(_ g: CrystalGeometry, _ key: String, _ lua: Lua) throws -> Int32 {
        switch key {
        case "distance": lua.push(g.distance)
        case "pixel_size": lua.push(g.pixelSize)
        case "beam_center_x": lua.push(g.beamCenterX)
        case "beam_center_y": lua.push(g.beamCenterY)
        case "yaw": lua.push(g.yaw)
        case "pitch": lua.push(g.pitch)
        case "roll": lua.push(g.roll)
        case "detector_orientation": lua.push(g.detectorOrientation)
        case "theta": lua.push(g.theta)
        case "omega": lua.push(g.omega)
        case "chi": lua.push(g.chi)
        case "phi_start": lua.push(g.phiStart)
        case "phi_step": lua.push(g.phiStep)
        case "wavelength": lua.push(g.wavelength)
        case "sample_offset": pushNumbers([g.sampleOffset.x, g.sampleOffset.y, g.sampleOffset.z], lua)
        case "unit_cell": if let c = g.unitCell { pushNumbers(c.parameters, lua) } else { lua.pushNil() }
        case "orientation_matrix": try pushMatrix(g.orientationMatrix, lua)
        case "ub": try pushMatrix(g.unitCell != nil && g.orientationMatrix != nil ? try wrap { try g.matrixUB() } : nil, lua)
        case "frames": if let n = g.frames { lua.push(n) } else { lua.pushNil() }
        case "frame_shape": if let s = g.frameShape { pushNumbers(s.map(Double.init), lua) } else { lua.pushNil() }
        case "phi_frames", "omega_frames", "chi_frames":
            let v = key == "phi_frames" ? g.phiFrames : key == "omega_frames" ? g.omegaFrames : g.chiFrames
            if let v { try ArrayModule.push(try wrap { try NDArray.from(v, shape: [v.count]) }, lua) } else { lua.pushNil() }
        default: return 0
        }
        return 1
    }

    /// A number as a user typed it: integers without ".0".
    static func number(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : "\(x)"
    }

    static func pushNumbers(_ xs: [Double], _ lua: Lua) {
        lua.newTable(arrayCount: xs.count)
        for (k, x) in xs.enumerated() {
            lua.push(x)
            lua.rawSet(at: -2, index: k + 1)
        }
    }

    // MARK: classes

    static let geometryClass: LuaClass<GeometryBox> = LuaClass(
        "crystal.Geometry",
        summary: "a rotation scan's geometry in NXRefine's conventions: pixel (x, y, frame) -> lab, Q, angles, hkl",
        help: """
        g.distance (mm), g.pixel_size (mm), g.beam_center_x/y (pixels), g.yaw/pitch/roll,
        g.detector_orientation ("-y +z -x"), g.theta/omega/chi, g.phi_start, g.phi_step (deg),
        g.wavelength (Angstrom), g.unit_cell {a, b, c, alpha, beta, gamma}, g.orientation_matrix (U),
        g.ub; set them with g.name = value or g:set{...}.
        Per frame: g.phi_frames, g.omega_frames, g.chi_frames (ndarrays, one angle per frame at
        its centre, or nil): they replace phi_start + phi_step z, omega and chi frame by frame
        (interpolated between frames); setting the scalar (g.omega = 1) drops them.
        x is the column (fast) index, y the row, z the frame; pixel and frame centres are integers.
        """,
        methods: [
            LuaMethodDecl("hkl", "g:hkl(x, y, frame) -> h, k, l", "reciprocal-lattice indices of a pixel: (UB)^-1 Q (needs a unit cell and U)") { call, box in
                let (x, y, z) = try point(call, from: 2)
                let t = try wrap { try box.geometry.transform() }
                return pushVector(try wrap { try t.hkl(x: x, y: y, z: z) }, call.lua)
            },
            LuaMethodDecl("q", "g:q(x, y, frame) -> qx, qy, qz", "the scattering vector in the sample (goniometer head) frame, 1/Angstrom without 2 pi (NXRefine's Gvec; |q| = 1/d)") { call, box in
                let (x, y, z) = try point(call, from: 2)
                return pushVector(try wrap { try box.geometry.transform() }.scatteringVector(x: x, y: y, z: z), call.lua)
            },
            LuaMethodDecl("lab", "g:lab(x, y, frame) -> vx, vy, vz", "the vector from the sample to the pixel in the lab frame (mm; x along the beam)") { call, box in
                let (x, y, z) = try point(call, from: 2)
                return pushVector(try wrap { try box.geometry.transform() }.labVector(x: x, y: y, z: z), call.lua)
            },
            LuaMethodDecl("angles", "g:angles(x, y [, frame]) -> polar, azimuthal", "polar angle (2 theta) and azimuthal angle of a pixel, degrees") { call, box in
                let (x, y, z) = try point(call, from: 2)
                let a = try wrap { try box.geometry.transform() }.angles(x: x, y: y, z: z)
                call.lua.push(a.polar); call.lua.push(a.azimuthal)
                return 2
            },
            LuaMethodDecl("frame", "g:frame(what, frame [, rows, columns]) -> ndarray",
                          "one quantity for every pixel of a frame: \"hkl\", \"q\", \"lab\" (rows, columns, 3), \"polar\", \"azimuthal\", \"qmag\" (rows, columns)",
                          help: "qmag is |Q| = 4 pi sin(theta) / lambda (with 2 pi); rows and columns default to the geometry's frame shape.") { call, box in
                let name = try call.string(2)
                guard let what = GeometryTransform.FrameQuantity(rawValue: name) else {
                    throw LuaError.argument(2, "what must be one of \(GeometryTransform.FrameQuantity.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")), got \"\(name)\"")
                }
                let z = try call.number(3)
                let shape = box.geometry.frameShape
                guard let rows = try call.optInteger(4) ?? shape?[0], let cols = try call.optInteger(5) ?? shape?[1] else {
                    throw LuaError.runtime("g:frame: the frame shape is not known; pass rows and columns")
                }
                let a = try wrap { try box.geometry.transform().frame(what, z: z, rows: rows, columns: cols) }
                try ArrayModule.push(a, call.lua)
                return 1
            },
            LuaMethodDecl("pixels", "g:pixels(h, k, l) -> {{x=, y=, z=}, ...}", "where reflection (h, k, l) meets the detector: pixel and frame of each crossing of the Ewald sphere in one turn") { call, box in
                let t = try wrap { try box.geometry.transform() }
                let positions = try wrap { try t.positions(h: try call.number(2), k: try call.number(3), l: try call.number(4)) }
                let lua = call.lua
                lua.newTable(arrayCount: positions.count)
                for (n, p) in positions.enumerated() {
                    lua.newTable(recordCount: 3)
                    lua.push(p.x); lua.rawSet(at: -2, key: "x")
                    lua.push(p.y); lua.rawSet(at: -2, key: "y")
                    lua.push(p.z); lua.rawSet(at: -2, key: "z")
                    lua.rawSet(at: -2, index: n + 1)
                }
                return 1
            },
            LuaMethodDecl("goniometer", "g:goniometer(frame) -> phi, omega, chi",
                          "the goniometer angles of frame z (degrees; per-frame angles interpolated between frames)") { call, box in
                let z = try call.number(2)
                let g = box.geometry
                call.lua.push(g.phi(at: z)); call.lua.push(g.omega(at: z)); call.lua.push(g.chi(at: z))
                return 3
            },
            LuaMethodDecl("set", "g:set{name = value, ...} -> g", "sets several values at once (checked together)") { call, box in
                var g = box.geometry
                try apply(call, 2, to: &g)
                box.geometry = g
                call.lua.pushValue(at: 1)
                return 1
            },
            LuaMethodDecl("write", "g:write(file [, entry])", "writes the geometry in NXRefine's layout under entry (default \"entry\"; the cell under /entry/sample)") { call, box in
                let f = try file(call, 2, write: true)
                let entry = try call.optString(3) ?? "entry"
                try wrap { try box.geometry.write(f, entry: entry) }
                return 0
            },
            LuaMethodDecl("table", "g:table() -> table", "the values as a plain table (what crystal.geometry{...} takes)") { call, box in
                let lua = call.lua
                lua.newTable(recordCount: geometryKeys.count)
                for k in geometryKeys where try pushGeometryValue(box.geometry, k, lua) == 1 {
                    if lua.type(at: -1) == .nil { lua.pop(); continue }
                    lua.rawSet(at: -2, key: k)
                }
                return 1
            },
        ],
        metamethods: [
            "__newindex": { call in
                let box = try call.object(1, geometryClass)
                let key = try call.string(2)
                guard geometryKeys.contains(key) else { throw LuaError.runtime("crystal.Geometry has no value '\(key)' (known: \(geometryKeys.joined(separator: ", ")))") }
                call.lua.newTable()
                call.lua.pushValue(at: 3)
                call.lua.rawSet(at: -2, key: key)
                var g = box.geometry
                try apply(call, call.lua.absIndex(-1), to: &g)
                box.geometry = g
                return 0
            },
        ],
        index: { call, box in try pushGeometryValue(box.geometry, try call.string(2), call.lua) },
        completions: { _ in geometryKeys + ["ub"] },
        describe: { box in
            let g = box.geometry
            var s = "crystal.Geometry: distance \(g.distance) mm, pixel \(g.pixelSize) mm, beam (\(g.beamCenterX), \(g.beamCenterY)), wavelength \(g.wavelength) A, phi \(g.phiStart) + \(g.phiStep) z"
            if let c = g.unitCell { s += ", cell \(c.parameters)" }
            if g.orientationMatrix != nil { s += ", U set" }
            return s
        })

    static func pushReflections(_ rs: [CrystalSimulation.Reflection], _ lua: Lua) {
        lua.newTable(arrayCount: rs.count)
        for (i, r) in rs.enumerated() {
            lua.newTable(recordCount: 7)
            lua.push(r.h); lua.rawSet(at: -2, key: "h")
            lua.push(r.k); lua.rawSet(at: -2, key: "k")
            lua.push(r.l); lua.rawSet(at: -2, key: "l")
            lua.push(r.x); lua.rawSet(at: -2, key: "x")
            lua.push(r.y); lua.rawSet(at: -2, key: "y")
            lua.push(r.z); lua.rawSet(at: -2, key: "z")
            lua.push(r.intensity); lua.rawSet(at: -2, key: "intensity")
            lua.rawSet(at: -2, index: i + 1)
        }
    }

    /// Stacks a simulation's frames straight into a NeXus file, through the stacker (the
    /// layout of nxlua stack: bitshuffle/LZ4 chunks of one frame, per-frame header values),
    /// then adds the detector's pixel_mask (gaps and dead pixels). Returns frames stored.
    static func writeStack(_ sim: CrystalSimulation, to path: String, prefix: String, quiet: Bool, lua: Lua) throws -> Int {
        if PlotModule.isSandboxed(lua) { throw LuaError.runtime("writing a stack is not available here (no files)") }
        if access(path, F_OK) == 0 { throw LuaError.runtime("\(path): exists; a simulated stack is written into a new file") }
        var o = StackOptions(source: .generated(names: sim.frameNames(prefix: prefix), frame: { n in try sim.detectorFrame(n - 1) }), output: path)
        o.program = "nxlua crystal.simulate (nxlua \(CoreModule.version))"
        o.shouldStop = { LuaInterrupt.isPending }
        o.progress = !quiet
        o.durable = false  // a simulation is made again at will
        let summary = try wrap { try Stacker(options: o).run() }
        try LuaInterrupt.check()
        guard summary.bad == 0 else { throw LuaError.runtime("\(path): \(summary.bad) simulated frames could not be stacked (see the messages above)") }
        try wrap {
            let file = try NXFile(path: path, mode: .readWrite)
            defer { try? file.close() }
            guard let det = try file.root.resolve("/entry/instrument/detector") as? NXGroup else {
                throw CrystalError("\(path): no /entry/instrument/detector after stacking")
            }
            let f = try det.makeField("pixel_mask", value: .array(try sim.detectorMask()))
            try f.setAttribute("long_name", .string("1 = no signal (module gaps and dead pixels)"))
        }
        return summary.stored
    }

    static let simulationClass: LuaClass<SimulationBox> = LuaClass(
        "crystal.Simulation",
        summary: "a simulated rotation scan: frames, headers, the true reflections",
        help: """
        s.frames, s.rows, s.columns, s.geometry, s.reflections ({h, k, l, x, y, z, intensity} with
        z the frame), s:frame(i) -> int32 ndarray (0-based), s:header(i), s:write_cbf(folder [, prefix]),
        s:write_stack(path) (a NeXus stack as nxlua stack writes, without CBF files)
        """,
        methods: [
            LuaMethodDecl("frame", "s:frame(i) -> ndarray", "frame i (0-based) as int32 (rows, columns)") { call, box in
                let i = try call.integer(2)
                guard i >= 0, i < box.simulation.options.frames else { throw LuaError.argument(2, "frame \(i) is outside 0..\(box.simulation.options.frames - 1)") }
                try ArrayModule.push(try wrap { try box.simulation.frame(i) }, call.lua)
                return 1
            },
            LuaMethodDecl("header", "s:header(i) -> text", "frame i's Pilatus header lines") { call, box in
                call.lua.push(box.simulation.header(try call.integer(2)))
                return 1
            },
            LuaMethodDecl("write_stack", "s:write_stack(path [, options]) -> frames",
                          "writes every frame straight into a new NeXus stack, as nxlua stack would stack the CBF files (no CBF files written)",
                          help: """
                          The layout is nxlua stack's: /entry/instrument/detector/data (one bitshuffle/LZ4 chunk per
                          frame), the per-frame header values (phi, omega, chi ...) in /entry/instrument/NDAttributes,
                          source names prefix_00001.cbf ... in /entry/stacking; plus
                          /entry/instrument/detector/pixel_mask (gaps and dead pixels). options: prefix ("scan"),
                          quiet (no progress bar). Ctrl-C stops it (rerunning nxlua stack is not needed: write again).
                          """) { call, box in
                let path = try call.string(2)
                var prefix = "scan", quiet = false
                if !call.isNoneOrNil(3) {
                    try call.options(3, known: ["prefix", "quiet"])
                    let t = Options(call: call, index: call.lua.absIndex(3))
                    prefix = try t.string("prefix") ?? prefix
                    quiet = t.boolean("quiet") ?? false
                }
                call.lua.push(try writeStack(box.simulation, to: path, prefix: prefix, quiet: quiet, lua: call.lua))
                return 1
            },
            LuaMethodDecl("write_cbf", "s:write_cbf(folder [, prefix]) -> paths",
                          "writes every frame as folder/prefix_00001.cbf ... (mini-CBF with full Pilatus headers, what nxlua stack ingests)") { call, box in
                if PlotModule.isSandboxed(call.lua) { throw LuaError.runtime("s:write_cbf is not available here (no files)") }
                let folder = try call.string(2)
                let prefix = try call.optString(3) ?? "scan"
                let total = box.simulation.options.frames
                let bar = ProgressBar(label: "simulate", total: total, unit: "frames")
                let paths = try wrap {
                    try box.simulation.writeCBF(folder: folder, prefix: prefix) { done in
                        try CoreModule.checkStopped("simulate")
                        bar.update(done)
                    }
                }
                bar.finish()
                call.lua.push(paths)
                return 1
            },
        ],
        index: { call, box in
            let s = box.simulation, lua = call.lua
            switch try call.string(2) {
            case "frames": lua.push(s.options.frames)
            case "rows": lua.push(s.rows)
            case "columns": lua.push(s.columns)
            case "geometry": geometryClass.push(GeometryBox(s.geometry), to: lua)
            case "reflections": pushReflections(s.reflections, lua)
            default: return 0
            }
            return 1
        },
        describe: { box in "crystal.Simulation: \(box.simulation.options.frames) frames of \(box.simulation.rows) x \(box.simulation.columns), \(box.simulation.reflections.count) reflections" })

    static let statsClass: LuaClass<StatsBox> = LuaClass(
        "crystal.FrameStats",
        summary: "frame statistics (as NXRefine's nxmax): frame sums, summed and maximum images, global maximum, pixel mask",
        help: """
        st.maximum, st.first, st.last, st.frames_seen, st.frame_sums (ndarray), st.summed, st.max_image,
        st.pixel_mask (int8, 1 = masked), st.hot_pixels (count); st:add(frames, first) adds frames
        (a block or one frame); st:write(file [, entry]) writes them where nxmax does.
        st:radial(g) -> q, intensity: the powder pattern (also st.radial_q, st.radial_sum).
        """,
        methods: [
            LuaMethodDecl("add", "st:add(frames, first)", "adds a block (frames, rows, columns) or one frame starting at frame index first (0-based)") { call, box in
                let a = try array(call, 2, what: "frames")
                let first = try call.integer(3)
                try wrap { try box.stats.add(a, firstFrame: first) }
                return 0
            },
            LuaMethodDecl("write", "st:write(file [, entry])", "writes @maximum/@first/@last on entry/data, entry/instrument/detector/pixel_mask and entry/frame_sums") { call, box in
                let f = try file(call, 2, write: true)
                let entry = try call.optString(3) ?? "entry"
                try wrap { try box.stats.write(f, entry: entry, radial: box.radial) }
                return 0
            },
            LuaMethodDecl("radial", "st:radial(g [, options]) -> q, intensity",
                          "the powder pattern of the frames so far: the summed image binned in |Q| (1/A, with 2 pi), corrected for polarization and solid angle",
                          help: """
                          options: radial_bins (default: as many as the pattern frame_stats computed, else one
                          per pixel of the largest radius), polarization (0.99:
                          horizontal, as NXRefine's; 0 unpolarized). Each bin is sum(I) / sum(P Omega) over its
                          unmasked pixels (pyFAI's integrate1d). st:write then writes it as
                          entry/frame_sums/radial_sum (NXdata radial_sum against Q).
                          """) { call, box in
                let g = try call.object(2, geometryClass).geometry
                var t: Options?
                if !call.isNoneOrNil(3) {
                    try call.options(3, known: ["radial_bins", "polarization"])
                    t = Options(call: call, index: call.lua.absIndex(3))
                }
                let (bins, polarization) = try radialOptions(t)
                // by default the bins of the pattern frame_stats computed, so the two compare
                let r = try wrap { try box.stats.radialSum(geometry: g, bins: bins ?? box.radial?.q.count, polarization: polarization) }
                box.radial = r
                try ArrayModule.push(try wrap { try NDArray.from(r.q, shape: [r.q.count]) }, call.lua)
                try ArrayModule.push(try wrap { try NDArray.from(r.intensity, shape: [r.q.count]) }, call.lua)
                return 2
            },
        ],
        index: { call, box in
            let s = box.stats, lua = call.lua
            switch try call.string(2) {
            case "maximum": lua.push(s.maximum)
            case "first": if let v = s.first { lua.push(v) } else { lua.pushNil() }
            case "last": if let v = s.last { lua.push(v + 1) } else { lua.pushNil() }
            case "frames_seen": lua.push(s.framesSeen)
            case "frame_sums": try ArrayModule.push(try wrap { try s.frameSums() }, lua)
            case "summed": try ArrayModule.push(try wrap { try s.summedImage() }, lua)
            case "max_image": try ArrayModule.push(try wrap { try s.maximumImage() }, lua)
            case "pixel_mask": try ArrayModule.push(try wrap { try s.pixelMask() }, lua)
            case "hot_pixels": lua.push(s.hotPixels.count)
            case "radial_q", "radial_sum":
                guard let r = box.radial else { lua.pushNil(); return 1 }
                let v = try call.string(2) == "radial_q" ? r.q : r.intensity
                try ArrayModule.push(try wrap { try NDArray.from(v, shape: [v.count]) }, lua)
            default: return 0
            }
            return 1
        },
        describe: { box in "crystal.FrameStats: \(box.stats.framesSeen) frames of \(box.stats.rows) x \(box.stats.columns), maximum \(box.stats.maximum)" })

    static let peakKeys = ["x", "y", "z", "sigx", "sigy", "sigz", "intensity", "background"]

    static let peaksClass: LuaClass<PeaksBox> = LuaClass(
        "crystal.Peaks",
        summary: "peaks found in a scan (as NXRefine's nxfind): columns x, y, z, sigx, sigy, sigz, intensity, background",
        help: """
        #p, p[i] -> {x=, y=, z=, sigx=, ..., intensity=} (1-based, as Lua lists), p.x ... -> ndarray columns,
        p:write(file [, {entry = "entry", geometry = g}]) writes entry/peaks (NXreflections, with
        polar_angle and azimuthal_angle when a geometry is given). An incremental finder
        (crystal.peak_finder) also has p:add(frames, first) and p:finish().
        """,
        methods: [
            LuaMethodDecl("write", "p:write(file [, options])", "writes the NXreflections group entry/peaks as nxfind does",
                          help: "options: entry (default \"entry\"), geometry (adds polar_angle, azimuthal_angle)") { call, box in
                let f = try file(call, 2, write: true)
                var entry = "entry"
                var geometry: CrystalGeometry?
                if !call.isNoneOrNil(3) {
                    try call.options(3, known: ["entry", "geometry"])
                    let o = Options(call: call, index: call.lua.absIndex(3))
                    entry = try o.string("entry") ?? entry
                    if call.lua.rawGet(at: 3, key: "geometry") != .nil {
                        geometry = try call.object(call.lua.absIndex(-1), geometryClass).geometry
                    }
                    call.lua.pop()
                }
                try wrap { try PeakFinder.write(box.peaks, to: f, entry: entry, first: box.first, last: box.last, threshold: box.threshold, geometry: geometry) }
                return 0
            },
            LuaMethodDecl("add", "p:add(frames, first)", "a peak finder: searches the next frames (in order)") { call, box in
                guard let finder = box.finder else { throw LuaError.runtime("these peaks are final; crystal.peak_finder makes an incremental finder") }
                let a = try array(call, 2, what: "frames")
                let first = try call.integer(3)
                try wrap { try finder.add(a, firstFrame: first) }
                box.first = finder.firstFrame ?? first
                box.last = (finder.firstFrame ?? first) + finder.framesSeen
                return 0
            },
            LuaMethodDecl("finish", "p:finish() -> p", "a peak finder: refines the peaks still open; p then holds every peak") { call, box in
                guard let finder = box.finder else { throw LuaError.runtime("these peaks are already final") }
                box.peaks = try wrap { try finder.finish() }
                call.lua.pushValue(at: 1)
                return 1
            },
        ],
        metamethods: [
            "__len": { call in
                call.lua.push(try call.object(1, peaksClass).peaks.count)
                return 1
            },
        ],
        index: { call, box in
            let lua = call.lua
            if lua.type(at: 2) == .number {
                let i = try call.integer(2)
                guard i >= 1, i <= box.peaks.count else { return 0 }
                let p = box.peaks[i - 1]
                lua.newTable(recordCount: 8)
                for (k, v) in zip(peakKeys, [p.x, p.y, p.z, p.sigx, p.sigy, p.sigz, p.intensity, p.background]) {
                    lua.push(v); lua.rawSet(at: -2, key: k)
                }
                return 1
            }
            let key = try call.string(2)
            let column: [Double]
            switch key {
            case "x": column = box.peaks.map(\.x)
            case "y": column = box.peaks.map(\.y)
            case "z": column = box.peaks.map(\.z)
            case "sigx": column = box.peaks.map(\.sigx)
            case "sigy": column = box.peaks.map(\.sigy)
            case "sigz": column = box.peaks.map(\.sigz)
            case "intensity": column = box.peaks.map(\.intensity)
            case "background": column = box.peaks.map(\.background)
            case "threshold": lua.push(box.threshold); return 1
            default: return 0
            }
            try ArrayModule.push(try wrap { try NDArray.from(column, shape: [column.count]) }, lua)
            return 1
        },
        completions: { _ in peakKeys },
        describe: { box in "crystal.Peaks: \(box.peaks.count) peaks (threshold \(box.threshold))" })

    // MARK: functions

    static func finderOptions(_ call: LuaCall, _ i: Int32, extra: [String]) throws -> (PeakFinder.Options, Options?) {
        var o = PeakFinder.Options()
        guard !call.isNoneOrNil(i) else { return (o, nil) }
        try call.options(i, known: ["threshold", "min_pixels", "link_distance", "min_sigma"] + extra)
        let t = Options(call: call, index: call.lua.absIndex(i))
        if let v = try t.number("threshold") { o.threshold = v }
        if let v = try t.integer("min_pixels") { o.minPixels = v }
        if let v = try t.number("link_distance") { o.linkDistance = v }
        if let v = try t.number("min_sigma") { o.minSigma = v }
        return (o, t)
    }

    /// The mask option, or the file's pixel_mask (entry/instrument/detector) if there is one.
    static func mask(_ t: Options?, for f: NXField) throws -> NDArray? {
        if let t, t.boolean("mask") == false { return nil }
        if let t, let m = try t.array("mask") { return m }
        var node: NXNode = f
        while node.path != "/" {
            node = node.parent
            if let g = node as? NXGroup, g.nxclass == "NXentry",
               let m = try wrap({ try g.resolve("instrument/detector/pixel_mask") }) as? NXField,
               case .array(let a) = try wrap({ try m.read(nil) }) {
                return a
            }
        }
        return nil
    }

    /// The `parameters` option of crystal.refine: a list of geometry value names.
    static func geometryParameters(_ call: LuaCall, _ i: Int32) throws -> [Refinement.GeometryParameter]? {
        let lua = call.lua
        defer { lua.pop() }
        let known = Refinement.GeometryParameter.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
        switch lua.rawGet(at: lua.absIndex(i), key: "parameters") {
        case .nil: return nil
        case .table:
            var out: [Refinement.GeometryParameter] = []
            let t = lua.absIndex(-1)
            var k = 1
            while true {
                defer { lua.pop() }
                let type = lua.rawGet(at: t, index: k)
                if type == .nil { break }
                guard type == .string, let name = lua.toString(at: -1) else { throw LuaError.argument(i, "parameters must be a list of names (\(known))") }
                guard let p = Refinement.GeometryParameter(rawValue: name) else {
                    throw LuaError.argument(i, "parameters: unknown geometry value \"\(name)\" (known: \(known))")
                }
                out.append(p)
                k += 1
            }
            return out
        default: throw LuaError.argument(i, "parameters must be a list of names (\(known))")
        }
    }

    static func frameRange(_ t: Options?) throws -> Range<Int>? {
        guard let t, let r = try t.numbers("frames", count: 2) else { return nil }
        return Int(r[0])..<Int(r[1])
    }

    static func progress(_ what: String, _ f: NXField) -> (Int, Int) throws -> Void {
        NeXusModule.progress(what, f)
    }

    static let declaration = LuaModuleDecl(
        "crystal",
        summary: "single-crystal analysis: geometry (pixel -> Q -> hkl), simulated scans, frame statistics, 3-D peak search",
        help: """
        local g = crystal.geometry(f)                  -- from a stacked or NXRefine file (or a table)
        local h, k, l = g:hkl(700, 800, 120)           -- pixel x, y, frame -> hkl (needs cell and U)
        local s = crystal.simulate{geometry = g, frames = 90, modules = {2, 1}}
        local st = crystal.frame_stats(f.entry.data.data)      -- as NXRefine's nxmax
        local p = crystal.find_peaks(f.entry.data.data, {threshold = 500})   -- as nxfind
        st:write(f); p:write(f, {geometry = g}); g:write(f)   -- NXRefine's layout (file opened "rw")
        Conventions (NXRefine's): x column, y row, z frame (0-based, centres at integers),
        lengths in mm, angles in degrees, q in 1/Angstrom without 2 pi. See docs/crystal.md.
        """,
        functions: [
            LuaFunctionDecl("geometry", "crystal.geometry(file | path | table [, entry]) -> g",
                            "the scan geometry: read from a file, or made from a table of values",
                            help: """
                            Files: NXRefine's layout (/f1/instrument/detector, /f1/instrument/goniometer,
                            the cell in /entry/sample) or nxlua stack's (/entry/instrument/detector and the
                            per-frame phi in /entry/instrument/NDAttributes, taken as the start of each
                            exposure); entry picks one ("f2"). Units follow @units.
                            Table keys: distance, pixel_size, beam_center_x, beam_center_y, yaw, pitch,
                            roll, detector_orientation, theta, omega, chi, phi_start, phi_step, wavelength,
                            sample_offset {xs, ys, zs}, unit_cell {a, b, c, alpha, beta, gamma},
                            orientation_matrix (3 x 3), frames, frame_shape {rows, columns}, phi_frames,
                            omega_frames, chi_frames (per-frame angles, arrays or tables; false removes them).
                            Per-frame angles are read from the stacker's NDAttributes (phi, omega, chi with
                            their increments, at the middle of each exposure), from NXRefine's goniometer
                            arrays and from NXmx chains whose rotations move, when they are not a uniform
                            phi rotation at fixed omega and chi.
                            """) { call in
                if call.lua.type(at: 1) == .table, NeXusModule.localGroup(at: 1, in: call.lua) == nil {
                    var g = CrystalGeometry()
                    try apply(call, 1, to: &g)
                    geometryClass.push(GeometryBox(g), to: call.lua)
                    return 1
                }
                let f = try file(call, 1)
                let entry = try call.optString(2)
                let g = try wrap { try CrystalGeometry.read(f, entry: entry) }
                geometryClass.push(GeometryBox(g), to: call.lua)
                return 1
            },
            LuaFunctionDecl("simulate", "crystal.simulate{geometry = g, ...} -> s",
                            "a simulated rotation scan of a crystal (Pilatus frames with gaps, dead and hot pixels, Poisson noise)",
                            help: """
                            options: geometry (with unit_cell and orientation_matrix; required), frames (100),
                            modules {rows, columns} of Pilatus modules ({8, 3}: a 2M), seed (1), mosaic
                            (0.1 deg, Gaussian sigma), spot_sigma (1 pixel), intensity {min, max} (log-uniform,
                            {1e3, 1e6}), background (20 counts near the beam), dead_pixels (150), hot_pixels (20),
                            exposure_time (0.1 s), folder and prefix (write the CBF files at once), stack (a path:
                            write the frames straight into a NeXus stack as nxlua stack would, see s:write_stack).
                            The same options give the same frames.
                            """) { call in
                try call.options(1, known: ["geometry", "frames", "modules", "seed", "mosaic", "spot_sigma", "intensity",
                                            "background", "dead_pixels", "hot_pixels", "exposure_time", "folder", "prefix", "stack"])
                var o = CrystalSimulation.Options()
                let lua = call.lua
                guard lua.rawGet(at: 1, key: "geometry") != .nil else { lua.pop(); throw LuaError.argument(1, "geometry is required (crystal.geometry{...} with unit_cell and orientation_matrix)") }
                o.geometry = try call.object(lua.absIndex(-1), geometryClass).geometry
                lua.pop()
                let t = Options(call: call, index: 1)
                if let v = try t.integer("frames") { o.frames = v }
                if let v = try t.numbers("modules", count: 2) { o.modules = (Int(v[0]), Int(v[1])) }
                if let v = try t.integer("seed") { o.seed = UInt64(bitPattern: Int64(v)) }
                if let v = try t.number("mosaic") { o.mosaic = v }
                if let v = try t.number("spot_sigma") { o.spotSigma = v }
                if let v = try t.numbers("intensity", count: 2) { o.intensity = (v[0], v[1]) }
                if let v = try t.number("background") { o.background = v }
                if let v = try t.integer("dead_pixels") { o.deadPixels = v }
                if let v = try t.integer("hot_pixels") { o.hotPixels = v }
                if let v = try t.number("exposure_time") { o.exposureTime = v }
                let folder = try t.string("folder"), prefix = try t.string("prefix") ?? "scan"
                let sim = try wrap { try CrystalSimulation(o) }
                if let folder {
                    if PlotModule.isSandboxed(lua) { throw LuaError.runtime("writing frames is not available here (no files)") }
                    let bar = ProgressBar(label: "simulate", total: o.frames, unit: "frames")
                    _ = try wrap { try sim.writeCBF(folder: folder, prefix: prefix) { done in try CoreModule.checkStopped("simulate"); bar.update(done) } }
                    bar.finish()
                }
                if let stack = try t.string("stack") {
                    _ = try writeStack(sim, to: stack, prefix: prefix, quiet: false, lua: lua)
                }
                simulationClass.push(SimulationBox(sim), to: lua)
                return 1
            },
            LuaFunctionDecl("frame_stats", "crystal.frame_stats(frames [, g] [, options]) -> st",
                            "one streaming pass over a stack (as NXRefine's nxmax): frame sums, summed and maximum images, maximum, pixel mask",
                            help: """
                            frames: the (frames, rows, columns) field (or an NXentry / NXdata holding it).
                            options: mask (ndarray or field, 1 = masked; default the file's
                            entry/instrument/detector/pixel_mask; false for none), frames {first, last}
                            (0-based, last excluded), geometry (or g as the second argument: adds the radial
                            sum, st.radial_q and st.radial_sum, written by st:write as frame_sums/radial_sum),
                            radial_bins, polarization (0.99; see st:radial). Blocks of ~64 MB are read ahead on
                            a second thread and folded on every core; Ctrl-C stops it; a bar shows on a terminal.
                            """) { call in
                let f = try field(call, 1)
                var t: Options?
                // crystal.frame_stats(frames, g [, options]): the geometry adds the radial sum
                var geometry = geometryClass.object(at: 2, in: call.lua)?.geometry
                let at: Int32 = geometry != nil ? 3 : 2
                if !call.isNoneOrNil(at) {
                    try call.options(at, known: ["mask", "frames", "geometry", "radial_bins", "polarization"])
                    t = Options(call: call, index: call.lua.absIndex(at))
                    if call.lua.rawGet(at: call.lua.absIndex(at), key: "geometry") != .nil {
                        geometry = try call.object(call.lua.absIndex(-1), geometryClass).geometry
                    }
                    call.lua.pop()
                }
                let m = try mask(t, for: f)
                let frames = try frameRange(t)
                let (bins, polarization) = try radialOptions(t)
                let st = try wrap { try FrameStatistics.compute(f, mask: m, frames: frames, progress: progress("frame stats", f)) }
                let box = StatsBox(st)
                if let geometry { box.radial = try wrap { try st.radialSum(geometry: geometry, bins: bins, polarization: polarization) } }
                statsClass.push(box, to: call.lua)
                return 1
            },
            LuaFunctionDecl("frame_accumulator", "crystal.frame_accumulator(rows, columns [, mask]) -> st",
                            "empty frame statistics to feed block by block (st:add(frames, first)), e.g. from a macro on each frames.ready") { call in
                let rows = try call.integer(1), cols = try call.integer(2)
                let m = call.isNoneOrNil(3) ? nil : try array(call, 3, what: "mask")
                statsClass.push(StatsBox(try wrap { try FrameStatistics(rows: rows, columns: cols, mask: m) }), to: call.lua)
                return 1
            },
            LuaFunctionDecl("find_peaks", "crystal.find_peaks(frames [, options]) -> p",
                            "3-D peak search over a stack (as NXRefine's nxfind), streaming",
                            help: """
                            options: threshold (50000, counts), min_pixels (10: the separation of maxima and the
                            half-width of the refinement box), link_distance (10 pixels), min_sigma (0.5),
                            mask (default the file's entry/instrument/detector/pixel_mask; false for none),
                            frames {first, last}. An error says so when no peak is above the threshold.
                            """) { call in
                let f = try field(call, 1)
                let (o, t) = try finderOptions(call, 2, extra: ["mask", "frames"])
                let m = try mask(t, for: f)
                let frames = try frameRange(t)
                let (peaks, top) = try wrap { try PeakFinder.search(f, mask: m, options: o, frames: frames, progress: progress("find peaks", f)) }
                if peaks.isEmpty {
                    throw LuaError.runtime("\(f.file.path): \(f.path): no peaks above the threshold \(number(o.threshold)) (the largest unmasked pixel is \(number(top))); lower the threshold")
                }
                let shape = try wrap { try f.shape }
                let box = PeaksBox(peaks, finder: nil, threshold: o.threshold)
                box.first = frames?.lowerBound ?? 0
                box.last = frames?.upperBound ?? shape[0]
                peaksClass.push(box, to: call.lua)
                return 1
            },
            LuaFunctionDecl("orient", "crystal.orient(peaks, g [, options]) -> result",
                            "finds the orientation matrix U from the peaks and the cell (Busing-Levy from pairs of peaks, the U indexing most peaks, then fitted to all indexed peaks), sets g's U",
                            help: """
                            options: cell {a, b, c, alpha, beta, gamma} (default g.unit_cell), tolerance (0.05 1/A,
                            NXRefine's hkl_tolerance), angle_tolerance (0.5 deg), candidates (8 lowest-angle peaks
                            tried in pairs). result: {u = 3 x 3 ndarray, fraction = indexed share, indexed = n,
                            peaks = n, rms = residual of the indexed peaks (1/A)}. U is fitted to every indexed peak
                            (least squares, a rotation); the cell and goniometer offsets are not refined yet.
                            """) { call in
                let peaks = try call.object(1, peaksClass).peaks
                let box = try call.object(2, geometryClass)
                var g = box.geometry
                var tolerance = 0.05, angle = 0.5, candidates = 8
                if !call.isNoneOrNil(3) {
                    try call.options(3, known: ["cell", "tolerance", "angle_tolerance", "candidates"])
                    let t = Options(call: call, index: call.lua.absIndex(3))
                    if let v = try t.numbers("cell", count: 6) { g.unitCell = UnitCell(a: v[0], b: v[1], c: v[2], alpha: v[3], beta: v[4], gamma: v[5]) }
                    tolerance = try t.number("tolerance") ?? tolerance
                    angle = try t.number("angle_tolerance") ?? angle
                    candidates = try t.integer("candidates") ?? candidates
                }
                guard let cell = g.unitCell else { throw LuaError.runtime("crystal.orient: no unit cell: give {cell = {a, b, c, alpha, beta, gamma}} or set g.unit_cell") }
                let t = try wrap { try g.transform() }
                let gs = peaks.map { t.scatteringVector(x: $0.x, y: $0.y, z: $0.z) }
                let found = try wrap { try Orientation.orient(gs, cell: cell, tolerance: tolerance, angleTolerance: angle, candidates: candidates) }
                g.unitCell = cell
                g.orientationMatrix = found.u
                box.geometry = g
                let lua = call.lua
                lua.newTable(recordCount: 5)
                try pushMatrix(found.u, lua); lua.rawSet(at: -2, key: "u")
                lua.push(found.indexing.fraction); lua.rawSet(at: -2, key: "fraction")
                lua.push(found.indexing.indexed.filter { $0 }.count); lua.rawSet(at: -2, key: "indexed")
                lua.push(peaks.count); lua.rawSet(at: -2, key: "peaks")
                lua.push(found.indexing.rms); lua.rawSet(at: -2, key: "rms")
                return 1
            },
            LuaFunctionDecl("refine", "crystal.refine(peaks, g [, options]) -> result",
                            "least-squares refinement of the lattice parameters (by crystal system) and U from the indexed peaks (Levenberg-Marquardt, libcminpack); sets g's cell and U",
                            help: """
                            Needs g.unit_cell and g.orientation_matrix (crystal.orient sets both). options:
                            symmetry ("cubic", "tetragonal", "orthorhombic", "hexagonal", "monoclinic" (b unique),
                            "triclinic"; default "triclinic"), tolerance (0.05 1/A: which peaks are indexed).
                            result: {cell = {a, b, c, alpha, beta, gamma}, u = 3 x 3, rms_before, rms (1/A),
                            used = peaks fitted (those over 3 times the median residual left out), peaks = n}.
                            Geometry offsets too (as NXRefine's refine_hkls): parameters = a list of
                            "distance", "beam_center_x", "beam_center_y", "yaw", "pitch", "roll", "omega",
                            "chi", "theta", "phi_start", "wavelength" (omega, chi and phi shift per-frame
                            angles as a whole); lattice = false keeps the cell, orientation = false keeps U;
                            max_evaluations caps each pass. The result adds geometry = {name = refined},
                            geometry_before and evaluations; g gets every refined value. A refinement that
                            does not converge is an error with the values where it stopped.
                            """) { call in
                let peaks = try call.object(1, peaksClass).peaks
                let box = try call.object(2, geometryClass)
                var g = box.geometry
                var symmetry = Refinement.Symmetry.triclinic, tolerance = 0.05
                var parameters: [Refinement.GeometryParameter]?, lattice = true, orientation = true, budget: Int?
                if !call.isNoneOrNil(3) {
                    try call.options(3, known: ["symmetry", "tolerance", "parameters", "lattice", "orientation", "max_evaluations"])
                    parameters = try geometryParameters(call, 3)
                    let options = Options(call: call, index: call.lua.absIndex(3))
                    lattice = options.boolean("lattice") ?? true
                    orientation = options.boolean("orientation") ?? true
                    budget = try options.integer("max_evaluations")
                    if let b = budget, b < 1 { throw LuaError.argument(3, "max_evaluations must be >= 1, got \(b)") }
                    let t = Options(call: call, index: call.lua.absIndex(3))
                    if let name = try t.string("symmetry") {
                        guard let sym = Refinement.Symmetry(rawValue: name) else {
                            throw LuaError.argument(3, "symmetry must be one of \(Refinement.Symmetry.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")), got \"\(name)\"")
                        }
                        symmetry = sym
                    }
                    tolerance = try t.number("tolerance") ?? tolerance
                }
                guard let cell = g.unitCell, let u = g.orientationMatrix else {
                    throw LuaError.runtime("crystal.refine: g needs a unit cell and an orientation matrix (crystal.orient finds U)")
                }
                let t = try wrap { try g.transform() }
                let gs = peaks.map { t.scatteringVector(x: $0.x, y: $0.y, z: $0.z) }
                let ix = try wrap { try Orientation.index(gs, ub: u * cell.matrixB(), tolerance: tolerance) }
                if parameters != nil || !lattice || !orientation || budget != nil {
                    // the geometry with the cell and U
                    let fit = try wrap {
                        try Refinement.refine(peaks: peaks.map { Vector3($0.x, $0.y, $0.z) }, hkl: ix.hkl, use: ix.indexed, geometry: g,
                                              symmetry: symmetry, lattice: lattice, orientation: orientation,
                                              parameters: parameters ?? [], maxEvaluations: budget)
                    }
                    box.geometry = fit.geometry
                    let lua = call.lua
                    lua.newTable(recordCount: 9)
                    pushNumbers(fit.geometry.unitCell!.parameters, lua); lua.rawSet(at: -2, key: "cell")
                    try pushMatrix(fit.geometry.orientationMatrix, lua); lua.rawSet(at: -2, key: "u")
                    lua.push(fit.rmsBefore); lua.rawSet(at: -2, key: "rms_before")
                    lua.push(fit.rmsAfter); lua.rawSet(at: -2, key: "rms")
                    lua.push(fit.used); lua.rawSet(at: -2, key: "used")
                    lua.push(peaks.count); lua.rawSet(at: -2, key: "peaks")
                    lua.push(fit.evaluations); lua.rawSet(at: -2, key: "evaluations")
                    lua.newTable(recordCount: fit.changes.count)
                    for c in fit.changes { lua.push(c.after); lua.rawSet(at: -2, key: c.parameter.rawValue) }
                    lua.rawSet(at: -2, key: "geometry")
                    lua.newTable(recordCount: fit.changes.count)
                    for c in fit.changes { lua.push(c.before); lua.rawSet(at: -2, key: c.parameter.rawValue) }
                    lua.rawSet(at: -2, key: "geometry_before")
                    return 1
                }
                let r = try wrap { try Refinement.refine(gs, hkl: ix.hkl, use: ix.indexed, cell: cell, u: u, symmetry: symmetry) }
                g.unitCell = r.cell
                g.orientationMatrix = r.u
                box.geometry = g
                let lua = call.lua
                lua.newTable(recordCount: 6)
                pushNumbers(r.cell.parameters, lua); lua.rawSet(at: -2, key: "cell")
                try pushMatrix(r.u, lua); lua.rawSet(at: -2, key: "u")
                lua.push(r.rmsBefore); lua.rawSet(at: -2, key: "rms_before")
                lua.push(r.rmsAfter); lua.rawSet(at: -2, key: "rms")
                lua.push(r.used); lua.rawSet(at: -2, key: "used")
                lua.push(peaks.count); lua.rawSet(at: -2, key: "peaks")
                return 1
            },
            LuaFunctionDecl("peaks", "crystal.peaks(group) -> p", "peaks read from an NXreflections group in nxfind's layout (f.entry.peaks, or NXRefine's f.f1.peaks)") { call in
                guard let g = NeXusModule.localGroup(at: 1, in: call.lua) else { throw NeXusModule.typeError(call, 1, expected: "NXreflections group") }
                let peaks = try wrap { try PeakFinder.read(g) }
                let box = PeaksBox(peaks, finder: nil, threshold: (try? g.attribute("threshold")).flatMap { v -> Double? in
                    if case .array(let a) = v { return a.doubles().first } else { return nil } } ?? 0)
                peaksClass.push(box, to: call.lua)
                return 1
            },
            LuaFunctionDecl("peak_finder", "crystal.peak_finder(rows, columns [, options]) -> p",
                            "an incremental peak search: p:add(frames, first) in order, then p:finish()",
                            help: "options: threshold, min_pixels, link_distance, min_sigma, mask (as crystal.find_peaks)") { call in
                let rows = try call.integer(1), cols = try call.integer(2)
                let (o, t) = try finderOptions(call, 3, extra: ["mask"])
                let m = try t?.array("mask")
                let finder = try wrap { try PeakFinder(rows: rows, columns: cols, mask: m, options: o) }
                peaksClass.push(PeaksBox([], finder: finder, threshold: o.threshold), to: call.lua)
                return 1
            },
            transformFunction,
            transformerFunction,
            gridFunction,
            mergeFunction,
            laueFunction,
            symmetrizeFunction,
            pdfFunction,
        ],
        classes: [geometryClass, simulationClass, statsClass, peaksClass, transformerClass])
}
