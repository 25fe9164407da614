#if canImport(Glibc)
import Glibc
#endif
import Detector
import NDArray
import NeXus

/// What becomes of each frame index, as recorded in `/entry/stacking/frame_status`.
public enum FrameStatus: UInt8, Sendable {
    /// Not (yet) seen: the data holds the fill value.
    case missing = 0
    case stored = 1
    /// Seen but unreadable: the data holds the fill value; `bad_frame_*` say why.
    case bad = 2
}

/// The output NeXus file in the layout areaDetector's HDF5 writer made familiar:
///
///     /entry/instrument/detector/data      frames x Y x X, chunked one frame per chunk
///     /entry/instrument/NDAttributes/*     one 1-D field per numeric header value, per frame
///     /entry/instrument/detector/...       constant header values where NeXus names them
///     /entry/data                          NXdata: links to the frames and frame numbers
///     /entry/stacking                      frame_status per frame, the bad-frame record
///
/// Everything is created before SWMR writing starts (HDF5's rule); from then on only
/// extents grow and values are written. Every commit is two flushes: the frames and
/// their values first, their status second, so a status of "stored" read after any
/// crash means the data reached the file. SWMR orders the writes within the kernel's
/// cache, which survives a killed process; durable commits also wait for the disk
/// after each flush, so the order holds on the disk after a power cut too.
final class StackFile {
    let file: NXFile
    /// Held for the whole run: no second stacker writes into this file meanwhile.
    var writerLock: StackWriterLock?
    let entryName: String
    let data: NXField
    let frameNumbers: NXField
    let status: NXField
    let sourceFiles: NXField
    let badIndex: NXField, badFile: NXField, badError: NXField
    /// How often each bad frame was tried (stacks written before this field existed have
    /// none: their rows are still updated in place, without a count).
    let badAttempts: NXField?
    /// The bad-frame row of each frame (by index; by file name for files numbered before
    /// the first frame), and its attempts so far: a frame bad again on resume updates its
    /// row instead of adding one.
    private var badRows: [String: (row: Int, attempts: Int)] = [:]
    /// Per-frame header values, by header key ("start_angle"), with their dtype.
    let perFrame: [(key: String, field: NXField, dtype: DType)]
    let timeField: NXField?
    /// Per-frame fields of logs (--log), by key: the log's absolute times and values.
    let logs: [String: (times: [Double], values: [Double])]
    let frameShape: [Int]
    let dtype: DType
    let firstNumber: Int
    let encoder: NXChunkEncoder
    /// The length of every per-frame field.
    private(set) var extent: Int
    /// In memory: the status of each index below `extent`.
    private(set) var statuses: [FrameStatus]

    static let sourceNameLength = 256, errorLength = 512, timeLength = 40

    private init(file: NXFile, entry: String, firstNumber: Int) throws {
        self.file = file
        self.entryName = entry
        let root = file.root
        func field(_ path: String) throws -> NXField {
            guard let f = try root.resolve(path) as? NXField else {
                throw StackError("\(file.path): /\(entry)/\(path) is missing: not a stack written by nxlua stack (choose another --out)")
            }
            return f
        }
        data = try field("\(entry)/instrument/detector/data")
        frameNumbers = try field("\(entry)/instrument/NDAttributes/frame_number")
        status = try field("\(entry)/stacking/frame_status")
        sourceFiles = try field("\(entry)/stacking/source_file")
        badIndex = try field("\(entry)/stacking/bad_frame_index")
        badFile = try field("\(entry)/stacking/bad_frame_file")
        badError = try field("\(entry)/stacking/bad_frame_error")
        badAttempts = try root.resolve("\(entry)/stacking/bad_frame_attempts") as? NXField
        let badCount = try badIndex.shape[0]
        if badCount > 0, case .array(let indices) = try badIndex.read(nil), case .strings(let names, _) = try badFile.read(nil) {
            var attempts = [Double](repeating: 1, count: badCount)
            if let badAttempts, try badAttempts.shape[0] == badCount, case .array(let a) = try badAttempts.read(nil) {
                attempts = a.doubles()
            }
            for (row, index) in indices.doubles().enumerated() where row < names.count {
                badRows[StackFile.badKey(Int(index), names[row])] = (row, max(1, Int(attempts[row])))
            }
        }
        let shape = try data.shape
        guard shape.count == 3, case .numeric(let d) = try data.elementType else {
            throw StackError("\(file.path): /\(entry)/instrument/detector/data is not a stack of frames")
        }
        frameShape = Array(shape.dropFirst())
        dtype = d
        self.firstNumber = firstNumber
        var perFrame: [(String, NXField, DType)] = []
        var timeField: NXField? = nil
        var logs: [String: (times: [Double], values: [Double])] = [:]
        if let g = try root.resolve("\(entry)/instrument/NDAttributes") as? NXGroup {
            for e in try g.entries() where e.name != "frame_number" {
                guard let f = try g.child(e.name) as? NXField else { continue }
                if e.name == "time" { timeField = f; continue }
                if case .numeric(let t) = try f.elementType { perFrame.append((e.name, f, t)) }
                // a log's per-frame field: the NXlog it interpolates
                if let logPath = f.stringAttribute("log"), let log = try root.resolve(logPath) as? NXGroup,
                   let time = try log.child("time") as? NXField, let value = try log.child("value") as? NXField,
                   case .array(let ts) = try time.read(nil), case .array(let vs) = try value.read(nil) {
                    let start = time.stringAttribute("start").flatMap { NXTime.seconds($0) } ?? 0
                    logs[e.name] = (ts.doubles().map { $0 + start }, vs.doubles())
                }
            }
        }
        self.perFrame = perFrame
        self.timeField = timeField
        self.logs = logs
        encoder = try NXChunkEncoder(for: data)
        extent = try status.shape[0]
        statuses = []
        if extent > 0, case .array(let a) = try status.read(nil) {
            statuses = a.doubles().map { FrameStatus(rawValue: UInt8(max(0, min(255, $0)))) ?? .missing }
        } else {
            statuses = Array(repeating: .missing, count: extent)
        }
        // Frames written after the last commit may be half there: they are written again,
        // so every per-frame field is cut back to the committed length.
        for f in perFrameFields where try f.shape[0] != extent { try f.resize(firstAxis: extent) }
    }

    private var perFrameFields: [NXField] {
        [data, frameNumbers, status, sourceFiles] + perFrame.map(\.field) + (timeField.map { [$0] } ?? [])
    }

    // MARK: opening

    /// Reopens a stack a previous run wrote (perhaps killed): SWMR writing resumes at once.
    static func resume(path: String, entry: String, expectedFirst: Int?) throws -> StackFile {
        // A file that opens normally must be a stack; one that does not may be a stack whose
        // writer was killed (still marked as SWMR-written), which only the reopen below clears.
        if let plain = try? NXFile(path: path, mode: .read) {
            let group = (try? plain.root.resolve("\(entry)/stacking")) ?? nil
            let isStack = (try? group?.hasAttribute("first_frame_number")) == true
            try? plain.close()
            if !isStack {
                throw StackError("\(path): no /\(entry)/stacking group with @first_frame_number: not a stack written by nxlua stack (choose another --out, or --entry)")
            }
        }
        // before the repair below clears the "open for writing" mark another stacker set
        let lock = try StackWriterLock(path: path)
        var o = NXFile.Options()
        o.swmrWrite = true
        let file: NXFile
        do {
            file = try NXFile(path: path, mode: .readWrite, options: o)
        } catch let e as NeXusError where e.message.contains("another process has the file open") {
            throw StackError("cannot resume: \(e) (close the readers that take HDF5's file lock, e.g. h5py or NeXpy without HDF5_USE_FILE_LOCKING=FALSE, then rerun; nxlua's own readers never block a resume)")
        } catch {
            throw StackError("cannot resume \(path) as a stack: \(error) (not a stack written by nxlua stack? choose another --out)")
        }
        do {
            guard let g = try file.root.resolve("\(entry)/stacking") as? NXGroup,
                  case .array(let a)? = try g.attribute("first_frame_number"), let first = try? Int(a.integer(at: [])) else {
                throw StackError("\(path): no /\(entry)/stacking group with @first_frame_number: not a stack written by nxlua stack (choose another --out, or --entry)")
            }
            if let expectedFirst, expectedFirst != first {
                throw StackError("\(path): this stack numbers frames from \(first), not from \(expectedFirst) as --first asks")
            }
            let s = try StackFile(file: file, entry: entry, firstNumber: first)
            s.writerLock = lock
            if !file.isSWMRWriting { try file.startSWMRWrite() }
            if let length = file.lengthBeforeRepair { try s.unmarkFrames(endingPast: length) }
            return s
        } catch {
            try? file.close()
            throw error
        }
    }

    /// Creates the file from its first good frame (its shape, type and header) under a
    /// temporary name, starts SWMR writing, and only then renames it into place:
    /// - a crash during creation never leaves a half layout that a rerun would take for
    ///   a stack;
    /// - a reader (a viewer polling for the file, `nxlua serve`) never finds it before
    ///   SWMR writing began. HDF5 wants readers to open after the writer: a reader that
    ///   held the file between a rename and a reopen made the reopen fail ("unable to
    ///   lock file") and the stacker stop.
    static func create(path: String, entry: String, first frame: Frame, firstNumber: Int,
                       compression: NXCompression?, fillValue: Double, source: String,
                       program: String, additions: StackAdditions = StackAdditions()) throws -> StackFile {
        let temporary = path + ".creating"
        var o = NXFile.Options()
        o.swmrWrite = true
        let file: NXFile
        do {
            file = try NXFile(path: temporary, mode: .write, options: o)
        } catch {
            _ = unlink(temporary)
            throw error
        }
        do {
            try buildLayout(file, entry: entry, frame: frame, firstNumber: firstNumber, compression: compression,
                            fillValue: fillValue, source: source, program: program, additions: additions)
            let s = try StackFile(file: file, entry: entry, firstNumber: firstNumber)
            try file.startSWMRWrite()
            try file.rename(to: path)
            s.writerLock = try StackWriterLock(path: path)
            return s
        } catch {
            try? file.close()
            _ = unlink(temporary)
            throw error
        }
    }

    private static func buildLayout(_ file: NXFile, entry: String, frame: Frame, firstNumber: Int,
                                    compression: NXCompression?, fillValue: Double, source: String,
                                    program: String, additions: StackAdditions) throws {
        let a = frame.array
        guard a.ndim == 2 else {
            throw StackError("\(source): a frame of shape \(NDArray.describe(a.shape)) (2-D frames expected)")
        }
        let header = frame.header.pilatus
        let root = file.root
        try root.setAttribute("default", .string(entry))
        try root.setAttribute("creator", .string(program))
        let e = try root.makeGroup(entry, nxclass: "NXentry")
        try e.setAttribute("default", .string("data"))
        if let t = header?["time"], case .text(let text) = t.value {
            _ = try e.makeField("start_time", value: .string(text))
        }
        _ = try e.makeField("program_name", value: .string(program))
        let instrument = try e.makeGroup("instrument", nxclass: "NXinstrument")
        let det = try instrument.makeGroup("detector", nxclass: "NXdetector")

        var o = NXFieldOptions()
        o.dtype = a.dtype
        o.shape = [0] + a.shape
        o.maxshape = [nil] + a.shape.map { Optional($0) }
        o.chunks = [1] + a.shape
        o.compression = compression
        o.fillValue = fillValue
        let data = try det.makeField("data", value: nil, options: o)
        try data.setAttribute("signal", .array(try NDArray.full([], 1, dtype: .int32)))
        try data.setAttribute("interpretation", .string("image"))
        try data.setAttribute("units", .string("counts"))
        try data.setAttribute("fill_value", .array(try NDArray.full([], fillValue, dtype: a.dtype)))

        // Constant header values under their NeXus names (from the first frame).
        func number(_ key: String) -> (Double, String?)? {
            guard let h = header?[key] else { return nil }
            switch h.value {
            case .number(let x): return (x, h.units)
            case .integer(let i): return (Double(i), h.units)
            default: return nil
            }
        }
        func put(_ g: NXGroup, _ name: String, _ value: Double, units: String?) throws {
            let f = try g.makeField(name, value: .array(try NDArray.full([], value, dtype: .float64)))
            if let units { try f.setAttribute("units", .string(units)) }
        }
        if let h = header {
            if let d = h["detector"], case .text(let t) = d.value { _ = try det.makeField("description", value: .string(t)) }
            if let (x, u) = number("detector_distance") { try put(det, "distance", x, units: u ?? "m") }
            if let b = h["beam_xy"], case .numbers(let xy) = b.value, xy.count >= 2 {
                try put(det, "beam_center_x", xy[0], units: "pixel")
                try put(det, "beam_center_y", xy[1], units: "pixel")
            }
            if let p = h["pixel_size"], case .numbers(let s) = p.value, s.count >= 2 {
                try put(det, "x_pixel_size", s[0], units: p.units ?? "m")
                try put(det, "y_pixel_size", s[1], units: p.units ?? "m")
            }
            if let (x, u) = number("exposure_time") { try put(det, "count_time", x, units: u ?? "s") }
            if let (x, u) = number("exposure_period") { try put(det, "frame_time", x, units: u ?? "s") }
            if let (x, u) = number("tau") { try put(det, "dead_time", x, units: u ?? "s") }
            if let (x, u) = number("threshold_setting") { try put(det, "threshold_energy", x, units: u ?? "eV") }
            if let (x, u) = number("sensor_thickness") { try put(det, "sensor_thickness", x, units: u ?? "m") }
            if let m = h["sensor"], case .text(let t) = m.value { _ = try det.makeField("sensor_material", value: .string(t)) }
            if let c = h["count_cutoff"], case .integer(let i) = c.value {
                _ = try det.makeField("saturation_value", value: .array(try NDArray.full([], Double(i), dtype: .int64)))
            }
            _ = try det.makeField("header", value: .string(h.text))
            if let (x, u) = number("wavelength") {
                let mono = try instrument.makeGroup("monochromator", nxclass: "NXmonochromator")
                try put(mono, "wavelength", x, units: u ?? "Angstrom")
            }
        }

        // Per-frame values: every numeric header key of the first frame, and the time stamp.
        let nd = try instrument.makeGroup("NDAttributes", nxclass: "NXcollection")
        func perFrameOptions(_ dtype: DType?, fill: Double?, stringLength: Int? = nil) -> NXFieldOptions {
            var p = NXFieldOptions()
            p.dtype = dtype
            p.shape = [0]
            p.maxshape = [nil]
            p.chunks = [256]
            p.fillValue = fill
            p.stringLength = stringLength
            return p
        }
        let numbers = try nd.makeField("frame_number", value: nil, options: perFrameOptions(.int64, fill: -1))
        try numbers.setAttribute("description", .string("the frame number in the source file names"))
        var perFrameKeys: [String] = []
        for entry in header?.entries ?? [] where !perFrameKeys.contains(entry.key) {
            let dtype: DType
            switch entry.value {
            case .integer: dtype = .int64
            case .number: dtype = .float64
            default: continue
            }
            perFrameKeys.append(entry.key)
            let f = try nd.makeField(entry.key, value: nil, options: perFrameOptions(dtype, fill: dtype == .int64 ? -1 : .nan))
            if let u = entry.units { try f.setAttribute("units", .string(u)) }
        }
        if header?["time"] != nil {
            _ = try nd.makeField("time", value: nil, options: perFrameOptions(nil, fill: nil, stringLength: timeLength))
        }

        // The sample's angles are the per-frame goniometer values, linked (as NXmx does).
        if let h = header, ["start_angle", "omega", "phi", "kappa", "chi", "alpha"].contains(where: { h[$0] != nil }) {
            let sample = try e.makeGroup("sample", nxclass: "NXsample")
            for key in ["omega", "phi", "kappa", "chi", "alpha"] where perFrameKeys.contains(key) {
                if let f = try nd.child(key) { try sample.link(key, to: f) }
            }
            if perFrameKeys.contains("start_angle"), let f = try nd.child("start_angle") { try sample.link("rotation_angle", to: f) }
        }

        let nxdata = try e.makeGroup("data", nxclass: "NXdata")
        try nxdata.link("data", to: data)
        try nxdata.link("frame_number", to: numbers)
        try nxdata.setAttribute("signal", .string("data"))
        try nxdata.setAttribute("axes", .strings(["frame_number", ".", "."], shape: [3]))
        try nxdata.setAttribute("frame_number_indices", .array(try NDArray.full([], 0, dtype: .int32)))

        let stacking = try e.makeGroup("stacking", nxclass: "NXcollection")
        try stacking.setAttribute("first_frame_number", .array(try NDArray.full([], Double(firstNumber), dtype: .int64)))
        try stacking.setAttribute("source", .string(source))
        try stacking.setAttribute("compression", .string(compression.map { "\($0)" } ?? "none"))
        let st = try stacking.makeField("frame_status", value: nil, options: perFrameOptions(.uint8, fill: 0))
        try st.setAttribute("description", .string("per frame: 0 missing (data = fill value), 1 stored, 2 bad (see bad_frame_*)"))
        _ = try stacking.makeField("source_file", value: nil, options: perFrameOptions(nil, fill: nil, stringLength: sourceNameLength))
        _ = try stacking.makeField("bad_frame_index", value: nil, options: perFrameOptions(.int64, fill: -1))
        _ = try stacking.makeField("bad_frame_file", value: nil, options: perFrameOptions(nil, fill: nil, stringLength: sourceNameLength))
        _ = try stacking.makeField("bad_frame_error", value: nil, options: perFrameOptions(nil, fill: nil, stringLength: errorLength))
        let attempts = try stacking.makeField("bad_frame_attempts", value: nil, options: perFrameOptions(.int64, fill: 0))
        try attempts.setAttribute("description", .string("how many runs found the frame bad (a resume tries bad frames again); the row keeps the latest error"))

        // What came from outside the frames (made now: SWMR writing creates no objects later)
        if let mask = additions.pixelMask {
            var mo = NXFieldOptions()
            mo.chunks = mask.shape
            mo.compression = .gzip(level: 1)
            let m = try det.makeField("pixel_mask", value: .array(mask), options: mo)
            try m.setAttribute("description", .string(additions.pixelMaskSource ?? "pixel mask"))
        }
        try additions.metadata.write(into: e)
        // logs: the NXlog, and a per-frame field of its value at each frame's time stamp
        for log in additions.logs {
            let (group, name) = try log.write(into: e)
            let key = log.path.joined(separator: "_")
            if try nd.child(key) != nil { try nd.delete(key) }
            let f = try nd.makeField(key, value: nil, options: perFrameOptions(.float64, fill: .nan))
            if let u = log.units { try f.setAttribute("units", .string(u)) }
            try f.setAttribute("log", .string("\(group.path)/\(name)_log"))
            try f.setAttribute("description", .string("\(log.path.joined(separator: ".")) at the frame's time stamp, interpolated in the log \(log.source)"))
            if try group.child(name) != nil { try group.delete(name) }
            try group.link(name, to: f)
        }
    }

    // MARK: writing

    /// A frame ready to store: its compressed chunk and its header values.
    struct Ready {
        let index: Int
        let chunk: NXEncodedChunk
        let values: [String: HeaderValue]
        let time: String?
        let sourceName: String
    }

    /// A frame that could not be read, with the reason.
    struct Bad {
        let index: Int
        let sourceName: String
        let error: String
    }

    static func badKey(_ index: Int, _ sourceName: String) -> String {
        index >= 0 ? "index \(index)" : "file \(sourceName)"
    }

    /// One row per bad frame: a frame seen bad before gets its row updated (the latest
    /// file name and error, one more attempt); a new one is appended.
    private func recordBad(_ bad: [Bad]) throws {
        var fresh: [Bad] = []
        for b in bad {
            let key = StackFile.badKey(b.index, b.sourceName)
            guard let known = badRows[key] else { fresh.append(b); continue }
            let at = Selection([.range(.int(known.row), .int(known.row + 1), nil)])
            try badFile.write(.strings([b.sourceName], shape: [1]), at: at)
            try badError.write(.strings([b.error], shape: [1]), at: at)
            try badAttempts?.write(.array(NDArray.from([Double(known.attempts + 1)], shape: [1], dtype: .int64)), at: at)
            badRows[key] = (known.row, known.attempts + 1)
        }
        guard !fresh.isEmpty else { return }
        // a frame bad twice in one commit gets one row
        var seen = Set<String>()
        fresh = fresh.reversed().filter { seen.insert(StackFile.badKey($0.index, $0.sourceName)).inserted }.reversed()
        let first = try badIndex.shape[0]
        try badIndex.append(.array(try NDArray.from(fresh.map { Double($0.index) }, shape: [fresh.count], dtype: .int64)))
        try badFile.append(.strings(fresh.map(\.sourceName), shape: [fresh.count]))
        try badError.append(.strings(fresh.map(\.error), shape: [fresh.count]))
        if let badAttempts {
            if try badAttempts.shape[0] != first { try badAttempts.resize(firstAxis: first) }
            try badAttempts.append(.array(try NDArray.full([fresh.count], 1, dtype: .int64)))
        }
        for (k, b) in fresh.enumerated() { badRows[StackFile.badKey(b.index, b.sourceName)] = (first + k, 1) }
    }

    /// Grows every per-frame field to `n` frames (new frames read as missing).
    func grow(to n: Int) throws {
        guard n > extent else { return }
        for f in perFrameFields { try f.resize(firstAxis: n) }
        let numbers = try NDArray.arange(Double(firstNumber + extent), Double(firstNumber + n), 1, dtype: .int64)
        try frameNumbers.write(.array(numbers), at: Selection([.range(.int(extent), .int(n), nil)]))
        statuses += Array(repeating: .missing, count: n - extent)
        extent = n
    }

    /// Writes frames and bad-frame records, then commits them (two flushes; see the type's
    /// comment). Returns the runs of indices committed.
    func commit(_ ready: [Ready], _ bad: [Bad], durable: Bool) throws -> [Range<Int>] {
        guard !ready.isEmpty || !bad.isEmpty else { return [] }
        let top = max(ready.map(\.index).max() ?? -1, bad.map(\.index).max() ?? -1)
        try grow(to: top + 1)
        let frame = frameShape.map { _ in 0 }
        for r in ready { try data.writeChunk(at: [r.index] + frame, bytes: r.chunk.bytes, filterMask: r.chunk.filterMask) }
        let byIndex = Dictionary(ready.map { ($0.index, $0) }, uniquingKeysWith: { a, _ in a })
        let readyRuns = StackFile.runs(byIndex.keys.sorted())
        for run in readyRuns {
            let sel = Selection([.range(.int(run.lowerBound), .int(run.upperBound), nil)])
            for (key, field, dtype) in perFrame {
                if let log = logs[key] {
                    let values = run.map { i -> Double in
                        guard let text = byIndex[i]?.time, let t = NXTime.seconds(text) else { return .nan }
                        return StackLog.interpolate(log.times, log.values, at: t)
                    }
                    try field.write(.array(NDArray.from(values, shape: [values.count], dtype: dtype)), at: sel)
                    continue
                }
                let values = run.map { i -> Double in
                    switch byIndex[i]?.values[key] {
                    case .integer(let v)?: return Double(v)
                    case .number(let v)?: return v
                    default: return dtype == .int64 ? -1 : .nan
                    }
                }
                try field.write(.array(NDArray.from(values, shape: [values.count], dtype: dtype)), at: sel)
            }
            if let timeField {
                try timeField.write(.strings(run.map { byIndex[$0]?.time ?? "" }, shape: [run.count]), at: sel)
            }
            try sourceFiles.write(.strings(run.map { byIndex[$0]!.sourceName }, shape: [run.count]), at: sel)
        }
        // A bad file numbered before the first frame has no index in the stack (negative):
        // it goes to the bad-frame record only.
        let inStack = bad.filter { $0.index >= 0 }
        let badByIndex = Dictionary(inStack.map { ($0.index, $0) }, uniquingKeysWith: { _, b in b })
        for run in StackFile.runs(badByIndex.keys.sorted()) {
            let sel = Selection([.range(.int(run.lowerBound), .int(run.upperBound), nil)])
            try sourceFiles.write(.strings(run.map { badByIndex[$0]!.sourceName }, shape: [run.count]), at: sel)
        }
        try recordBad(bad)
        try file.flush(durable: durable)
        // Phase two: the status says "stored" only for frames already flushed.
        let all = ready.map { ($0.index, FrameStatus.stored) } + inStack.map { ($0.index, FrameStatus.bad) }
        let statusByIndex = Dictionary(all, uniquingKeysWith: { a, b in a == .stored ? a : b })
        let runs = StackFile.runs(statusByIndex.keys.sorted())
        for run in runs {
            let values = run.map { Double(statusByIndex[$0]!.rawValue) }
            try status.write(.array(try NDArray.from(values, shape: [values.count], dtype: .uint8)),
                             at: Selection([.range(.int(run.lowerBound), .int(run.upperBound), nil)]))
            for i in run { statuses[i] = statusByIndex[i]! }
        }
        try file.flush(durable: durable)
        stampCommit()
        if durable { releaseCommittedPages() }
        return runs
    }

    /// The modification time the last commit gave the file (0 before the first).
    private(set) var commitStamp = timespec()
    /// The wall clock the commit stamps start from (tests freeze it).
    nonisolated(unsafe) static var wallClock: () -> timespec = {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return t
    }

    /// Gives each commit a modification time of its own. Readers tell one state of the
    /// file from the next by its size and mtime (nxlua serve reopens on a change,
    /// /nxlua/wait answers, the viewer's change events); where the kernel's timestamps
    /// are coarse (one clock tick: 4 ms on Debian 12's kernel), a commit's status write,
    /// which does not grow the file, could keep the stamp of its data write, and a reader
    /// that looked in between kept the old status until the file changed again: after a
    /// scan's last frame, until the next scan.
    func stampCommit() {
        guard let fd = writerLock?.descriptor else { return }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return }
        let omit = (1 << 30) - 2   // UTIME_OMIT (a macro Swift does not import): atime stays
        var times = [timespec(tv_sec: 0, tv_nsec: omit),
                     StackFile.stamp(after: [commitStamp, st.st_mtim], now: StackFile.wallClock())]
        // explicit times need the file's owner: another user's stack keeps the kernel's
        if futimens(fd, &times) == 0 { commitStamp = times[1] }
    }

    /// `now`, or 1 ns past the latest of `earlier` when the clock has not passed it.
    static func stamp(after earlier: [timespec], now: timespec) -> timespec {
        let ns = { (t: timespec) in t.tv_sec * 1_000_000_000 + t.tv_nsec }
        let next = max(ns(now), (earlier.map(ns).max() ?? 0) + 1)
        return timespec(tv_sec: Int(next / 1_000_000_000), tv_nsec: Int(next % 1_000_000_000))
    }

    /// How much of the file's newest part stays in the page cache after a commit: the
    /// frames live readers (macros, viewers, `nxlua serve`) read next, ~190 Pilatus 2M
    /// frames in bitshuffle+LZ4.
    nonisolated(unsafe) static var cachedTail: off_t = 256 << 20  // tests lower it
    private var pagesReleasedBelow: off_t = 0

    /// Hands the page cache of committed data, but the newest `cachedTail` bytes, back to
    /// the kernel (POSIX_FADV_DONTNEED; after a durable commit those pages are clean), so
    /// that the next writes reuse those pages instead of new ones. A stack of 1000 frames
    /// (1.35 GB) otherwise fills as much fresh page cache, and on a VM whose free memory
    /// goes back to the host, first touching it made write() cost 1.1-5.5 s instead of
    /// 0.35 s (the kernel copies each chunk into the cache), on the one thread that writes.
    /// Readers of older frames read them from the disk again.
    func releaseCommittedPages() {
        guard let fd = writerLock?.descriptor else { return }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return }
        // in steps of 32 MB, on multiples of the step: the kernel keeps a page, or a large
        // folio, that the range covers only in part
        let step = max(StackFile.cachedTail / 8, 4096)
        let below = (st.st_size - StackFile.cachedTail) / step * step
        guard below > pagesReleasedBelow else { return }
        _ = posix_fadvise(fd, pagesReleasedBelow, below - pagesReleasedBelow, POSIX_FADV_DONTNEED)
        pagesReleasedBelow = below
    }

    /// Frames marked stored whose chunk reaches past `length`, where a short file was
    /// extended with zeros: their data is lost, so they become missing and the run stacks
    /// them again. (A stack whose writes failed has none: a frame is marked stored only
    /// after its data was flushed. A file cut short by other means, a partial copy or a
    /// power cut with --no-sync, may.)
    private(set) var framesLostInRepair: [Int] = []

    func unmarkFrames(endingPast length: UInt64) throws {
        let frame = frameShape.map { _ in 0 }
        let lost = try statuses.indices.filter { i in
            guard statuses[i] == .stored else { return false }
            guard let chunk = try data.chunkLocation(at: [i] + frame) else { return true }
            return chunk.offset + chunk.size > length
        }
        guard !lost.isEmpty else { return }
        for run in StackFile.runs(lost) {
            try status.write(.array(try NDArray.from(run.map { _ in Double(FrameStatus.missing.rawValue) }, shape: [run.count], dtype: .uint8)),
                             at: Selection([.range(.int(run.lowerBound), .int(run.upperBound), nil)]))
            for i in run { statuses[i] = .missing }
        }
        try file.flush()
        framesLostInRepair = lost
    }

    /// Contiguous runs of sorted indices.
    static func runs(_ sorted: [Int]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        for i in sorted {
            if let last = out.last, last.upperBound == i { out[out.count - 1] = last.lowerBound..<(i + 1) } else { out.append(i..<(i + 1)) }
        }
        return out
    }

    /// Closes the file, then lets another stacker have it.
    func close() throws {
        defer { writerLock = nil }
        try file.close()
    }
}
