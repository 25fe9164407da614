import Crystal
import LuaBridge
import NDArray
import NeXus

/// crystal.laue, crystal.symmetrize and crystal.pdf: thin bindings over the Crystal core's
/// LaueGroup and ReciprocalPDF, on a transform in memory or in a file.
extension CrystalModule {
    /// A transform argument: crystal.transform's result (or symmetrize's) {v, n, grid}, a
    /// transform NXdata, a file or entry group (its entry/transform), or a path. `geometry`
    /// (a crystal.geometry) supplies the cell of a table.
    static func transformInput(_ call: LuaCall, _ i: Int32) throws -> (TransformGrid, String) {
        let lua = call.lua
        if let g = NeXusModule.localGroup(at: i, in: lua) {
            let t: NXGroup
            if g.nxclass == "NXdata" { t = g } else {
                guard let r = try wrap({ try g.resolve("entry/transform") ?? (try g.resolve("transform")) }) as? NXGroup else {
                    throw LuaError.runtime("\(g.file.path): \(g.path): no transform group (looked for entry/transform and transform)")
                }
                t = r
            }
            return (try wrap { try TransformGrid.read(t) }, "\(t.file.path)#\(t.path)")
        }
        if lua.type(at: i) == .string {
            if PlotModule.isSandboxed(lua) { throw LuaError.runtime("opening files by name is not available here") }
            let path = try call.string(i)
            let f = try wrap { try NXFile(path: path, mode: .read) }
            defer { try? f.close() }
            guard let t = try wrap({ try f.root.resolve("/entry/transform") }) as? NXGroup else {
                throw LuaError.runtime("\(path): no /entry/transform")
            }
            return (try wrap { try TransformGrid.read(t) }, "\(path)#/entry/transform")
        }
        guard lua.type(at: i) == .table else { throw NeXusModule.typeError(call, i, expected: "transform ({v, n, grid}, a group, a file or a path)") }
        var arrays: [NDArray] = []
        for key in ["v", "n"] {
            defer { lua.pop() }
            _ = lua.rawGet(at: i, key: key)
            if let a = ArrayModule.cls.object(at: lua.absIndex(-1), in: lua) {
                arrays.append(a.array)
            } else if let f = NeXusModule.readableField(at: lua.absIndex(-1), in: lua) {
                // with an output, crystal.transform's v and n are the output's fields
                guard case .array(let a) = try wrap({ try f.read(nil) }) else {
                    throw LuaError.runtime("\(f.location): \(f.path): \(key) of a transform must be numeric")
                }
                arrays.append(try wrap { try a.contiguous(as: .float64) })
            } else {
                throw LuaError.argument(i, "a transform table needs \(key) (an ndarray or a field), as crystal.transform returns")
            }
        }
        defer { lua.pop() }
        guard lua.rawGet(at: i, key: "grid") == .table else { throw LuaError.argument(i, "a transform table needs its grid {origin, step, size}") }
        let grid = try CrystalModule.grid(call, lua.absIndex(-1))
        return (TransformGrid(v: arrays[0], n: arrays[1], grid: grid), "a transform in memory")
    }

    /// The geometry option's cell into t (a table's transform has none of its own).
    static func cellOption(_ call: LuaCall, _ o: Int32, into t: inout TransformGrid) throws {
        let lua = call.lua
        defer { lua.pop() }
        if lua.rawGet(at: o, key: "geometry") != .nil {
            let g = try call.object(lua.absIndex(-1), geometryClass).geometry
            guard let cell = g.unitCell else { throw LuaError.runtime("the geometry has no unit cell") }
            try wrap { try t.setCell(cell) }
        }
    }

    static func pushTransform(_ t: TransformGrid, _ lua: Lua) throws {
        try ArrayModule.push(t.v, lua, view: false); lua.rawSet(at: -2, key: "v")
        try ArrayModule.push(t.n, lua, view: false); lua.rawSet(at: -2, key: "n")
        pushGrid(t.grid, lua); lua.rawSet(at: -2, key: "grid")
    }

    static let laueFunction = LuaFunctionDecl(
        "laue", "crystal.laue(name) -> operators",
        "the operators of a Laue class as integer 3 x 3 matrices acting on (h, k, l): -1, 2/m, mmm, 4/m, 4/mmm, -3, -3m1 (-3m), -31m, 6/m, 6/mmm, m-3, m-3m; trigonal and hexagonal ones on hexagonal axes") { call in
            let g = try wrap { try LaueGroup(try call.string(1)) }
            let lua = call.lua
            lua.newTable(arrayCount: g.order)
            for (i, m) in g.operators.enumerated() {
                lua.newTable(arrayCount: 3)
                for r in 0..<3 {
                    lua.newTable(arrayCount: 3)
                    for c in 0..<3 { lua.push(m[r * 3 + c]); lua.rawSet(at: -2, index: c + 1) }
                    lua.rawSet(at: -2, index: r + 1)
                }
                lua.rawSet(at: -2, index: i + 1)
            }
            return 1
        }

    static let symmetrizeFunction = LuaFunctionDecl(
        "symmetrize", "crystal.symmetrize(transform, laue [, options]) -> result",
        "sums v and n over the equivalent voxels of a Laue class, so v / n is the mean over symmetry-equivalent measurements",
        help: """
        transform: crystal.transform's result {v, n, grid}, a transform group (f.entry.transform),
        a file or a path (its entry/transform). laue: -1, 2/m (b unique), mmm, 4/m, 4/mmm, -3,
        -3m1 (or -3m), -31m, 6/m, 6/mmm, m-3, m-3m (crystal.laue lists the operators). Each
        voxel gets the sum of v (and of n) at its images under every operator that fall in the
        grid, so the result is exactly invariant under the group. The grid must map onto
        itself: equal steps on axes an operator mixes and origins whole steps from 0 (a grid
        symmetric about 0 is). options: output (a path: a new file with entry/transform in
        NXRefine's layout), geometry (the cell written with a table's transform).
        result: {v, n, grid, order, seconds, output}.
        """) { call in
            let lua = call.lua
            var (t, source) = try transformInput(call, 1)
            let group = try wrap { try LaueGroup(try call.string(2)) }
            var output: String?
            if !call.isNoneOrNil(3) {
                try call.options(3, known: ["output", "geometry"])
                let o = Options(call: call, index: lua.absIndex(3))
                output = try o.string("output")
                try cellOption(call, lua.absIndex(3), into: &t)
            }
            if output != nil, PlotModule.isSandboxed(lua) { throw LuaError.runtime("writing a transform is not available here (no files)") }
            var r = t
            let started = nxTime()
            try wrap {
                r.v = try group.symmetrize(t.v, grid: t.grid)
                r.n = try group.symmetrize(t.n, grid: t.grid)
            }
            let seconds = nxTime() - started
            if let output {
                try wrap {
                    let file = try NXFile(path: output, mode: .write)
                    defer { try? file.close() }
                    try r.write(file, command: "nxlua crystal.symmetrize \(source) \(group.name) (nxlua \(CoreModule.version))")
                }
            }
            lua.newTable(recordCount: 5)
            try pushTransform(r, lua)
            lua.push(group.order); lua.rawSet(at: -2, key: "order")
            lua.push(seconds); lua.rawSet(at: -2, key: "seconds")
            if let output { lua.push(output); lua.rawSet(at: -2, key: "output") }
            return 1
        }

    static let pdfFunction = LuaFunctionDecl(
        "pdf", "crystal.pdf(transform [, options]) -> result",
        "the 3-D total and difference PDF of a transform: Bragg peaks punched and filled, a Tukey taper, FFTW",
        help: """
        transform: as crystal.symmetrize's. options: punch (radius in r.l.u. of the spheres
        removed around every integer h, k, l; 0.2; 0 none), shell (the width of the shell
        beyond the punch whose mean of measured voxels fills each hole; the punch radius),
        taper (Tukey window parameter per axis, the tapered fraction; 0.1; 0 none), output (a
        path: a new file with entry/total_pdf and entry/difference_pdf, NXdata against axes x,
        y, z in Angstrom), geometry (the cell of a table's transform; without a cell the axes
        are in lattice units). The data is v / n (0 where n = 0). result: {total, difference
        (real parts, (z, y, x)), total_imag, difference_imag, total_input, difference_input
        (the arrays transformed), x, y, z (ndarrays, Angstrom or lattice units), units, punched
        (voxels), holes (filled), seconds, output}.
        """) { call in
            let lua = call.lua
            var (t, source) = try transformInput(call, 1)
            var options = ReciprocalPDF.Options()
            var output: String?
            if !call.isNoneOrNil(2) {
                try call.options(2, known: ["punch", "shell", "taper", "output", "geometry"])
                let o = Options(call: call, index: lua.absIndex(2))
                options.punch = try o.number("punch") ?? options.punch
                options.shell = try o.number("shell")
                options.taper = try o.number("taper") ?? options.taper
                output = try o.string("output")
                try cellOption(call, lua.absIndex(2), into: &t)
            }
            if output != nil, PlotModule.isSandboxed(lua) { throw LuaError.runtime("writing a PDF is not available here (no files)") }
            let started = nxTime()
            let r = try wrap { try ReciprocalPDF.run(v: t.v, n: t.n, grid: t.grid, options: options) }
            let seconds = nxTime() - started
            let lengths = try wrap { try t.directLengths() }
            if let output {
                try wrap {
                    let file = try NXFile(path: output, mode: .write)
                    defer { try? file.close() }
                    try ReciprocalPDF.write(r, to: file, lengths: lengths,
                                            command: "nxlua crystal.pdf \(source) punch \(options.punch) taper \(options.taper) (nxlua \(CoreModule.version))")
                }
            }
            lua.newTable(recordCount: 14)
            for (key, a) in [("total", r.total.re), ("difference", r.difference.re), ("total_imag", r.total.im),
                             ("difference_imag", r.difference.im), ("total_input", r.totalInput), ("difference_input", r.differenceInput)] {
                try ArrayModule.push(a, lua, view: false); lua.rawSet(at: -2, key: key)
            }
            for (key, i) in [("x", 0), ("y", 1), ("z", 2)] {
                let values = r.axes[i].map { $0 * (lengths?[i] ?? 1) }
                try ArrayModule.push(try wrap { try NDArray.from(values, shape: [values.count]) }, lua, view: false)
                lua.rawSet(at: -2, key: key)
            }
            lua.push(lengths == nil ? "lattice units" : "Angstrom"); lua.rawSet(at: -2, key: "units")
            lua.push(r.punched); lua.rawSet(at: -2, key: "punched")
            lua.push(r.holes); lua.rawSet(at: -2, key: "holes")
            lua.push(seconds); lua.rawSet(at: -2, key: "seconds")
            if let output { lua.push(output); lua.rawSet(at: -2, key: "output") }
            return 1
        }
}
