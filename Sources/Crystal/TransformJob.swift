#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NDArray
import NeXus

/// A whole transform of a stack into a file: memory bounded, resumable after a kill.
///
/// - **Memory**: with `memoryLimit`, the grid is held in slabs of l planes that fit in it
///   (besides the per-pixel state and the frame blocks); each slab takes one pass over the
///   frames (a frame whose pixels cannot reach the slab, by a bound on its scattering
///   vectors, is not mapped) and is then written into the output's data and weights, which
///   are allocated whole when the file is made. One slab: the grid in memory, as before.
/// - **Resuming**: the output records in `entry/transform_progress` the options of the run
///   and its state (the slab, the frames of it accumulated, where that partial sum lies).
///   A checkpoint writes the partial sums of the slab into the slot that is not the valid
///   one (the slab's place in data/weights, or the side file `<output>.partial`), flushes,
///   and only then writes the state (one small in-place write) and flushes again, so a
///   kill at any moment leaves the last checkpoint whole: rerun, it continues from there,
///   no frame counted twice. Every write after the file is made is raw data of datasets
///   allocated at creation, so no metadata changes between flushes.
public final class TransformJob {
    public struct Settings {
        /// The output file (nil: in memory only, and no resuming).
        public var output: String?
        public var entry = "entry"
        /// Bytes; nil: no limit (the grid in memory).
        public var memoryLimit: Int?
        /// At least this long between checkpoints (and at least 4 times the last one took);
        /// 0: after every frame.
        public var checkpointSeconds = 30.0
        /// false: an interrupted transform in the output is overwritten rather than resumed.
        public var resume = true
        public var blockBytes = 64 << 20
        public var frames: Range<Int>?
        public var command = "nxlua crystal.transform"
        /// Describes mask3d for the record of options (a field's path, "array"...).
        public var mask3dName = "none"
        public init() {}
    }

    public struct Outcome {
        /// The transform; v and n are the whole grid when `slabs` is 1.
        public var transform: ReciprocalTransform
        public var frames = 0, pixels = 0, masked = 0, outside = 0
        public var slabs = 1, slabPlanes = 0
        /// Frames (of the frame range, in slab passes) found accumulated in the output at
        /// the start; nil when it started anew.
        public var resumedFrom: (slab: Int, frame: Int)?
        /// Frames mapped over all passes, and those skipped in slab passes as out of reach.
        public var framesMapped = 0, framesSkipped = 0
        public var checkpoints = 0
    }

    /// Fixed memory besides the grid and the pixels: the program, HDF5, Lua (measured
    /// peak of a tiny transform: about 40 MB).
    public static let baseBytes = 48 << 20

    /// Parses "2GB", "512 MB", "1.5G", "100000" (bytes; powers of 1024).
    public static func parseBytes(_ text: String) throws -> Int {
        let t = String(text.filter { $0 != " " }).uppercased()
        var number = Substring(t), scale = 1.0
        for (suffix, s) in [("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1)]
        where t.hasSuffix(suffix) {
            number = t.dropLast(suffix.count); scale = Double(s); break
        }
        guard let x = Double(number), x > 0, x.isFinite else {
            throw CrystalError("memory: expected bytes or a size like \"2GB\" or \"512MB\", got \"\(text)\"")
        }
        return Int(x * scale)
    }

    public static func run(_ field: any NXReadableField, geometry: CrystalGeometry, options: ReciprocalTransform.Options,
                           mask3d: (any NXReadableField)? = nil, mask3dArray: NDArray? = nil, settings: Settings,
                           shouldStop: (@Sendable () -> Bool)? = nil, progress: ((Int, Int) throws -> Void)? = nil) throws -> Outcome {
        let place = "\(field.location): \(field.path)"
        let shape = try field.shape
        guard shape.count == 3 else { throw CrystalError("\(place): frames (frames, rows, columns) are needed, the field has shape \(NDArray.describe(shape))") }
        if let m = mask3d, try m.shape != shape {
            throw CrystalError("\(m.location): \(m.path): the 3-D mask must have the frames' shape \(NDArray.describe(shape)), it has \(NDArray.describe(try m.shape))")
        }
        if let m = mask3dArray, m.shape != shape {
            throw CrystalError("mask3d has shape \(NDArray.describe(m.shape)), the frames \(NDArray.describe(shape))")
        }
        if let fw = options.frameWeights, fw.count < shape[0] { throw CrystalError("\(place): \(shape[0]) frames but \(fw.count) frame weights") }
        if let mon = options.monitor, mon.count < shape[0] { throw CrystalError("\(place): \(shape[0]) frames but \(mon.count) monitor values") }
        let range = settings.frames ?? 0..<shape[0]
        guard range.lowerBound >= 0, range.upperBound <= shape[0], !range.isEmpty else {
            throw CrystalError("\(place): frames \(range.lowerBound):\(range.upperBound) are outside its \(shape[0]) frames")
        }
        let rows = shape[1], columns = shape[2]
        let g = options.grid
        let planeBytes = 16 * g.size[0] * g.size[1]
        var blockBytes = settings.blockBytes
        var slabPlanes = g.size[2]
        if let limit = settings.memoryLimit {
            blockBytes = max(1 << 20, min(blockBytes, limit / 8))
            let frameBytes = rows * columns * 8
            let fixed = baseBytes + rows * columns * ReciprocalTransform.bytesPerPixel(options: options) + 3 * max(blockBytes, frameBytes)
            // a tenth kept for what is not counted: HDF5's chunk cache and filter buffers, the
            // write of a slab (measured: 541 MB peak under 512 MB without it)
            let room = limit - limit / 10 - fixed
            guard room >= planeBytes else {
                throw CrystalError("\(place): memory limit \(describeBytes(limit)) is too small for this transform: it needs \(describeBytes(fixed)) besides the grid (\(describeBytes(rows * columns * ReciprocalTransform.bytesPerPixel(options: options))) for the pixels, \(describeBytes(3 * max(blockBytes, frameBytes))) for frame blocks) and \(describeBytes(planeBytes)) per l plane of the grid")
            }
            slabPlanes = min(g.size[2], room / planeBytes)
            if slabPlanes < g.size[2], slabPlanes >= 32 { slabPlanes = slabPlanes / 32 * 32 }  // whole chunks of the output
            if slabPlanes < g.size[2], settings.output == nil {
                throw CrystalError("\(place): the grid (\(g.size[0]) x \(g.size[1]) x \(g.size[2]), \(describeBytes(planeBytes * g.size[2])) for v and n) does not fit in the memory limit \(describeBytes(limit)): give an output file to work out of core, slab by slab of l")
            }
        }
        let record = Record(
            entries: [
                ("source", "\(field.location)#\(field.path)"), ("shape", NDArray.describe(shape)),
                ("frames", "\(range.lowerBound):\(range.upperBound)"),
                ("grid", "origin \(g.origin), step \(g.step), size \(g.size)"),
                ("geometry", String(reflecting: geometry)),
                ("mask", digest(options.mask.map { $0.map(Double.init) })), ("mask3d", settings.mask3dName),
                ("weights", digest(options.frameWeights)), ("monitor", digest(options.monitor)),
                ("transmission", "\(options.transmission)"), ("polarization", "\(options.polarization.map { "\($0)" } ?? "none")"),
                ("max_value", "\(options.maxValue.map { "\($0)" } ?? "none")"), ("oversample", "\(options.oversample)"),
            ])
        var store: Store?
        var resumed: Store.State?
        if let output = settings.output {
            let (s, state) = try Store.open(output, entry: settings.entry, grid: g, geometry: geometry, record: record,
                                            slabPlanes: slabPlanes, resume: settings.resume, command: settings.command)
            store = s; resumed = state
            slabPlanes = s.slabPlanes
        }
        defer { store?.close() }
        let slabs = (g.size[2] + slabPlanes - 1) / slabPlanes
        let t = try ReciprocalTransform(geometry: geometry, rows: rows, columns: columns, options: options, planes: 0..<min(g.size[2], slabPlanes))
        t.pollsInterruption = false  // polled here, after whole frames, to checkpoint first
        var out = Outcome(transform: t, slabs: slabs, slabPlanes: slabPlanes)
        var state = resumed ?? Store.State(slab: 0, next: range.lowerBound, slot: 0)
        if let r = resumed { out.resumedFrom = (r.slab, r.next) }
        out.frames = state.frames; out.pixels = state.pixels; out.masked = state.masked; out.outside = state.outside
        var lastCommit = nxNow(), lastCommitTook = 0.0
        let total = range.count * slabs
        var slab = state.slab
        while slab < slabs {
            let planes = (slab * slabPlanes)..<min(g.size[2], (slab + 1) * slabPlanes)
            if slab > 0 || planes.count != t.planes.count { try t.setPlanes(planes) } else { t.resetCounts() }
            var next = range.lowerBound
            if let store, state.slab == slab, state.slot != 0 {
                try store.load(t, slot: state.slot, planes: planes)
                next = state.next
            }
            // stats carried by the state: those of the frames before `next` in this pass
            let base = (frames: out.frames, pixels: out.pixels, masked: out.masked, outside: out.outside)
            func current() -> Store.State {
                var s = Store.State(slab: slab, next: next, slot: state.slot)
                s.pixels = base.pixels + t.pixelsAdded
                if slab == 0 { s.frames = base.frames + t.framesAdded; s.masked = base.masked + t.pixelsMasked; s.outside = base.outside + t.pixelsOutside }
                else { s.frames = base.frames; s.masked = base.masked; s.outside = base.outside }
                return s
            }
            func interruptedMessage(_ next: Int) -> String {
                guard let output = settings.output else { return "interrupted" }
                return "interrupted: \(output) holds the transform up to frame \(next) of \(range.upperBound) (l planes \(planes.lowerBound):\(planes.upperBound), slab \(slab + 1) of \(slabs)); run it again with the same options to resume"
            }
            func checkpoint() throws {
                guard let store else { return }
                let started = nxNow()
                var s = current()
                s.slot = state.slot == 1 ? 2 : 1
                try store.save(t, slot: s.slot, planes: planes)
                try store.commit(s)
                state = s
                out.checkpoints += 1
                lastCommit = nxNow(); lastCommitTook = lastCommit - started
            }
            if next < range.upperBound {
                let blockRows = try field.blockRows(targetBytes: blockBytes)
                let blocks = try NXBlocks(field, rows: blockRows, reuse: true, start: next)
                blockLoop: while let (first, block) = try blocks.next() {
                    for f in 0..<block.shape[0] {
                        let z = first + f
                        if z < next { continue }
                        if z >= range.upperBound { break blockLoop }
                        var reach = true
                        if slab > 0, let b = t.planeBounds(frame: z), b.upperBound < planes.lowerBound || b.lowerBound >= planes.upperBound { reach = false }
                        if reach {
                            let frame = try arrayWork { try block.view(Selection([.range(.int(f), .int(f + 1), 1)])) }
                            var m: NDArray?
                            if let mask3d {
                                guard case .array(let a) = try mask3d.read(Selection([.range(.int(z), .int(z + 1), 1)])) else {
                                    throw CrystalError("\(mask3d.location): \(mask3d.path): the 3-D mask must be numeric")
                                }
                                m = a
                            } else if let ma = mask3dArray {
                                m = try arrayWork { try ma.view(Selection([.range(.int(z), .int(z + 1), 1)])) }
                            }
                            try t.add(frame, firstFrame: z, mask3d: m)
                            out.framesMapped += 1
                        } else {
                            out.framesSkipped += 1
                        }
                        next = z + 1
                        let stop = Interruption.isRequested || shouldStop?() == true
                        if stop {
                            if store != nil { try checkpoint() }
                            throw CrystalError(interruptedMessage(next))
                        }
                        if store != nil, next < range.upperBound {
                            let now = nxNow()
                            if settings.checkpointSeconds == 0
                                || (now - lastCommit >= settings.checkpointSeconds && now - lastCommit >= 4 * lastCommitTook) { try checkpoint() }
                        }
                    }
                    do {
                        try progress?(slab * range.count + (next - range.lowerBound), total)
                    } catch {
                        // the bar stops on Ctrl-C: checkpoint first, and say how to resume
                        guard Interruption.isRequested || shouldStop?() == true else { throw error }
                        if store != nil { try checkpoint() }
                        throw CrystalError(interruptedMessage(next))
                    }
                }
            }
            let s = current()
            out.frames = s.frames; out.pixels = s.pixels; out.masked = s.masked; out.outside = s.outside
            if let store {
                // the finished slab into its place: never over the valid checkpoint
                if state.slab == slab && state.slot == 1 {
                    var c = s; c.slot = 2
                    try store.save(t, slot: 2, planes: planes)
                    try store.commit(c)
                    state = c
                }
                try store.save(t, slot: 1, planes: planes)
                var done = Store.State(slab: slab + 1, next: range.lowerBound, slot: 0)
                done.frames = s.frames; done.pixels = s.pixels; done.masked = s.masked; done.outside = s.outside
                try store.commit(done)
                state = done
                lastCommit = nxNow()
            }
            slab += 1
        }
        try store?.finish()
        return out
    }

    static func describeBytes(_ b: Int) -> String {
        if b >= 1 << 30 { return "\((Double(b) / Double(1 << 30) * 10).rounded() / 10) GB" }
        if b >= 1 << 20 { return "\(Int((Double(b) / Double(1 << 20)).rounded())) MB" }
        return "\(b) bytes"
    }

    static func digest(_ values: [Double]?) -> String {
        guard let values else { return "none" }
        var h: UInt64 = 0xcbf29ce484222325
        for v in values {
            var bits = v.bitPattern
            for _ in 0..<8 { h = (h ^ (bits & 0xff)) &* 0x100000001b3; bits >>= 8 }
        }
        return "\(values.count) values, FNV-1a \(String(h, radix: 16))"
    }

    struct Record {
        var entries: [(String, String)]
    }

    static func nxNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// The output file and its side file of checkpoints.
    final class Store {
        struct State {
            var slab: Int, next: Int, slot: Int  // slot 0: no partial sum, 1: in data/weights, 2: in the side file
            var frames = 0, pixels = 0, masked = 0, outside = 0
            init(slab: Int, next: Int, slot: Int) { self.slab = slab; self.next = next; self.slot = slot }
            var values: [Double] { [Double(slab), Double(next), Double(slot), Double(frames), Double(pixels), Double(masked), Double(outside), 0] }
        }

        let file: NXFile
        let path: String
        let data: NXField, weights: NXField
        let stateField: NXField
        let slabPlanes: Int
        let planeCount: Int  // doubles per l plane
        let sidePath: String
        var side: Int32 = -1

        init(file: NXFile, path: String, data: NXField, weights: NXField, state: NXField, slabPlanes: Int, planeCount: Int) {
            self.file = file; self.path = path; self.data = data; self.weights = weights; self.stateField = state
            self.slabPlanes = slabPlanes; self.planeCount = planeCount; self.sidePath = path + ".partial"
        }

        static let progressName = "transform_progress"

        /// Opens an interrupted transform of the same options to resume, or makes the file anew.
        static func open(_ path: String, entry: String, grid g: ReciprocalGrid, geometry: CrystalGeometry, record: Record,
                         slabPlanes: Int, resume: Bool, command: String) throws -> (Store, State?) {
            let planeCount = g.size[0] * g.size[1]
            if resume, access(path, F_OK) == 0, let found = try resumable(path, entry: entry, record: record, planeCount: planeCount) {
                return found
            }
            unlink(path + ".partial")
            let file = try NXFile(path: path, mode: .write)
            do {
                let cell = geometry.unitCell ?? UnitCell(a: 1, b: 1, c: 1)
                let (lengths, angles) = try ReciprocalTransform.reciprocalLattice(cell)
                let (vf, nf) = try TransformGrid.layout(file, entry: entry, name: "transform", grid: g, values: nil,
                                                         reciprocalLengths: lengths, reciprocalAngles: angles, command: command)
                guard let e = try file.root.resolve(entry) as? NXGroup else { throw CrystalError("\(path): no \(entry) after writing it") }
                let p = try e.makeGroup(progressName, nxclass: "NXcollection")
                for (k, v) in record.entries { try p.setAttribute(k, .string(v)) }
                try p.setAttribute("slab_planes", .array(try arrayWork { try NDArray.full([], Double(slabPlanes)) }))
                try p.setAttribute("description", .string("state: slab, next frame, slot (0 none, 1 data/weights, 2 the side file .partial), frames, pixels, masked, outside of the transform so far; complete when slab = ceil(l planes / slab_planes)"))
                let st = try p.makeField("state", value: .array(try arrayWork { try NDArray.from(State(slab: 0, next: -1, slot: 0).values, shape: [8]) }))
                try file.flush()
                return (Store(file: file, path: path, data: vf, weights: nf, state: st, slabPlanes: slabPlanes, planeCount: planeCount), nil)
            } catch {
                try? file.close()
                throw error
            }
        }

        /// An interrupted transform in `path` (nil if it holds none, or a finished one); refused when its options differ.
        static func resumable(_ path: String, entry: String, record: Record, planeCount: Int) throws -> (Store, State?)? {
            // a file that is not ours (or damaged) is overwritten as before only if it holds no progress record
            guard let probe = try? NXFile(path: path, mode: .read) else { return nil }
            let progressPath = "/\(entry)/\(progressName)"
            guard let p = try? probe.root.resolve(progressPath) as? NXGroup,
                  let sf = try? p.child("state") as? NXField, case .array(let a)? = try? sf.read(nil) else {
                try? probe.close(); return nil
            }
            let v = a.doubles()
            let planesAttr: Double? = { if case .array(let x)? = try? p.attribute("slab_planes") { return x.doubles().first }; return nil }()
            guard v.count == 8, let sp = planesAttr.map({ Int($0) }), sp > 0 else { try? probe.close(); return nil }
            let slabs = { (l: Int) in (l + sp - 1) / sp }
            for (k, want) in record.entries {
                let have: String? = { if case .strings(let s, _)? = try? p.attribute(k) { return s.first }; return nil }()
                if have != want {
                    try? probe.close()
                    let limit = 300
                    func cut(_ s: String) -> String { s.count > limit ? String(s.prefix(limit)) + "..." : s }
                    throw CrystalError("\(path): \(progressPath): holds an unfinished transform made with other options (\(k): \(cut(have ?? "none")) there, \(cut(want)) now): run it with the same options to resume it, or give resume = false (or another output) to start anew")
                }
            }
            try probe.close()
            let file = try NXFile(path: path, mode: .readWrite)
            do {
                guard let d = try file.root.resolve("/\(entry)/transform/data") as? NXField,
                      let w = try file.root.resolve("/\(entry)/transform/weights") as? NXField,
                      let st = try file.root.resolve("\(progressPath)/state") as? NXField else {
                    throw CrystalError("\(path): /\(entry)/transform: data and weights are missing beside \(progressPath)")
                }
                let lPlanes = try d.shape.first ?? 0
                var state = State(slab: Int(v[0]), next: Int(v[1]), slot: Int(v[2]))
                state.frames = Int(v[3]); state.pixels = Int(v[4]); state.masked = Int(v[5]); state.outside = Int(v[6])
                let store = Store(file: file, path: path, data: d, weights: w, state: st, slabPlanes: sp, planeCount: planeCount)
                if state.next < 0 || state.slab >= slabs(lPlanes) {  // never started, or finished: anew
                    try? file.close()
                    return nil
                }
                return (store, state)
            } catch {
                try? file.close()
                throw error
            }
        }

        func openSide() throws {
            guard side < 0 else { return }
            side = Glibc.open(sidePath, O_RDWR | O_CREAT, 0o644)
            guard side >= 0 else { throw CrystalError("\(sidePath): cannot open the transform's checkpoint file: \(String(cString: strerror(errno)))") }
        }

        /// Writes the slab's v and n into a slot.
        func save(_ t: ReciprocalTransform, slot: Int, planes: Range<Int>) throws {
            let count = planes.count * planeCount
            if slot == 1 {
                let sel = Selection([.range(.int(planes.lowerBound), .int(planes.upperBound), 1)])
                try data.write(.array(t.v), at: sel)
                try weights.write(.array(t.n), at: sel)
                try file.flush()
            } else {
                try openSide()
                for (k, a) in [t.v, t.n].enumerated() {
                    var done = 0
                    let bytes = count * 8
                    let base = UnsafeRawPointer(a.base(Double.self))
                    while done < bytes {
                        let r = pwrite(side, base + done, bytes - done, off_t(k * bytes + done))
                        if r < 0 && errno == EINTR { continue }
                        guard r > 0 else { throw CrystalError("\(sidePath): cannot write the transform's checkpoint: \(String(cString: strerror(errno)))") }
                        done += r
                    }
                }
            }
        }

        /// Reads a slot back into the slab's v and n.
        func load(_ t: ReciprocalTransform, slot: Int, planes: Range<Int>) throws {
            let count = planes.count * planeCount
            if slot == 1 {
                let sel = Selection([.range(.int(planes.lowerBound), .int(planes.upperBound), 1)])
                for (target, f) in [(t.v, data), (t.n, weights)] {
                    let a = try ReciprocalTransform.doubles(f, sel)
                    guard a.count == count else { throw CrystalError("\(path): \(f.path): \(a.count) values for l planes \(planes.lowerBound):\(planes.upperBound), expected \(count)") }
                    memcpy(target.base(Double.self), a.base(Double.self), count * 8)
                }
            } else {
                try openSide()
                for (k, a) in [t.v, t.n].enumerated() {
                    var done = 0
                    let bytes = count * 8
                    let base = UnsafeMutableRawPointer(a.base(Double.self))
                    while done < bytes {
                        let r = pread(side, base + done, bytes - done, off_t(k * bytes + done))
                        if r < 0 && errno == EINTR { continue }
                        guard r > 0 else { throw CrystalError("\(sidePath): the transform's checkpoint is short or unreadable (\(r < 0 ? String(cString: strerror(errno)) : "ends early")): delete \(path) and \(sidePath) to start anew") }
                        done += r
                    }
                }
            }
        }

        /// Records the state (one small write in place), after the slot it names was flushed.
        func commit(_ s: State) throws {
            try stateField.write(.array(try arrayWork { try NDArray.from(s.values, shape: [8]) }), at: nil)
            try file.flush()
        }

        func finish() throws {
            try file.flush()
            if side >= 0 { Glibc.close(side); side = -1 }
            unlink(sidePath)
        }

        func close() {
            if side >= 0 { Glibc.close(side); side = -1 }
            try? file.close()
        }
    }
}
