#if canImport(Glibc)
import Glibc
#endif
import Crystal
import LuaBridge
import NDArray
import NeXus

/// crystal.transform and crystal.grid: the transform to reciprocal space (thin: the
/// Crystal core's ReciprocalTransform does the work).
extension CrystalModule {
    /// The grid option: {origin = {h, k, l}, step = {...}, size = {...}} or NXRefine's
    /// {start = {...}, stop = {...}, step = {...}}.
    static func grid(_ call: LuaCall, _ t: Int32) throws -> ReciprocalGrid {
        try call.options(t, known: ["origin", "step", "size", "start", "stop"])
        let o = Options(call: call, index: call.lua.absIndex(t))
        guard let step = try o.numbers("step", count: 3) else { throw LuaError.argument(t, "grid: step {dh, dk, dl} is required") }
        if let start = try o.numbers("start", count: 3) {
            guard let stop = try o.numbers("stop", count: 3) else { throw LuaError.argument(t, "grid: start needs stop {h, k, l}") }
            return try wrap { try ReciprocalGrid(start: start, stop: stop, step: step) }
        }
        guard let origin = try o.numbers("origin", count: 3), let size = try o.numbers("size", count: 3) else {
            throw LuaError.argument(t, "grid: give origin, step and size (or start, stop and step), each {h, k, l}")
        }
        guard size.allSatisfy({ $0 == $0.rounded() && $0 >= 1 && $0 < 1e7 }) else { throw LuaError.argument(t, "grid: size must be 3 positive integers") }
        return try wrap { try ReciprocalGrid(origin: origin, step: step, size: size.map { Int($0) }) }
    }

    static func pushGrid(_ g: ReciprocalGrid, _ lua: Lua) {
        lua.newTable(recordCount: 4)
        pushNumbers(g.origin, lua); lua.rawSet(at: -2, key: "origin")
        pushNumbers(g.step, lua); lua.rawSet(at: -2, key: "step")
        lua.newTable(arrayCount: 3)
        for (i, n) in g.size.enumerated() { lua.push(n); lua.rawSet(at: -2, index: i + 1) }
        lua.rawSet(at: -2, key: "size")
        pushNumbers(g.stop, lua); lua.rawSet(at: -2, key: "stop")
    }

    /// A per-frame option (weights, monitor): an ndarray, a table or a field.
    static func perFrame(_ t: Options, _ key: String) throws -> [Double]? {
        guard let a = try t.array(key) else { return nil }
        guard a.ndim == 1 else { throw LuaError.runtime("\(key) must have one value per frame, got shape \(NDArray.describe(a.shape))") }
        return a.doubles()
    }

    /// The grid option of crystal.transform and crystal.transformer, NXRefine's default without it.
    static func gridOption(_ call: LuaCall, _ t: Options?, geometry: CrystalGeometry, rows: Int, columns: Int) throws -> ReciprocalGrid {
        let lua = call.lua
        if let t, lua.rawGet(at: t.index, key: "grid") != .nil {
            defer { lua.pop() }
            return try CrystalModule.grid(call, lua.absIndex(-1))
        }
        if t != nil { lua.pop() }
        return try wrap { try ReciprocalGrid.nxrefineDefault(geometry: geometry, rows: rows, columns: columns) }
    }

    /// The per-pixel options crystal.transform and crystal.transformer share.
    static func corrections(_ t: Options, into o: inout ReciprocalTransform.Options, argument: Int32) throws {
        o.frameWeights = try perFrame(t, "weights")
        o.monitor = try perFrame(t, "monitor")
        o.transmission = try t.number("transmission") ?? 1
        o.polarization = try t.number("polarization")
        o.maxValue = try t.number("max_value")
        if let k = try t.integer("oversample") {
            guard k >= 1, k <= 16 else { throw LuaError.argument(argument, "oversample must be an integer from 1 to 16, got \(k)") }
            o.oversample = k
        }
    }

    /// The frames' entry (the NXentry above the field), for its defaults.
    static func entryGroup(of f: NXField) -> NXGroup? {
        var node: NXNode = f
        while node.path != "/" {
            node = node.parent
            if let g = node as? NXGroup, g.nxclass == "NXentry" { return g }
        }
        return nil
    }

    static let transformFunction = LuaFunctionDecl(
        "transform", "crystal.transform(frames [, options]) -> result",
        "the transform to reciprocal space (CCTW's, as NXRefine runs it): every unmasked pixel of every frame into the voxel of its (h, k, l), accumulating v and n",
        help: """
        frames: the stack's frames field (or its file or entry). options: geometry (default
        crystal.geometry of the frames' file; needs a unit cell and U), grid {origin = {h, k, l},
        step = {...}, size = {...}} or {start, stop, step} (default crystal.grid(g): NXRefine's
        +-0.8 Qmax per axis, steps 1-2-5), output (a path: a new file with entry/transform as
        NXRefine writes it), entry ("entry"), mask (2-D, 1 = masked; default the file's
        entry/instrument/detector/pixel_mask, false for none), mask3d (frames' shape: a field or
        array, nonzero = masked), weights (per frame; default the entry's data/monitor_weight
        if present), monitor (per frame: intensities divided by monitor / mean), transmission
        (1), polarization (nil: none; 0.99 divides by the factor of a horizontally polarized
        beam), max_value (pixels at or above are left out; negative pixels and the integer
        maximum always are), frames {first, last} (0-based, last excluded), block_mb (64),
        memory ("2GB" or bytes: the bound; with output the grid is held as bricks of 32^3 voxels,
        as many as fit, the others in the output; without, a grid above it is refused),
        checkpoint (30 s between checkpoints of output; 0 after every frame), resume (true: an
        interrupted transform in output with the same options continues; false starts anew),
        oversample (n: n x n sub-pixels per pixel, each I / n^2 and w / n^2).
        Per pixel of weight w (the frame's): v += I w / (monitor x transmission x polarization),
        n += w. result: {v, n (l, k, h): with output the output's fields entry/transform/data and
        weights (lazy, as nxload gives them), without it ndarrays; grid = {origin, step, size,
        stop}, frames, pixels (added), masked, outside (beyond the grid), seconds, output, bricks
        (of the grid, 0 in memory), bricks_held (at most at once), evictions (bricks pushed out
        to the output to make room), checkpoints, skipped (frames already in the output or outside
        frames), resumed (the frame it went on from)}. Ctrl-C
        checkpoints the output
        and stops (rerun to resume); a bar shows on a terminal.
        """) { call in
            let lua = call.lua
            let f: NXField
            if lua.type(at: 1) == .string {
                if PlotModule.isSandboxed(lua) { throw LuaError.runtime("opening files by name is not available here") }
                let file = try wrap { try NXFile(path: try call.string(1), mode: .read) }
                guard let d = try wrap({ try file.root.resolve("/entry/instrument/detector/data") ?? (try file.root.resolve("/entry/data/data")) }) as? NXField else {
                    throw LuaError.runtime("\(file.path): no frames: looked for /entry/instrument/detector/data and /entry/data/data")
                }
                f = d
            } else {
                f = try field(call, 1)
            }
            var t: Options?
            if !call.isNoneOrNil(2) {
                try call.options(2, known: ["geometry", "grid", "output", "entry", "mask", "mask3d", "weights", "monitor", "transmission",
                                            "polarization", "max_value", "frames", "block_mb",
                                            "memory", "checkpoint", "resume", "oversample"])
                t = Options(call: call, index: lua.absIndex(2))
            }
            var geometry: CrystalGeometry
            if let t, lua.rawGet(at: t.index, key: "geometry") != .nil {
                defer { lua.pop() }
                geometry = try call.object(lua.absIndex(-1), geometryClass).geometry
            } else {
                if t != nil { lua.pop() }
                geometry = try wrap { try CrystalGeometry.read(f.file) }
            }
            let shape = try wrap { try f.shape }
            guard shape.count == 3 else { throw LuaError.runtime("\(f.file.path): \(f.path): frames (frames, rows, columns) are needed, the field has shape \(NDArray.describe(shape))") }
            if geometry.unitCell == nil || geometry.orientationMatrix == nil {
                throw LuaError.runtime("crystal.transform: the geometry needs a unit cell and an orientation matrix U (crystal.orient finds U), got \(geometry.unitCell == nil ? "no cell" : "no U")")
            }
            var o = ReciprocalTransform.Options(grid: try gridOption(call, t, geometry: geometry, rows: shape[1], columns: shape[2]))
            if let m = try mask(t, for: f) {
                guard m.shape == [shape[1], shape[2]] else {
                    throw LuaError.runtime("\(f.file.path): \(f.path): the pixel mask has shape \(NDArray.describe(m.shape)), the frames (\(shape[1]), \(shape[2]))")
                }
                o.mask = m.doubles().map { $0 != 0 ? 1 : 0 }
            }
            var mask3d: (any NXReadableField)?
            var mask3dArray: NDArray?
            var settings = TransformJob.Settings()
            if let t {
                if lua.rawGet(at: t.index, key: "mask3d") != .nil {
                    if let mf = NeXusModule.readableField(at: lua.absIndex(-1), in: lua) { mask3d = mf } else {
                        mask3dArray = try array(call, lua.absIndex(-1), what: "mask3d")
                    }
                }
                lua.pop()
                try corrections(t, into: &o, argument: 2)
                settings = try jobSettings(t, argument: 2)
            }
            if o.frameWeights == nil, let e = entryGroup(of: f),
               let w = try wrap({ try e.resolve("data/monitor_weight") }) as? NXField,
               case .array(let a) = try wrap({ try w.read(nil) }) {
                o.frameWeights = a.doubles()
            }
            if let m = mask3dArray, m.shape != shape {
                throw LuaError.runtime("mask3d has shape \(NDArray.describe(m.shape)), the frames \(NDArray.describe(shape))")
            }
            if settings.output != nil, PlotModule.isSandboxed(lua) { throw LuaError.runtime("writing a transform is not available here (no files)") }
            let started = nxTime()
            settings.command = "nxlua crystal.transform \(f.file.path)#\(f.path) (nxlua \(CoreModule.version))"
            if let mf = mask3d { settings.mask3dName = "\(mf.location)#\(mf.path)" } else if mask3dArray != nil { settings.mask3dName = "an array" }
            let bar = progress("transform", f)
            let outcome: TransformJob.Outcome
            do {
                outcome = try TransformJob.run(f, geometry: geometry, options: o, mask3d: mask3d, mask3dArray: mask3dArray, settings: settings,
                                               shouldStop: { LuaInterrupt.isPending },
                                               progress: { done, total in try bar(done * shape[0] / max(1, total), shape[0]) })
            } catch let e as CrystalError where e.message.hasPrefix("interrupted: ") && LuaInterrupt.isPending {
                // Ctrl-C's hook replaces the error by "interrupted!": say how to resume first
                let note = Array("nxlua: crystal.transform \(e.message)\n".utf8)
                _ = note.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
                throw fail(e)
            } catch {
                throw fail(error)
            }
            try LuaInterrupt.check()
            try pushOutcome(outcome, settings: settings, seconds: nxTime() - started, lua)
            return 1
        }

    /// The options crystal.transform and crystal.transformer share for the job: output,
    /// entry, memory, checkpoint, resume, frames, block_mb.
    static func jobSettings(_ t: Options, argument: Int32) throws -> TransformJob.Settings {
        let lua = t.call.lua
        var settings = TransformJob.Settings()
        settings.frames = try frameRange(t)
        let blockMB = try t.integer("block_mb") ?? 64
        guard blockMB >= 1 else { throw LuaError.argument(argument, "block_mb must be >= 1, got \(blockMB)") }
        settings.blockBytes = blockMB << 20
        settings.output = try t.string("output")
        if settings.output?.isEmpty == true {
            throw LuaError.argument(argument, "output must name the NeXus file to write the transform into (an empty string was given); leave it out to transform in memory")
        }
        settings.entry = try t.string("entry") ?? settings.entry
        if lua.rawGet(at: t.index, key: "memory") == .string, let text = lua.toString(at: -1) {
            lua.pop()
            settings.memoryLimit = try wrap { try TransformJob.parseBytes(text) }
        } else {
            lua.pop()
            if let m = try t.number("memory") {
                guard m >= 1, m.isFinite else { throw LuaError.argument(argument, "memory must be a positive number of bytes or a size like \"2GB\", got \(m)") }
                settings.memoryLimit = Int(m)
            }
        }
        if let c = try t.number("checkpoint") {
            guard c >= 0, c.isFinite else { throw LuaError.argument(argument, "checkpoint must be seconds >= 0, got \(c)") }
            settings.checkpointSeconds = c
        }
        if lua.rawGet(at: t.index, key: "resume") == .boolean { settings.resume = lua.toBoolean(at: -1) }
        lua.pop()
        return settings
    }

    /// The result of crystal.transform and t:finish(): v and n are the output's fields with
    /// an output (lazy, as nxload gives them), ndarrays without.
    static func pushOutcome(_ outcome: TransformJob.Outcome, settings: TransformJob.Settings, seconds: Double, _ lua: Lua) throws {
        let result = outcome.transform
        lua.newTable(recordCount: 15)
        if let output = settings.output {
            // as nexusformat's nxload(output).entry.transform: the fields, read lazily
            let file = try wrap { try NXFile(path: output, mode: .read) }
            for (key, name) in [("v", "data"), ("n", "weights")] {
                guard let fld = try wrap({ try file.root.resolve("/\(settings.entry)/transform/\(name)") }) else {
                    throw LuaError.runtime("\(output): /\(settings.entry)/transform/\(name): missing after the transform")
                }
                NeXusModule.pushReadable(fld, lua); lua.rawSet(at: -2, key: key)
            }
        } else {
            try ArrayModule.push(result.v, lua, view: true); lua.rawSet(at: -2, key: "v")
            try ArrayModule.push(result.n, lua, view: true); lua.rawSet(at: -2, key: "n")
        }
        pushGrid(result.grid, lua); lua.rawSet(at: -2, key: "grid")
        let counts = [("frames", outcome.frames), ("pixels", outcome.pixels), ("masked", outcome.masked), ("outside", outcome.outside),
                      ("bricks", outcome.bricks), ("bricks_held", outcome.bricksHeld), ("evictions", outcome.evictions),
                      ("checkpoints", outcome.checkpoints), ("skipped", outcome.skipped)]
        for (key, n) in counts { lua.push(n); lua.rawSet(at: -2, key: key) }
        if let r = outcome.resumedFrom { lua.push(r); lua.rawSet(at: -2, key: "resumed") }
        lua.push(seconds); lua.rawSet(at: -2, key: "seconds")
        if let output = settings.output { lua.push(output); lua.rawSet(at: -2, key: "output") }
    }

    static let gridFunction = LuaFunctionDecl(
        "grid", "crystal.grid(g, rows, columns) -> grid",
        "NXRefine's default reciprocal grid for a geometry and detector: per axis -stop..stop, stop the even integer near 0.8 Qmax / a*, the step 1-2-5 near 1/1000 of the range") { call in
            let g = try call.object(1, geometryClass).geometry
            let rows = try call.integer(2), cols = try call.integer(3)
            guard rows > 0, cols > 0 else { throw LuaError.runtime("crystal.grid: rows and columns must be positive, got \(rows), \(cols)") }
            pushGrid(try wrap { try ReciprocalGrid.nxrefineDefault(geometry: g, rows: rows, columns: cols) }, call.lua)
            return 1
        }

    static let mergeFunction = LuaFunctionDecl(
        "merge", "crystal.merge(transforms, output) -> shape",
        "sums v and n of transforms on one grid (several rotations or detector positions), as cctw merge, into a new file",
        help: """
        transforms: a list of transform groups (f.entry.transform), files or paths (their
        entry/transform). output: a path, written with entry/transform in NXRefine's layout (and
        entry/data/v, n). The grids must be the same (shape and axes). Works slab by slab of l
        (about 64 MB), so memory stays small whatever the grid. Returns the shape (l, k, h).
        """) { call in
            let lua = call.lua
            guard lua.type(at: 1) == .table, NeXusModule.localGroup(at: 1, in: lua) == nil else {
                throw call.typeError(1, expected: "list of transforms (groups, files or paths)")
            }
            let output = try call.string(2)
            if PlotModule.isSandboxed(lua) { throw LuaError.runtime("crystal.merge is not available here (no files)") }
            var groups: [NXGroup] = []
            var opened: [NXFile] = []
            defer { for f in opened { try? f.close() } }
            var k = 1
            while true {
                defer { lua.pop() }
                let type = lua.rawGet(at: 1, index: k)
                if type == .nil { break }
                if let g = NeXusModule.localGroup(at: lua.absIndex(-1), in: lua) {
                    if g.nxclass == "NXdata" { groups.append(g) } else {
                        guard let t = try wrap({ try g.resolve("entry/transform") ?? (try g.resolve("transform")) }) as? NXGroup else {
                            throw LuaError.runtime("\(g.file.path): \(g.path): no transform group (looked for entry/transform and transform)")
                        }
                        groups.append(t)
                    }
                } else if type == .string, let path = lua.toString(at: -1) {
                    let f = try wrap { try NXFile(path: path, mode: .read) }
                    opened.append(f)
                    guard let t = try wrap({ try f.root.resolve("/entry/transform") }) as? NXGroup else {
                        throw LuaError.runtime("\(path): no /entry/transform to merge")
                    }
                    groups.append(t)
                } else {
                    throw LuaError.argument(1, "transforms[\(k)] must be a transform group, a file or a path")
                }
                k += 1
            }
            let shape = try wrap {
                let file = try NXFile(path: output, mode: .write)
                defer { try? file.close() }
                return try ReciprocalTransform.merge(groups, into: file,
                                                     command: "nxlua crystal.merge " + groups.map { "\($0.file.path)#\($0.path)" }.joined(separator: " "))
            }
            try LuaInterrupt.check()
            lua.newTable(arrayCount: 3)
            for (i, n) in shape.enumerated() { lua.push(n); lua.rawSet(at: -2, index: i + 1) }
            return 1
        }

    static func nxTime() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

// MARK: the transform fed block by block (a macro following a scan)

extension CrystalModule {
    final class TransformerBox: @unchecked Sendable {
        let job: TransformJob
        let started = nxTime()
        init(_ job: TransformJob) { self.job = job }
        var transform: ReciprocalTransform { job.transform }
    }

    static let transformerClass: LuaClass<TransformerBox> = LuaClass(
        "crystal.Transformer",
        summary: "a transform to reciprocal space fed frame block by frame block (t:add(frames, first)), e.g. from a macro on each frames.ready",
        help: """
        t:add(frames, first [, mask3d]) maps a block (frames, rows, columns) or one frame, the first
        of them frame index first (0-based: its goniometer angles and weight); a frame already in
        (given again, or in the output before a resume) or outside the frames option is skipped.
        With output, each t:add ends with a checkpoint (option checkpoint: seconds between them).
        t:finish() -> result completes it (the last checkpoint; the same result as crystal.transform:
        v and n the output's fields with output, ndarrays without); it takes no frames after.
        t:write(file [, entry]) writes entry/transform in NXRefine's layout (file opened "w" or "rw";
        in memory only). t.v, t.n (ndarrays (l, k, h), in memory only), t.grid, t.frames, t.pixels,
        t.masked, t.outside (so far, with those in the output before a resume), t.skipped, t.resumed (the first frame not in when
        it resumed an output), t.next (the first frame not in), t.output.
        """,
        methods: [
            LuaMethodDecl("add", "t:add(frames, first [, mask3d])", "adds a block (frames, rows, columns) or one frame starting at frame index first (0-based), skipping frames already in") { call, box in
                let a = try array(call, 2, what: "frames")
                let first = try call.integer(3)
                let m = call.isNoneOrNil(4) ? nil : try array(call, 4, what: "mask3d")
                try wrap { try box.job.add(a, firstFrame: first, mask3d: m) }
                try LuaInterrupt.check()
                return 0
            },
            LuaMethodDecl("finish", "t:finish() -> result", "completes the transform (the output's last checkpoint) and returns crystal.transform's result") { call, box in
                let outcome = try wrap { try box.job.finish() }
                try pushOutcome(outcome, settings: box.job.settings, seconds: nxTime() - box.started, call.lua)
                return 1
            },
            LuaMethodDecl("write", "t:write(file [, entry])", "writes entry/transform (data = v, weights = n, axes Ql, Qk, Qh) and entry/data/v, n as NXRefine does (in memory only)") { call, box in
                if let output = box.job.settings.output {
                    throw LuaError.runtime("t:write: the transform is written to \(output) as it goes (bricks of 32^3 voxels): t:finish() completes it")
                }
                let f = try file(call, 2, write: true)
                let entry = try call.optString(3) ?? "entry"
                try wrap { try box.transform.write(f, entry: entry, command: "nxlua crystal.transformer (nxlua \(CoreModule.version))") }
                return 0
            },
        ],
        index: { call, box in
            let t = box.transform, lua = call.lua
            let key = try call.string(2)
            if key == "v" || key == "n", let output = box.job.settings.output {
                throw LuaError.runtime("t.\(key): the grid is in \(output) (bricks of 32^3 voxels), not in memory: r = t:finish() gives r.\(key), the output's field")
            }
            switch key {
            case "v": try ArrayModule.push(t.v, lua, view: true)
            case "n": try ArrayModule.push(t.n, lua, view: true)
            case "grid": pushGrid(t.grid, lua)
            case "frames": lua.push(box.job.counts.frames)
            case "pixels": lua.push(box.job.counts.pixels)
            case "masked": lua.push(box.job.counts.masked)
            case "outside": lua.push(box.job.counts.outside)
            case "skipped": lua.push(box.job.outcome.skipped)
            case "next": lua.push(box.job.nextFrame)
            case "resumed":
                guard let r = box.job.outcome.resumedFrom else { return 0 }
                lua.push(r)
            case "output":
                guard let o = box.job.settings.output else { return 0 }
                lua.push(o)
            default: return 0
            }
            return 1
        },
        describe: { box in
            let t = box.transform
            let where_ = box.job.settings.output.map { " (bricks, output \($0))" } ?? ""
            return "crystal.Transformer: \(box.job.counts.frames) frames of \(t.rows) x \(t.columns) into \(t.grid.size[0]) x \(t.grid.size[1]) x \(t.grid.size[2]) voxels\(where_)"
        })

    static let transformerFunction = LuaFunctionDecl(
        "transformer", "crystal.transformer(g, rows, columns [, options]) -> t",
        "an empty transform to reciprocal space to feed block by block (t:add(frames, first)), e.g. from a macro on each frames.ready; out of core and resumable with output",
        help: """
        g: the geometry (with a unit cell and U). options: grid (default crystal.grid(g, rows, columns)),
        mask (2-D array, 1 = masked), weights and monitor (per frame of the scan), transmission,
        polarization, max_value, oversample, output, entry, memory, resume, block_mb (the frame
        blocks' size counted against memory): as crystal.transform; frames {first, last} (the
        frame indices it takes; default from 0 to the length of weights or monitor, else 2^20);
        checkpoint (0: after every t:add, so a frame block a macro handled is in the output
        before the next event; seconds: at most that often). Without output the grid is held in
        memory (refused above memory); with output as bricks of 32^3 voxels, as many as memory
        allows, the others in the output, and a transformer made again with the same options
        resumes it, skipping the frames already in (a macro runner restarted after kill -9
        re-delivers the events it had not finished: none is counted twice).
        """) { call in
            let lua = call.lua
            let geometry = try call.object(1, geometryClass).geometry
            let rows = try call.integer(2), cols = try call.integer(3)
            guard rows > 0, cols > 0 else { throw LuaError.runtime("crystal.transformer: rows and columns must be positive, got \(rows), \(cols)") }
            if geometry.unitCell == nil || geometry.orientationMatrix == nil {
                throw LuaError.runtime("crystal.transformer: the geometry needs a unit cell and an orientation matrix U (crystal.orient finds U), got \(geometry.unitCell == nil ? "no cell" : "no U")")
            }
            var t: Options?
            if !call.isNoneOrNil(4) {
                try call.options(4, known: ["grid", "mask", "weights", "monitor", "transmission", "polarization", "max_value", "oversample",
                                            "output", "entry", "memory", "checkpoint", "resume", "frames", "block_mb"])
                t = Options(call: call, index: lua.absIndex(4))
            }
            var o = ReciprocalTransform.Options(grid: try gridOption(call, t, geometry: geometry, rows: rows, columns: cols))
            var settings = TransformJob.Settings()
            settings.checkpointSeconds = 0
            if let t {
                if let m = try t.array("mask") {
                    guard m.shape == [rows, cols] else {
                        throw LuaError.runtime("crystal.transformer: the pixel mask has shape \(NDArray.describe(m.shape)), the frames (\(rows), \(cols))")
                    }
                    o.mask = m.doubles().map { $0 != 0 ? 1 : 0 }
                }
                try corrections(t, into: &o, argument: 4)
                settings = try jobSettings(t, argument: 4)
                if try t.number("checkpoint") == nil { settings.checkpointSeconds = 0 }
            }
            if settings.output != nil, PlotModule.isSandboxed(lua) { throw LuaError.runtime("writing a transform is not available here (no files)") }
            let perFrame = max(o.frameWeights?.count ?? 0, o.monitor?.count ?? 0)
            let frames = settings.frames ?? 0..<(perFrame > 0 ? perFrame : 1 << 20)
            settings.command = "nxlua crystal.transformer (nxlua \(CoreModule.version))"
            settings.mask3dName = "given with each block"
            let place = settings.output.map { "crystal.transformer (output \($0))" } ?? "crystal.transformer"
            let job = try wrap {
                try TransformJob(geometry: geometry, rows: rows, columns: cols, options: o, frames: frames, place: place,
                                 source: "crystal.transformer", shape: [frames.upperBound, rows, cols], settings: settings)
            }
            job.shouldStop = { LuaInterrupt.isPending }
            transformerClass.push(TransformerBox(job), to: lua)
            return 1
        }
}
