#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NDArray
import NeXus

/// A transform accumulated frame by frame, memory bounded and resumable after a kill: what
/// crystal.transform runs over a stack (`run`) and crystal.transformer is fed block by block
/// (`add`, then `finish`). One piece of code for both: the bricks, spills, checkpoints and
/// the record of which frames are in.
///
/// - **Memory**: without an output the grid is held whole (refused above `memoryLimit`).
///   With an output it is held as bricks of 32^3 voxels (the output's HDF5 chunks) in a
///   BrickCache of as many as fit in `memoryLimit` (all of them without a limit): each frame
///   is mapped once and its pixels added to the bricks it touches; a brick pushed out (least
///   recently used) has its sums added to its total on disk. Consecutive frames of a
///   rotation touch nearly the same bricks, so that is rare.
/// - **Frames**: each frame of `frames` is added once: a frame already in (given again, or
///   in the output before a resume) is skipped, as is a frame outside `frames`.
/// - **Resuming**: `entry/transform_progress` records the options of the run and its state
///   (the first frame not in, the counts so far, a phase, which of the two rows of
///   `frames_added` is current). Until a checkpoint, the output's data and weights hold the
///   totals of the frames the current row marks and nothing else: a brick pushed out goes
///   (as its new total) to the side file `<output>.partial`. A checkpoint puts every brick
///   with sums there too, writes the list of those bricks after them and the frames now in
///   to the other row of `frames_added`, commits the state (phase 1: "copying", that row
///   current), copies the bricks into data and weights, flushes, and commits phase 0. A kill
///   before the first commit leaves the last checkpoint; a kill after it is finished on the
///   rerun by copying again (the side file holds totals, so copying twice is harmless): no
///   frame is counted twice. Every write after the file is made is raw data of datasets
///   allocated at creation, so no metadata changes between flushes.
public final class TransformJob {
    public struct Settings {
        /// The output file (nil: in memory only, and no resuming).
        public var output: String?
        public var entry = "entry"
        /// Bytes; nil: no limit.
        public var memoryLimit: Int?
        /// At least this long between checkpoints (and at least 4 times the last one took);
        /// 0: after every frame of `run`, after every block given to `add`.
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
        /// The first frame not yet in when the run resumed an interrupted transform.
        public var resumedFrom: Int?
        public var checkpoints = 0
        /// Frames given that were skipped: already in (given again, or before a resume).
        public var skipped = 0
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

    public let transform: ReciprocalTransform
    public let settings: Settings
    /// The frames this transform takes (others given are skipped).
    public let frames: Range<Int>
    /// Polled after each frame (with Ctrl-C): true checkpoints and stops with an error.
    public var shouldStop: (@Sendable () -> Bool)?
    public private(set) var outcome: Outcome
    public private(set) var finished = false
    private let store: Store?
    private let cache: BrickCache?
    /// Bit z - frames.lowerBound: frame z is in the transform.
    private var added: [UInt8]
    /// The counts committed before this run (a resume), and the first frame not in.
    private let base: Store.State
    private var next: Int
    private var lastCommit = 0.0, lastCommitTook = 0.0
    private let place: String

    /// A transform of (rows, columns) frames; `source` names them for errors (`place`) and
    /// for the record of options, `shape` is the stack's. With `settings.output` it opens the
    /// output (resuming an interrupted transform of the same options) or makes it.
    public init(geometry: CrystalGeometry, rows: Int, columns: Int, options: ReciprocalTransform.Options, frames range: Range<Int>,
                place: String, source: String, shape: [Int], settings: Settings) throws {
        guard range.lowerBound >= 0, !range.isEmpty else {
            throw CrystalError("\(place): frames \(range.lowerBound):\(range.upperBound) must be a nonempty range of frame indices >= 0")
        }
        self.settings = settings; self.frames = range; self.place = place
        let g = options.grid
        let gridBytes = 16 * g.count
        let blockBytes = TransformJob.blockBytes(settings)
        var layout: BrickLayout?
        var held = 0
        if settings.output != nil {
            let l = try BrickLayout(grid: g)
            layout = l
            held = l.count
        }
        if let limit = settings.memoryLimit {
            let frameBytes = rows * columns * 8
            let pixelBytes = rows * columns * ReciprocalTransform.bytesPerPixel(options: options)
            let fixed = TransformJob.baseBytes + pixelBytes + 3 * max(blockBytes, frameBytes)
            // a tenth kept for what is not counted: HDF5's chunk cache and filter buffers
            let room = limit - limit / 10 - fixed
            if settings.output == nil {
                guard room >= gridBytes else {
                    throw CrystalError("\(place): the grid (\(g.size[0]) x \(g.size[1]) x \(g.size[2]), \(TransformJob.describeBytes(gridBytes)) for v and n) does not fit in the memory limit \(TransformJob.describeBytes(limit)): give an output file to work out of core, brick by brick")
                }
            } else {
                let bricks = room / TransformJob.brickBytes
                guard bricks >= TransformJob.minimumBricks || bricks >= held else {
                    throw CrystalError("\(place): memory limit \(TransformJob.describeBytes(limit)) is too small for this transform: it needs \(TransformJob.describeBytes(fixed)) besides the grid (\(TransformJob.describeBytes(pixelBytes)) for the pixels, \(TransformJob.describeBytes(3 * max(blockBytes, frameBytes))) for frame blocks) and at least \(TransformJob.describeBytes(TransformJob.minimumBricks * TransformJob.brickBytes)) for \(TransformJob.minimumBricks) bricks of 32^3 voxels of the grid")
                }
                held = min(held, bricks)
            }
        }
        let record = Record(
            entries: [
                ("source", source), ("shape", NDArray.describe(shape)),
                ("frames", "\(range.lowerBound):\(range.upperBound)"),
                ("grid", "origin \(g.origin), step \(g.step), size \(g.size)"),
                ("geometry", String(reflecting: geometry)),
                ("mask", TransformJob.digest(options.mask.map { $0.map(Double.init) })), ("mask3d", settings.mask3dName),
                ("weights", TransformJob.digest(options.frameWeights)), ("monitor", TransformJob.digest(options.monitor)),
                ("transmission", "\(options.transmission)"), ("polarization", "\(options.polarization.map { "\($0)" } ?? "none")"),
                ("max_value", "\(options.maxValue.map { "\($0)" } ?? "none")"), ("oversample", "\(options.oversample)"),
                ("layout", "bricks of 32^3 voxels, side file .partial"),
            ])
        var store: Store?
        var cache: BrickCache?
        var state = Store.State(next: range.lowerBound)
        var added = [UInt8](repeating: 0, count: (range.count + 7) / 8)
        var resumed = false
        if let output = settings.output, let layout {
            let c = try BrickCache(layout: layout, capacity: held)
            let (s, found) = try Store.open(output, entry: settings.entry, grid: g, layout: layout, geometry: geometry, record: record,
                                            frames: range, resume: settings.resume, command: settings.command)
            c.spill = { [unowned s] b, slot in try s.spill(b, slot) }
            store = s; cache = c
            if let (st, bits) = found { state = st; added = bits; resumed = true }
        }
        self.store = store; self.cache = cache; self.added = added
        do {
            transform = try ReciprocalTransform(geometry: geometry, rows: rows, columns: columns, options: options, bricks: cache)
        } catch {
            store?.close()
            throw error
        }
        transform.pollsInterruption = false  // polled here, after whole frames, to checkpoint first
        base = state
        next = state.next
        outcome = Outcome(transform: transform, bricks: layout?.count ?? 0, bricksHeld: cache?.capacity ?? 0)
        if resumed { outcome.resumedFrom = state.next }
        lastCommit = TransformJob.nxNow()
    }

    deinit { close() }

    private func close() {
        store?.close()
        cache?.spill = { _, _ in throw CrystalError("the transform's output is closed: its bricks can take no more frames") }
    }

    /// Whether frame z is still to be added (in `frames` and not in yet).
    public func wants(_ z: Int) -> Bool {
        guard frames.contains(z) else { return false }
        let i = z - frames.lowerBound
        return added[i >> 3] & (1 << UInt8(i & 7)) == 0
    }

    /// The first frame not in yet (frames.upperBound when all are).
    public var nextFrame: Int { next }

    /// Frames, pixels added, masked and outside so far, with those in the output before a resume.
    public var counts: (frames: Int, pixels: Int, masked: Int, outside: Int) {
        let s = current()
        return (s.frames, s.pixels, s.masked, s.outside)
    }

    private func current() -> Store.State {
        var s = Store.State(next: next)
        s.frames = base.frames + transform.framesAdded; s.pixels = base.pixels + transform.pixelsAdded
        s.masked = base.masked + transform.pixelsMasked; s.outside = base.outside + transform.pixelsOutside
        return s
    }

    /// Adds the frames of `block` ((frames, rows, columns) or one frame, the first frame index
    /// `firstFrame`) still wanted, frame by frame; Ctrl-C or shouldStop checkpoints and stops
    /// after a frame; checkpoints after the block when one is due.
    public func add(_ block: NDArray, firstFrame: Int, mask3d: NDArray? = nil) throws {
        guard !finished else { throw CrystalError("\(place): the transform is finished: it takes no more frames") }
        try transform.check(block, firstFrame: firstFrame, mask3d: mask3d)
        let count = block.ndim == 3 ? block.shape[0] : 1
        for f in 0..<count {
            let z = firstFrame + f
            guard wants(z) else {
                if frames.contains(z) { outcome.skipped += 1 }
                continue
            }
            func one(_ a: NDArray) throws -> NDArray {
                block.ndim == 2 ? a : try arrayWork { try a.view(Selection([.range(.int(f), .int(f + 1), 1)])) }
            }
            try transform.add(try one(block), firstFrame: z, mask3d: try mask3d.map(one))
            let i = z - frames.lowerBound
            added[i >> 3] |= 1 << UInt8(i & 7)
            while next < frames.upperBound && !wants(next) { next += 1 }
            if Interruption.isRequested || shouldStop?() == true {
                try checkpoint()
                throw interrupted()
            }
        }
        if store != nil, next < frames.upperBound {
            let now = TransformJob.nxNow()
            if settings.checkpointSeconds == 0
                || (now - lastCommit >= settings.checkpointSeconds && now - lastCommit >= 4 * lastCommitTook) { try checkpoint() }
        }
    }

    /// Puts every brick's sums and the frames in into the output (nothing without one).
    public func checkpoint() throws {
        guard let store, let cache else { return }
        let started = TransformJob.nxNow()
        try cache.spillAll()
        try store.commit(current(), added: added)
        outcome.checkpoints += 1
        lastCommit = TransformJob.nxNow(); lastCommitTook = lastCommit - started
    }

    public func interrupted() -> CrystalError {
        guard let output = settings.output else { return CrystalError("interrupted") }
        return CrystalError("interrupted: \(output) holds the transform of \(current().frames) frames (all before frame \(next) of \(frames.upperBound)); run it again with the same options to resume")
    }

    /// The last checkpoint, and the output marked finished (its side file gone).
    public func finish() throws -> Outcome {
        guard !finished else { return outcome }
        try checkpoint()
        let s = current()
        outcome.frames = s.frames; outcome.pixels = s.pixels; outcome.masked = s.masked; outcome.outside = s.outside
        outcome.evictions = cache?.evictions ?? 0
        try store?.finish(s)
        finished = true
        close()
        return outcome
    }

    /// crystal.transform: one pass over frames `settings.frames` (all without) of a (frames,
    /// rows, columns) field in blocks of about `blockBytes`, resuming after the frames an
    /// interrupted run put in the output; `mask3d` (a field or an array of the frames' shape).
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
        let job = try TransformJob(geometry: geometry, rows: shape[1], columns: shape[2], options: options, frames: range,
                                   place: place, source: "\(field.location)#\(field.path)", shape: shape, settings: settings)
        job.shouldStop = shouldStop
        if job.nextFrame < range.upperBound {
            let blockRows = try field.blockRows(targetBytes: TransformJob.blockBytes(settings))
            let blocks = try NXBlocks(field, rows: blockRows, reuse: true, start: job.nextFrame)
            blockLoop: while let (first, block) = try blocks.next() {
                for f in 0..<block.shape[0] {
                    let z = first + f
                    if z >= range.upperBound { break blockLoop }
                    guard job.wants(z) else { continue }
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
                    try job.add(frame, firstFrame: z, mask3d: m)
                }
                do {
                    try progress?(job.nextFrame - range.lowerBound, range.count)
                } catch {
                    // the bar stops on Ctrl-C: checkpoint first, and say how to resume
                    guard Interruption.isRequested || shouldStop?() == true else { throw error }
                    try job.checkpoint()
                    throw job.interrupted()
                }
            }
        }
        return try job.finish()
    }

    /// Bytes of a frame block to read at once, within the memory limit.
    static func blockBytes(_ settings: Settings) -> Int {
        settings.memoryLimit.map { max(1 << 20, min(settings.blockBytes, $0 / 8)) } ?? settings.blockBytes
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
            /// phase 0: data and weights hold the totals of the frames row `row` of frames_added
            /// marks; 1: `pending` bricks of the side file (listed after the bricks) must be
            /// copied into them first; 2: finished.
            func values(phase: Int, pending: Int, row: Int) -> [Double] {
                [Double(phase), Double(next), Double(pending), Double(frames), Double(pixels), Double(masked), Double(outside), Double(row)]
            }
        }

        let file: NXFile
        let path: String
        let data: NXField, weights: NXField
        let stateField: NXField
        /// Two rows of one bit per frame (the frames in): the state names the current one.
        let addedField: NXField?
        var row = 0
        let layout: BrickLayout
        let sidePath: String
        var side: Int32 = -1
        /// Bricks whose current total is in the side file rather than data/weights.
        var inSide: [Bool]
        var pending: [Int32] = []
        /// One slot's worth of doubles (v then n) for reading and adding a brick.
        let scratch: UnsafeMutablePointer<Double>

        init(file: NXFile, path: String, data: NXField, weights: NXField, state: NXField, added: NXField?, layout: BrickLayout) {
            self.file = file; self.path = path; self.data = data; self.weights = weights; self.stateField = state; self.addedField = added
            self.layout = layout; self.sidePath = path + ".partial"
            inSide = [Bool](repeating: false, count: layout.count)
            scratch = .allocate(capacity: BrickCache.slotDoubles)
        }

        deinit { scratch.deallocate() }

        static let progressName = "transform_progress"
        static let slotBytes = BrickCache.slotDoubles * 8

        /// Opens an interrupted transform of the same options to resume, or makes the file anew.
        static func open(_ path: String, entry: String, grid g: ReciprocalGrid, layout: BrickLayout, geometry: CrystalGeometry, record: Record,
                         frames: Range<Int>, resume: Bool, command: String) throws -> (Store, (State, [UInt8])?) {
            if resume, access(path, F_OK) == 0, let found = try resumable(path, entry: entry, record: record, layout: layout, frames: frames) {
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
                try p.setAttribute("description", .string("state: phase (0: data/weights hold the transform of the frames marked in row r of frames_added; 1: first copy the bricks listed in the side file <output>.partial; 2: finished), first frame not in, bricks listed, frames, pixels, masked, outside of the transform so far, r. frames_added: two rows of one bit per frame of the frames recorded (bit i % 8 of byte i / 8: frame first + i is in)"))
                let st = try p.makeField("state", value: .array(try arrayWork { try NDArray.from(State(next: -1).values(phase: 0, pending: 0, row: 0), shape: [8]) }))
                var o = NXFieldOptions()
                o.allocateEarly = true
                let bytes = (frames.count + 7) / 8
                let af = try p.makeField("frames_added", value: .array(try arrayWork { try NDArray(zeros: [2, bytes], dtype: .uint8) }), options: o)
                try file.flush()
                return (Store(file: file, path: path, data: vf, weights: nf, state: st, added: af, layout: layout), nil)
            } catch {
                try? file.close()
                throw error
            }
        }

        /// An interrupted transform in `path` (nil if it holds none, or a finished one); refused when its options differ.
        static func resumable(_ path: String, entry: String, record: Record, layout: BrickLayout, frames: Range<Int>) throws -> (Store, (State, [UInt8])?)? {
            // a file that is not ours (or damaged) is overwritten as before only if it holds no progress record
            guard let probe = try? NXFile(path: path, mode: .read) else { return nil }
            let progressPath = "/\(entry)/\(progressName)"
            guard let p = try? probe.root.resolve(progressPath) as? NXGroup,
                  let sf = try? p.child("state") as? NXField, case .array(let a)? = try? sf.read(nil) else {
                try? probe.close(); return nil
            }
            let v = a.doubles()
            guard v.count == 8 else { try? probe.close(); return nil }
            let hasAdded = (try? p.child("frames_added")) != nil
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
            let phase = Int(v[0]), listed = Int(v[2]), row = Int(v[7])
            // finished: marked so, or (made before the mark) all frames in
            let finished = phase == 2 || (!hasAdded && state.next >= frames.upperBound && phase == 0)
            if state.next < 0 || finished { return nil }  // never started, or finished: anew
            let file = try NXFile(path: path, mode: .readWrite)
            do {
                guard let d = try file.root.resolve("/\(entry)/transform/data") as? NXField,
                      let w = try file.root.resolve("/\(entry)/transform/weights") as? NXField,
                      let st = try file.root.resolve("\(progressPath)/state") as? NXField else {
                    throw CrystalError("\(path): /\(entry)/transform: data and weights are missing beside \(progressPath)")
                }
                let bytes = (frames.count + 7) / 8
                var added = [UInt8](repeating: 0, count: bytes)
                let af = try file.root.resolve("\(progressPath)/frames_added") as? NXField
                if let af {
                    guard try af.shape == [2, bytes], row == 0 || row == 1,
                          case .array(let a) = try af.read(Selection([.range(.int(row), .int(row + 1), 1), .range(.int(0), .int(bytes), 1)])) else {
                        throw CrystalError("\(path): \(progressPath)/frames_added: expected 2 rows of \(bytes) bytes (one bit a frame) and a row 0 or 1 in the state, got shape \(NDArray.describe(try af.shape)), row \(row): delete \(path) to start anew")
                    }
                    added = a.doubles().map { UInt8($0) }
                } else {  // made before frames_added: the frames before next are in
                    for i in 0..<max(0, state.next - frames.lowerBound) { added[i >> 3] |= 1 << UInt8(i & 7) }
                }
                let store = Store(file: file, path: path, data: d, weights: w, state: st, added: af, layout: layout)
                store.row = row
                if phase == 1 {  // killed while copying a checkpoint in: finish that first
                    try store.openSide()
                    var ids = [Int64](repeating: -1, count: listed)
                    try ids.withUnsafeMutableBytes { try store.readSide($0.baseAddress!, count: $0.count, at: store.listOffset) }
                    guard ids.allSatisfy({ $0 >= 0 && $0 < layout.count }) else {
                        throw CrystalError("\(store.sidePath): the transform's checkpoint lists bricks outside the grid: delete \(path) and \(store.sidePath) to start anew")
                    }
                    store.pending = ids.map { Int32($0) }
                    try store.copyIn()
                    try store.commit(state, phase: 0)
                    store.clearPending()
                }
                return (store, (state, added))
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
        /// writes the frames in to the row not current, commits (copying, that row current),
        /// copies the bricks in, commits (done).
        func commit(_ s: State, added: [UInt8]) throws {
            if let addedField {
                let other = 1 - row
                let a = try arrayWork { try NDArray.from(added.map(Double.init), shape: [1, added.count], dtype: .uint8) }
                try addedField.write(.array(a), at: Selection([.range(.int(other), .int(other + 1), 1), .range(.int(0), .int(added.count), 1)]))
                row = other
            }
            if !pending.isEmpty {
                let ids = pending.map { Int64($0) }
                try ids.withUnsafeBytes { try writeSide($0.baseAddress!, count: $0.count, at: listOffset) }
                try commit(s, phase: 1)
                try copyIn()
            }
            try commit(s, phase: 0)
            clearPending()
        }

        func clearPending() {
            for b in pending { inSide[Int(b)] = false }
            pending.removeAll(keepingCapacity: true)
            if side >= 0 { _ = ftruncate(side, 0) }  // the totals are in the output now
        }

        /// Records the state (one small write in place) and flushes.
        func commit(_ s: State, phase: Int) throws {
            let values = s.values(phase: phase, pending: phase == 1 ? pending.count : 0, row: row)
            try stateField.write(.array(try arrayWork { try NDArray.from(values, shape: [8]) }), at: nil)
            try file.flush()
        }

        /// Marks the transform finished (after its last checkpoint).
        func finish(_ s: State) throws {
            try commit(s, phase: 2)
            if side >= 0 { Glibc.close(side); side = -1 }
            unlink(sidePath)
        }

        func close() {
            if side >= 0 { Glibc.close(side); side = -1 }
            try? file.close()
        }
    }
}
