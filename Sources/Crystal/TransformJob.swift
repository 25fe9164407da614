#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NDArray
import NeXus

/// A whole transform of a stack into a file: memory bounded, one pass over the frames,
/// resumable after a kill.
///
/// - **Memory**: without an output the grid is held whole (refused above `memoryLimit`).
///   With an output it is held as bricks of 32^3 voxels (the output's HDF5 chunks) in a
///   BrickCache of as many as fit in `memoryLimit` (all of them without a limit): each frame
///   is read and mapped once and its pixels added to the bricks it touches; a brick pushed
///   out (least recently used) has its sums added to its total on disk. Consecutive frames
///   of a rotation touch nearly the same bricks, so that is rare.
/// - **Resuming**: `entry/transform_progress` records the options of the run and its state
///   (the next frame, the counts so far, a phase). Until a checkpoint, the output's data
///   and weights hold the totals of the frames before `next` and nothing else: a brick
///   pushed out goes (as its new total) to the side file `<output>.partial`. A checkpoint
///   puts every brick with sums there too, writes the list of those bricks after them,
///   commits the state (phase 1: "copying"), copies them into data and weights, flushes,
///   and commits phase 0. A kill before the first commit leaves the last checkpoint; a
///   kill after it is finished on the rerun by copying again (the side file holds totals,
///   so copying twice is harmless): no frame is counted twice. Every write after the file
///   is made is raw data of datasets allocated at creation, so no metadata changes between
///   flushes.
public final class TransformJob {
    public struct Settings {
        /// The output file (nil: in memory only, and no resuming).
        public var output: String?
        public var entry = "entry"
        /// Bytes; nil: no limit.
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
        /// The transform; v and n are the whole grid when it was held in memory (no output).
        public var transform: ReciprocalTransform
        public var frames = 0, pixels = 0, masked = 0, outside = 0
        /// The grid's bricks and how many were held at most (0, 0: the grid held whole).
        public var bricks = 0, bricksHeld = 0
        /// Bricks pushed out of memory to make room (each added to the output).
        public var evictions = 0
        /// The frame the run started from, when it resumed an interrupted transform.
        public var resumedFrom: Int?
        public var checkpoints = 0
    }

    /// Fixed memory besides the grid and the pixels: the program, HDF5, Lua (measured
    /// peak of a tiny transform: about 40 MB).
    public static let baseBytes = 48 << 20
    /// Bytes per brick held: v and n of 32^3 voxels.
    public static let brickBytes = BrickCache.slotDoubles * 8
    /// The fewest bricks worth working with out of core.
    static let minimumBricks = 4

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
        let gridBytes = 16 * g.count
        var blockBytes = settings.blockBytes
        var layout: BrickLayout?
        var held = 0
        if settings.output != nil {
            let l = try BrickLayout(grid: g)
            layout = l
            held = l.count
        }
        if let limit = settings.memoryLimit {
            blockBytes = max(1 << 20, min(blockBytes, limit / 8))
            let frameBytes = rows * columns * 8
            let pixelBytes = rows * columns * ReciprocalTransform.bytesPerPixel(options: options)
            let fixed = baseBytes + pixelBytes + 3 * max(blockBytes, frameBytes)
            // a tenth kept for what is not counted: HDF5's chunk cache and filter buffers
            let room = limit - limit / 10 - fixed
            if settings.output == nil {
                guard room >= gridBytes else {
                    throw CrystalError("\(place): the grid (\(g.size[0]) x \(g.size[1]) x \(g.size[2]), \(describeBytes(gridBytes)) for v and n) does not fit in the memory limit \(describeBytes(limit)): give an output file to work out of core, brick by brick")
                }
            } else {
                let bricks = room / brickBytes
                guard bricks >= minimumBricks || bricks >= held else {
                    throw CrystalError("\(place): memory limit \(describeBytes(limit)) is too small for this transform: it needs \(describeBytes(fixed)) besides the grid (\(describeBytes(pixelBytes)) for the pixels, \(describeBytes(3 * max(blockBytes, frameBytes))) for frame blocks) and at least \(describeBytes(minimumBricks * brickBytes)) for \(minimumBricks) bricks of 32^3 voxels of the grid")
                }
                held = min(held, bricks)
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
                ("layout", "bricks of 32^3 voxels, side file .partial"),
            ])
        var store: Store?
        var cache: BrickCache?
        var state = Store.State(next: range.lowerBound)
        var resumed = false
        if let output = settings.output, let layout {
            let c = try BrickCache(layout: layout, capacity: held)
            let (s, found) = try Store.open(output, entry: settings.entry, grid: g, layout: layout, geometry: geometry, record: record,
                                            resume: settings.resume, command: settings.command)
            c.spill = { [unowned s] b, slot in try s.spill(b, slot) }
            store = s; cache = c
            if let found { state = found; resumed = true }
        }
        defer {
            store?.close()
            cache?.spill = { _, _ in throw CrystalError("the transform's output is closed: its bricks can take no more frames") }
        }
        let t = try ReciprocalTransform(geometry: geometry, rows: rows, columns: columns, options: options, bricks: cache)
        t.pollsInterruption = false  // polled here, after whole frames, to checkpoint first
        var out = Outcome(transform: t, bricks: layout?.count ?? 0, bricksHeld: cache?.capacity ?? 0)
        if resumed { out.resumedFrom = state.next }
        let base = state
        var next = state.next
        func current() -> Store.State {
            var s = Store.State(next: next)
            s.frames = base.frames + t.framesAdded; s.pixels = base.pixels + t.pixelsAdded
            s.masked = base.masked + t.pixelsMasked; s.outside = base.outside + t.pixelsOutside
            return s
        }
        var lastCommit = nxNow(), lastCommitTook = 0.0
        func checkpoint() throws {
            guard let store, let cache else { return }
            let started = nxNow()
            try cache.spillAll()
            try store.commit(current())
            out.checkpoints += 1
            lastCommit = nxNow(); lastCommitTook = lastCommit - started
        }
        func interrupted() -> CrystalError {
            guard let output = settings.output else { return CrystalError("interrupted") }
            return CrystalError("interrupted: \(output) holds the transform up to frame \(next) of \(range.upperBound); run it again with the same options to resume")
        }
        if next < range.upperBound {
            let blockRows = try field.blockRows(targetBytes: blockBytes)
            let blocks = try NXBlocks(field, rows: blockRows, reuse: true, start: next)
            blockLoop: while let (first, block) = try blocks.next() {
                for f in 0..<block.shape[0] {
                    let z = first + f
                    if z < next { continue }
                    if z >= range.upperBound { break blockLoop }
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
                    next = z + 1
                    if Interruption.isRequested || shouldStop?() == true {
                        try checkpoint()
                        throw interrupted()
                    }
                    if store != nil, next < range.upperBound {
                        let now = nxNow()
                        if settings.checkpointSeconds == 0
                            || (now - lastCommit >= settings.checkpointSeconds && now - lastCommit >= 4 * lastCommitTook) { try checkpoint() }
                    }
                }
                do {
                    try progress?(next - range.lowerBound, range.count)
                } catch {
                    // the bar stops on Ctrl-C: checkpoint first, and say how to resume
                    guard Interruption.isRequested || shouldStop?() == true else { throw error }
                    try checkpoint()
                    throw interrupted()
                }
            }
        }
        try checkpoint()
        let s = current()
        out.frames = s.frames; out.pixels = s.pixels; out.masked = s.masked; out.outside = s.outside
        out.evictions = cache?.evictions ?? 0
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

    /// The output file and its side file: bricks' totals waiting to be copied into it.
    final class Store {
        struct State {
            var next: Int
            var frames = 0, pixels = 0, masked = 0, outside = 0
            init(next: Int) { self.next = next }
            /// phase 0: data and weights hold the totals up to next; 1: `pending` bricks of the
            /// side file (listed after the bricks) must be copied into them first.
            func values(phase: Int, pending: Int) -> [Double] {
                [Double(phase), Double(next), Double(pending), Double(frames), Double(pixels), Double(masked), Double(outside), 0]
            }
        }

        let file: NXFile
        let path: String
        let data: NXField, weights: NXField
        let stateField: NXField
        let layout: BrickLayout
        let sidePath: String
        var side: Int32 = -1
        /// Bricks whose current total is in the side file rather than data/weights.
        var inSide: [Bool]
        var pending: [Int32] = []
        /// One slot's worth of doubles (v then n) for reading and adding a brick.
        let scratch: UnsafeMutablePointer<Double>

        init(file: NXFile, path: String, data: NXField, weights: NXField, state: NXField, layout: BrickLayout) {
            self.file = file; self.path = path; self.data = data; self.weights = weights; self.stateField = state
            self.layout = layout; self.sidePath = path + ".partial"
            inSide = [Bool](repeating: false, count: layout.count)
            scratch = .allocate(capacity: BrickCache.slotDoubles)
        }

        deinit { scratch.deallocate() }

        static let progressName = "transform_progress"
        static let slotBytes = BrickCache.slotDoubles * 8

        /// Opens an interrupted transform of the same options to resume, or makes the file anew.
        static func open(_ path: String, entry: String, grid g: ReciprocalGrid, layout: BrickLayout, geometry: CrystalGeometry, record: Record,
                         resume: Bool, command: String) throws -> (Store, State?) {
            if resume, access(path, F_OK) == 0, let found = try resumable(path, entry: entry, record: record, layout: layout) {
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
                try p.setAttribute("description", .string("state: phase (0: data/weights hold the transform up to the next frame; 1: first copy the bricks listed in the side file <output>.partial), next frame, bricks listed, frames, pixels, masked, outside of the transform so far; complete when next is the end of the frames and phase 0"))
                let st = try p.makeField("state", value: .array(try arrayWork { try NDArray.from(State(next: -1).values(phase: 0, pending: 0), shape: [8]) }))
                try file.flush()
                return (Store(file: file, path: path, data: vf, weights: nf, state: st, layout: layout), nil)
            } catch {
                try? file.close()
                throw error
            }
        }

        /// An interrupted transform in `path` (nil if it holds none, or a finished one); refused when its options differ.
        static func resumable(_ path: String, entry: String, record: Record, layout: BrickLayout) throws -> (Store, State?)? {
            // a file that is not ours (or damaged) is overwritten as before only if it holds no progress record
            guard let probe = try? NXFile(path: path, mode: .read) else { return nil }
            let progressPath = "/\(entry)/\(progressName)"
            guard let p = try? probe.root.resolve(progressPath) as? NXGroup,
                  let sf = try? p.child("state") as? NXField, case .array(let a)? = try? sf.read(nil) else {
                try? probe.close(); return nil
            }
            let v = a.doubles()
            guard v.count == 8 else { try? probe.close(); return nil }
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
            var state = State(next: Int(v[1]))
            state.frames = Int(v[3]); state.pixels = Int(v[4]); state.masked = Int(v[5]); state.outside = Int(v[6])
            let phase = Int(v[0]), listed = Int(v[2])
            let frames = record.entries.first { $0.0 == "frames" }.map { $0.1.split(separator: ":").compactMap { Int($0) } } ?? []
            let finished = frames.count == 2 && state.next >= frames[1] && phase == 0
            if state.next < 0 || finished { return nil }  // never started, or finished: anew
            let file = try NXFile(path: path, mode: .readWrite)
            do {
                guard let d = try file.root.resolve("/\(entry)/transform/data") as? NXField,
                      let w = try file.root.resolve("/\(entry)/transform/weights") as? NXField,
                      let st = try file.root.resolve("\(progressPath)/state") as? NXField else {
                    throw CrystalError("\(path): /\(entry)/transform: data and weights are missing beside \(progressPath)")
                }
                let store = Store(file: file, path: path, data: d, weights: w, state: st, layout: layout)
                if phase == 1 {  // killed while copying a checkpoint in: finish that first
                    try store.openSide()
                    var ids = [Int64](repeating: -1, count: listed)
                    try ids.withUnsafeMutableBytes { try store.readSide($0.baseAddress!, count: $0.count, at: store.listOffset) }
                    guard ids.allSatisfy({ $0 >= 0 && $0 < layout.count }) else {
                        throw CrystalError("\(store.sidePath): the transform's checkpoint lists bricks outside the grid: delete \(path) and \(store.sidePath) to start anew")
                    }
                    store.pending = ids.map { Int32($0) }
                    try store.copyIn()
                    try store.commit(state, copying: false)
                    store.clearPending()
                }
                return (store, state)
            } catch {
                try? file.close()
                throw error
            }
        }

        var listOffset: Int { layout.count * Store.slotBytes }

        func openSide() throws {
            guard side < 0 else { return }
            side = Glibc.open(sidePath, O_RDWR | O_CREAT, 0o644)
            guard side >= 0 else { throw CrystalError("\(sidePath): cannot open the transform's checkpoint file: \(String(cString: strerror(errno)))") }
        }

        func writeSide(_ p: UnsafeRawPointer, count: Int, at offset: Int) throws {
            try sideIO(UnsafeMutableRawPointer(mutating: p), count: count, at: offset, write: true)
        }

        func readSide(_ p: UnsafeMutableRawPointer, count: Int, at offset: Int) throws {
            try sideIO(p, count: count, at: offset, write: false)
        }

        /// Reads or writes all `count` bytes of the side file at `offset`.
        private func sideIO(_ p: UnsafeMutableRawPointer, count: Int, at offset: Int, write: Bool) throws {
            try openSide()
            var done = 0
            while done < count {
                let at = off_t(offset + done)
                let r = write ? pwrite(side, p + done, count - done, at) : pread(side, p + done, count - done, at)
                if r < 0 && errno == EINTR { continue }
                guard r > 0 else {
                    let why = r < 0 ? String(cString: strerror(errno)) : "ends early"
                    throw CrystalError(write ? "\(sidePath): cannot write the transform's checkpoint: \(why)"
                        : "\(sidePath): the transform's checkpoint is short or unreadable (\(why)): delete \(path) and \(sidePath) to start anew")
                }
                done += r
            }
        }

        func selection(_ b: Int) -> (Selection, [Int]) {
            let (start, extent) = layout.box(b)
            let sel = Selection((0..<3).reversed().map { .range(.int(start[$0]), .int(start[$0] + extent[$0]), 1) })
            return (sel, extent)
        }

        /// Adds a brick's sums to its total (in the side file, or else in data/weights) and
        /// puts the new total in the side file: data and weights stay as the last checkpoint left them.
        func spill(_ b: Int, _ sums: UnsafeMutablePointer<Double>) throws {
            let count = BrickCache.slotDoubles
            if inSide[b] {
                try readSide(scratch, count: Store.slotBytes, at: b * Store.slotBytes)
            } else {
                memset(scratch, 0, Store.slotBytes)
                let (sel, extent) = selection(b)
                for (k, f) in [data, weights].enumerated() {
                    let a = try ReciprocalTransform.doubles(f, sel)
                    BrickCache.add(compact: a.base(Double.self), to: scratch + k * BrickLayout.slotVoxels, extent: extent)
                }
            }
            for i in 0..<count { scratch[i] += sums[i] }
            try writeSide(scratch, count: Store.slotBytes, at: b * Store.slotBytes)
            if !inSide[b] { inSide[b] = true; pending.append(Int32(b)) }
        }

        /// Copies the pending bricks' totals from the side file into data and weights, and flushes.
        func copyIn() throws {
            for b in pending {
                try readSide(scratch, count: Store.slotBytes, at: Int(b) * Store.slotBytes)
                let (sel, extent) = selection(Int(b))
                for (k, f) in [data, weights].enumerated() {
                    let a = try arrayWork { try NDArray(uninitialized: [extent[2], extent[1], extent[0]], dtype: .float64) }
                    BrickCache.compact(scratch + k * BrickLayout.slotVoxels, into: a.base(Double.self), extent: extent)
                    try f.write(.array(a), at: sel)
                }
            }
            try file.flush()
        }

        /// A checkpoint, once every brick with sums was spilled: lists the pending bricks,
        /// commits (copying), copies them in, commits (done).
        func commit(_ s: State) throws {
            if !pending.isEmpty {
                let ids = pending.map { Int64($0) }
                try ids.withUnsafeBytes { try writeSide($0.baseAddress!, count: $0.count, at: listOffset) }
                try commit(s, copying: true)
                try copyIn()
            }
            try commit(s, copying: false)
            clearPending()
        }

        func clearPending() {
            for b in pending { inSide[Int(b)] = false }
            pending.removeAll(keepingCapacity: true)
            if side >= 0 { _ = ftruncate(side, 0) }  // the totals are in the output now
        }

        /// Records the state (one small write in place) and flushes.
        func commit(_ s: State, copying: Bool) throws {
            let values = s.values(phase: copying ? 1 : 0, pending: copying ? pending.count : 0)
            try stateField.write(.array(try arrayWork { try NDArray.from(values, shape: [8]) }), at: nil)
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
